# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""metafile.yml: mmdet's model-index format, one entry per COCO config,
and its numbers hold for the configs as they are."""
import glob
import os.path as osp
import re

import pytest
import yaml
from mmdet.registry import MODELS
from mmengine.config import Config

from conftest import REPO

COCO_DIRS = ('sam_detr', 'sam_detr_pp', 'align_sam_detr', 'align_detr')


def _metafile():
    with open(osp.join(REPO, 'metafile.yml')) as f:
        return yaml.safe_load(f)


MODELS_INDEX = _metafile()['Models']


def test_lists_every_coco_config_once():
    meta = _metafile()
    assert set(meta) == {'Collections', 'Models'}
    collections = {c['Name'] for c in meta['Collections']}
    for collection in meta['Collections']:
        assert {'Name', 'Metadata', 'Paper', 'README',
                'Code'} <= set(collection)
        assert collection['Paper']['URL'].startswith('https://arxiv.org/')
    configs = sorted(
        osp.relpath(p, REPO) for d in COCO_DIRS
        for p in glob.glob(osp.join(REPO, 'configs', d, '*.py')))
    listed = [m['Config'] for m in MODELS_INDEX]
    assert sorted(listed) == configs  # every config, each once
    for model in MODELS_INDEX:
        assert model['In Collection'] in collections
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
        for result in model.get('Results', []):
            assert result['Task'] == 'Object Detection'
            assert result['Dataset'] == 'COCO'
            assert 20 < result['Metrics']['box AP'] < 60


@pytest.mark.parametrize('model', MODELS_INDEX, ids=lambda m: m['Name'])
def test_entry_matches_its_config(model):
    cfg = Config.fromfile(osp.join(REPO, model['Config']))
    meta = model['Metadata']
    assert meta['Epochs'] == cfg.train_cfg.max_epochs
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-',
                                       model['Name']).groups())
    assert per_gpu == cfg.train_dataloader.batch_size
    assert meta['Batch Size'] == gpus * per_gpu
    cfg.model.backbone.init_cfg = None
    built = MODELS.build(cfg.model)
    assert meta['Parameters'] == sum(p.numel() for p in built.parameters())
    assert 50e9 < meta['FLOPs'] < 500e9
    # converted official weights exist for the released layouts only:
    # SAM-DETR(++) without denoising (never released), and the four
    # Align-DETR-on-DINO checkpoints (k = 2, IA-BCE or Align Loss, 12 or 24
    # epochs); the Align losses on SAM-DETR were never released
    converted = 'Converted From' in model
    if model['Config'].startswith('configs/align_detr/'):
        released = '-k4-' not in model['Name']
        code = 'https://github.com/FelixCaae/AlignDETR'
    else:
        released = model['In Collection'] != 'Align-DETR' and \
            not cfg.model.get('dn_cfg')
        code = 'https://github.com/ZhangGongjie/SAM-DETR'
    assert converted == released
    if converted:
        assert 'box AP' in model['Results'][0]['Metrics']
        assert model['Converted From']['Code'] == code


def test_model_zoo_stats_tool_measures_at_800x1333(tmp_path):
    """benchmarks/model_zoo_stats.py on a tiny COCO config: mmdet's
    get_flops.py sees a 800x1333 input, and the counts come back parsed."""
    import json

    from benchmarks import model_zoo_stats as tool
    from conftest import config_path, tiny_model_cfg
    assert tool.to_giga('0.107T') == pytest.approx(107)
    assert tool.to_giga('58.3M') == pytest.approx(0.0583)
    cfg = Config.fromfile(
        config_path('sam_detr/sam-detr_r50_4xb4-12e_coco.py'))
    cfg.model = tiny_model_cfg()
    config = tmp_path / 'tiny.py'
    cfg.dump(str(config))
    out = tmp_path / 'stats.json'
    assert tool.main([str(config), '--json', str(out)]) == 0
    stats = json.load(open(out))[str(config)]
    built = MODELS.build(cfg.model)
    assert stats['params'] == sum(p.numel() for p in built.parameters())
    assert stats['trainable_params'] < stats['params']  # frozen stem
    # ResNet-18's stem and stages 1-3 take about 28 G multiply-adds at
    # 800x1333 (1.36 G at 224x224, times 21.3); the 32-d transformer little
    assert 25 < stats['gflops'] < 40
