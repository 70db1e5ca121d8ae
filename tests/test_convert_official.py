# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Converter: synthetic official state dicts built from the key listings."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS

from conftest import REPO, SPECS, load_model_cfg
from mmdet_samdetr.utils import UnknownLayoutError, convert_checkpoint
from mmdet_samdetr.utils.convert_official import COCO80_CATEGORY_IDS

LISTINGS = osp.join(SPECS, 'official_state_dict')
# The official key listings live in ../shared/specs beside the checkout.
pytestmark = pytest.mark.skipif(
    not osp.isdir(LISTINGS), reason=f'{LISTINGS} not found')
CASES = {
    'ss_e12.txt': ('sam_detr/sam-detr_r50_4xb4-12e_coco.py', True, False),
    'ss_e50.txt': ('sam_detr/sam-detr_r50_4xb4-50e_coco.py', False, False),
    'ss_smca_e12.txt':
    ('sam_detr/sam-detr-smca_r50_4xb4-12e_coco.py', True, True),
}


def synthetic_state_dict(listing):
    """Random tensors with the official keys and shapes; the shared
    ``transformer.decoder.bbox_embed`` entries alias ``bbox_embed``."""
    torch.manual_seed(0)
    state = {}
    with open(osp.join(LISTINGS, listing)) as f:
        for line in f:
            key, shape = line.split(' ', 1)
            shape = tuple(int(s) for s in shape.strip('()\n ').split(',')
                          if s.strip())
            state[key] = torch.randn(shape)
    for key in list(state):
        if key.startswith('transformer.decoder.bbox_embed.'):
            state[key] = state[key[len('transformer.decoder.'):]]
    return state


@pytest.fixture(scope='module', params=list(CASES))
def case(request):
    return request.param, CASES[request.param]


@pytest.mark.parametrize('num_classes', [80, 91])
def test_converted_checkpoint_loads_strictly(case, num_classes):
    listing, (config, with_gn, with_smca) = case
    official = synthetic_state_dict(listing)
    converted = convert_checkpoint(dict(model=official, epoch=11),
                                   num_classes)
    meta = converted['meta']
    assert (meta['with_gn'], meta['with_smca']) == (with_gn, with_smca)
    assert osp.basename(config) in meta['config']
    cfg = load_model_cfg(config)
    cfg.bbox_head.num_classes = num_classes
    model = MODELS.build(cfg)
    result = model.load_state_dict(converted['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # values land where they belong
    ours = model.state_dict()
    torch.testing.assert_close(
        ours['decoder.layers.3.semantics_aligner.point2.6.weight'],
        official['transformer.decoder.layers.3.point2.6.weight'])
    torch.testing.assert_close(
        ours['encoder.layers.2.self_attn.attn.in_proj_weight'],
        official['transformer.encoder.layers.2.self_attn.in_proj_weight'])
    torch.testing.assert_close(
        ours['decoder.layers.5.self_attn.kpos_proj.bias'],
        official['transformer.decoder.layers.5.sa_kpos_proj.bias'])
    torch.testing.assert_close(ours['query_embedding.weight'],
                               official['query_embed.weight'])
    cls = official['class_embed.4.weight']
    expected = cls[COCO80_CATEGORY_IDS] if num_classes == 80 else cls
    torch.testing.assert_close(ours['bbox_head.cls_branches.4.weight'],
                               expected)


def test_coco80_ids_are_the_mmdet_order():
    from mmdet.datasets import CocoDataset
    assert len(COCO80_CATEGORY_IDS) == len(CocoDataset.METAINFO['classes'])
    assert COCO80_CATEGORY_IDS == sorted(set(COCO80_CATEGORY_IDS))
    assert 12 not in COCO80_CATEGORY_IDS and 90 in COCO80_CATEGORY_IDS


def test_refuses_multiscale_and_unknown_layouts():
    with pytest.raises(UnknownLayoutError, match='multi-scale'):
        convert_checkpoint(dict(model=synthetic_state_dict('ms_e12.txt')))
    state = synthetic_state_dict('ss_e50.txt')
    state['transformer.decoder.layers.0.extra_gate.weight'] = torch.zeros(1)
    with pytest.raises(UnknownLayoutError, match='extra_gate'):
        convert_checkpoint(dict(model=state))
    state = synthetic_state_dict('ss_e50.txt')
    state['transformer.decoder.bbox_embed.0.layers.0.weight'] = torch.zeros(
        256, 256)
    with pytest.raises(UnknownLayoutError, match='shares'):
        convert_checkpoint(dict(model=state))
    with pytest.raises(UnknownLayoutError, match='not an official'):
        convert_checkpoint(dict(model={'conv.weight': torch.zeros(1)}))


def test_cli_reports_and_refuses(tmp_path):
    src = tmp_path / 'official.pth'
    torch.save(dict(model=synthetic_state_dict('ss_smca_e12.txt')), src)
    dst = tmp_path / 'ours.pth'
    tool = osp.join(REPO, 'tools', 'convert_official_checkpoint.py')
    out = subprocess.run([sys.executable, tool, str(src), str(dst)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'SMCA=True' in out.stdout and 'sam-detr-smca' in out.stdout
    assert set(torch.load(dst, weights_only=False)) == {'state_dict', 'meta'}
    torch.save(dict(model=synthetic_state_dict('ms_smca_e12.txt')), src)
    out = subprocess.run([sys.executable, tool, str(src), str(dst)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and 'multi-scale' in out.stderr
