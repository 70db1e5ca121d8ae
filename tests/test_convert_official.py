# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Converter: synthetic official state dicts built from the key listings."""
import argparse
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS

from conftest import REPO, load_model_cfg
from mmdet_samdetr.utils import UnknownLayoutError, convert_checkpoint
from mmdet_samdetr.utils.convert_official import COCO80_CATEGORY_IDS

# `key shape` listings of the official state dicts (see the README there)
LISTINGS = osp.join(REPO, 'tests', 'fixtures', 'official_state_dict')
# listing: (config, multi-scale, with GroupNorm, with SMCA)
CASES = {
    'ss_e12.txt':
    ('sam_detr/sam-detr_r50_4xb4-12e_coco.py', False, True, False),
    'ss_e50.txt':
    ('sam_detr/sam-detr_r50_4xb4-50e_coco.py', False, False, False),
    'ss_smca_e12.txt':
    ('sam_detr/sam-detr-smca_r50_4xb4-12e_coco.py', False, True, True),
    'ms_e12.txt':
    ('sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py', True, True, False),
    'ms_smca_e12.txt':
    ('sam_detr_pp/sam-detr-pp-smca_r50_8xb2-12e_coco.py', True, True, True),
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
    listing, (config, multiscale, with_gn, with_smca) = case
    official = synthetic_state_dict(listing)
    converted = convert_checkpoint(dict(model=official, epoch=11),
                                   num_classes)
    meta = converted['meta']
    assert (meta['multiscale'], meta['with_gn'],
            meta['with_smca']) == (multiscale, with_gn, with_smca)
    assert config in meta['config']
    cfg = load_model_cfg(config)
    cfg.bbox_head.num_classes = num_classes
    model = MODELS.build(cfg)
    result = model.load_state_dict(converted['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # values land where they belong
    ours = model.state_dict()
    official_names = {
        'point1.0': 'reduce_conv',
        'point2.6': 'point_predictor.6',
        'attn1': 'content_gate',
        'attn2': 'position_gate'
    }
    for official_name, name in official_names.items():
        torch.testing.assert_close(
            ours[f'decoder.layers.3.semantics_aligner.{name}.weight'],
            official[f'transformer.decoder.layers.3.{official_name}.weight'])
    torch.testing.assert_close(
        ours['bbox_head.reg_branches.2.4.bias'],
        official['bbox_embed.2.layers.2.bias'])
    if multiscale:
        torch.testing.assert_close(ours['level_embed'],
                                   official['transformer.level_embed'])
        for name in ('sampling_offsets.bias', 'value_proj.weight'):
            torch.testing.assert_close(
                ours[f'encoder.layers.2.self_attn.{name}'],
                official[f'transformer.encoder.layers.2.self_attn.{name}'])
        torch.testing.assert_close(ours['neck.convs.1.gn.weight'],
                                   official['input_proj.1.1.weight'])
    else:
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


def test_refuses_unknown_layouts():
    state = synthetic_state_dict('ms_e12.txt')
    state['input_proj.3.0.weight'] = torch.zeros(256, 2048, 1, 1)
    with pytest.raises(UnknownLayoutError, match='4 input projections'):
        convert_checkpoint(dict(model=state))
    state = synthetic_state_dict('ms_e12.txt')
    for level in range(3):
        del state[f'input_proj.{level}.1.weight']
        del state[f'input_proj.{level}.1.bias']
    with pytest.raises(UnknownLayoutError, match='without GroupNorm'):
        convert_checkpoint(dict(model=state))
    state = synthetic_state_dict('ss_e12.txt')
    state['input_proj.1.0.weight'] = torch.zeros(256, 1024, 1, 1)
    with pytest.raises(UnknownLayoutError, match='not an official'):
        convert_checkpoint(dict(model=state))
    state = synthetic_state_dict('ms_smca_e12.txt')
    state['transformer.encoder.layers.0.self_attn.extra.weight'] = \
        torch.zeros(1)
    with pytest.raises(UnknownLayoutError, match='extra'):
        convert_checkpoint(dict(model=state))
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


def test_cli_reports_and_refuses(tmp_path, capsys):
    from tools.convert_official_checkpoint import main
    src = tmp_path / 'official.pth'
    # as the official checkpoints: the training arguments pickled too
    torch.save(dict(model=synthetic_state_dict('ss_smca_e12.txt'),
                    args=argparse.Namespace(lr=1e-4, smca=True)), src)
    dst = tmp_path / 'ours.pth'
    assert main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'SMCA=True' in out and 'sam-detr-smca' in out
    assert set(torch.load(dst, weights_only=True)) == {'state_dict', 'meta'}
    state = synthetic_state_dict('ms_smca_e12.txt')
    torch.save(dict(model=state), src)
    assert main([str(src), str(dst)]) == 0
    assert 'sam_detr_pp/sam-detr-pp-smca_r50_8xb2-12e_coco.py' in \
        capsys.readouterr().out
    del state['transformer.level_embed']
    torch.save(dict(model=state), src)
    assert main([str(src), str(dst)]) == 1
    assert 'not an official' in capsys.readouterr().err
