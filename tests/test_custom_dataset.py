# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The custom-dataset config template: a user's own COCO-format data with
other class names (non-contiguous ids) trains, evaluates and browses."""
import json
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS

from conftest import REPO, config_path
from test_runner import TINY, TINY_PP_DN

CATEGORIES = [dict(id=7, name='apple'), dict(id=9, name='pear'),
              dict(id=11, name='plum'), dict(id=12, name='quince')]
CLASSES = ('apple', 'pear', 'plum')  # quince: in the json, not trained


def make_coco(root, split, num_images, seed):
    """Images with coloured rectangles and their COCO json."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        h, w = 64, 80
        img = np.full((h, w, 3), 40, np.uint8)
        for _ in range(2):
            x, y = rng.integers(0, 40), rng.integers(0, 30)
            bw, bh = rng.integers(12, 36), rng.integers(12, 30)
            cat = CATEGORIES[rng.integers(0, 4)]
            img[y:y + bh, x:x + bw] = (cat['id'] * 20) % 255
            annotations.append(
                dict(id=len(annotations) + 1, image_id=i + 1,
                     category_id=cat['id'], bbox=[int(x), int(y), int(bw),
                                                  int(bh)],
                     area=int(bw * bh), iscrowd=0))
        name = f'{split}_{i:03d}.png'
        mmcv.imwrite(img, osp.join(root, split, name))
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    with open(osp.join(root, 'annotations', f'{split}.json'), 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=CATEGORIES), f)


SMALL_PIPELINES = """
_pipe = [dict(type='LoadImageFromFile'),
         dict(type='LoadAnnotations', with_bbox=True),
         dict(type='Resize', scale=(96, 96), keep_ratio=True)]
train_dataloader['dataset']['pipeline'] = _pipe + [dict(type='PackDetInputs')]
val_dataloader['dataset']['pipeline'] = _pipe + [dict(
    type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                     'img_shape', 'scale_factor'))]
test_dataloader = val_dataloader
model['dn_cfg'] = None
model['backbone']['depth'] = 18  # TINY's widths are ResNet-18's
"""


@pytest.fixture(scope='module')
def custom_config(tmp_path_factory):
    root = tmp_path_factory.mktemp('my_dataset')
    make_coco(str(root), 'train', 8, seed=0)
    make_coco(str(root), 'val', 4, seed=1)
    text = TINY.format(
        base=config_path(
            'custom_dataset/sam-detr-pp_r50_8xb2-12e_custom-coco.py'),
        data=root, epochs=1) + TINY_PP_DN + SMALL_PIPELINES
    text += f'classes = {CLASSES!r}\n'
    text += ('metainfo = dict(classes=classes)\n'
             "train_dataloader['dataset']['metainfo'] = metainfo\n"
             "val_dataloader['dataset']['metainfo'] = metainfo\n"
             "model['bbox_head']['num_classes'] = len(classes)\n")
    path = root / 'my_config.py'
    path.write_text(text)
    return str(path)


def test_template_trains_and_evaluates_other_classes(custom_config,
                                                     tmp_path):
    cfg = Config.fromfile(custom_config)
    assert cfg.model.type == 'SAMDETRPlusPlus'
    assert cfg.model.bbox_head.num_classes == 3
    cfg.work_dir = str(tmp_path / 'work')
    runner = RUNNERS.build(cfg)
    dataset = runner.train_dataloader.dataset
    assert dataset.metainfo['classes'] == CLASSES
    # category ids 7, 9, 11 become labels 0, 1, 2; quince boxes are dropped
    assert dataset.cat2label == {7: 0, 9: 1, 11: 2}
    labels = [inst['bbox_label'] for idx in range(len(dataset))
              for inst in dataset.get_data_info(idx)['instances']]
    coco = json.load(open(cfg.train_dataloader.dataset.data_root +
                          'annotations/train.json'))
    kept = [a for a in coco['annotations'] if a['category_id'] != 12]
    assert sorted(labels) == sorted(
        {7: 0, 9: 1, 11: 2}[a['category_id']] for a in kept)
    runner.train()
    assert runner.iter == 2  # 8 images / batch 4
    metrics = runner.val_loop.run()
    assert 'coco/bbox_mAP' in metrics
    # fine-tuning from a checkpoint with other classes: the class rows keep
    # their initialization, everything else loads
    ckpt = tmp_path / 'work' / 'epoch_1.pth'
    state = torch.load(ckpt, weights_only=False)
    for key in list(state['state_dict']):
        if 'cls_branches' in key:
            state['state_dict'][key] = torch.zeros(
                (5, ) + state['state_dict'][key].shape[1:])
    torch.save(state, tmp_path / 'five_classes.pth')
    cfg.load_from = str(tmp_path / 'five_classes.pth')
    cfg.work_dir = str(tmp_path / 'finetune')
    runner = RUNNERS.build(cfg)
    runner.train()
    assert runner.iter == 2


def test_browse_dataset_on_the_template(custom_config, tmp_path):
    import mmdet
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                    'analysis_tools', 'browse_dataset.py')
    out = subprocess.run(
        [sys.executable, tool, custom_config, '--output-dir',
         str(tmp_path), '--not-show'],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(tmp_path.glob('*.png'))) == 8
