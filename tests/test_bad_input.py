# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Bad input: clear errors naming the culprit, or training goes on."""
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import DATASETS, MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from conftest import config_path, tiny_model_cfg, tiny_multiscale_cfg

# every model family: single-scale, single-scale + DN, SAM-DETR++ + SMCA + DN
KINDS = {
    'ss': lambda: tiny_model_cfg(),
    'ss-dn': lambda: tiny_model_cfg(with_dn=True),
    'ms-smca-dn': lambda: tiny_multiscale_cfg(with_smca=True, with_dn=True),
}


def _model(kind='ss'):
    torch.manual_seed(0)
    model = MODELS.build(KINDS[kind]())
    model.init_weights()
    return model


def _sample(boxes, size=(96, 112), name='img_7.png'):
    h, w = size
    sample = DetDataSample(
        metainfo=dict(img_shape=size, ori_shape=size, scale_factor=(1., 1.),
                      pad_shape=size, batch_input_shape=size,
                      img_path=name))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
        labels=torch.zeros(len(boxes), dtype=torch.long))
    return sample


@pytest.mark.parametrize('kind', list(KINDS))
def test_degenerate_and_out_of_image_boxes_are_dropped_or_clipped(kind):
    model = _model(kind)
    sample = _sample([[10, 10, 10, 30], [-20, -20, -5, -5],
                      [80, 5, 200, 40], [5, 5, 30, 30]])
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        losses = model.loss(torch.rand(1, 3, 96, 112), [sample])
    finally:
        logger.removeHandler(handler)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_bbox'] > 0
    torch.testing.assert_close(
        sample.gt_instances.bboxes,
        torch.tensor([[80., 5., 112., 40.], [5., 5., 30., 30.]]))
    assert any('img_7.png' in m and 'dropped' in m for m in messages)


@pytest.mark.parametrize('kind', list(KINDS))
def test_non_finite_box_names_the_image(kind):
    model = _model(kind)
    sample = _sample([[5, 5, 30, 30], [float('nan'), 1, 2, 3]],
                     name='broken.jpg')
    with pytest.raises(ValueError, match=r'broken\.jpg.*\[1\]'):
        model.loss(torch.rand(1, 3, 96, 112), [sample])


@pytest.mark.parametrize('kind', list(KINDS))
def test_images_smaller_than_the_stride(kind):
    """A 12x12 image (stride 16 -> one feature cell) padded next to a
    large one: finite losses and predictions."""
    model = _model(kind)
    small = _sample([[2, 2, 10, 9]], size=(12, 12))
    large = _sample([[20, 20, 90, 60]], size=(96, 112))
    for s in (small, large):
        s.set_metainfo(dict(batch_input_shape=(96, 112)))
    batch = torch.zeros(2, 3, 96, 112)
    batch[0, :, :12, :12] = torch.rand(3, 12, 12)
    batch[1] = torch.rand(3, 96, 112)
    losses = model.loss(batch, [small, large])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        preds = model.predict(batch, [small, large])
    assert torch.isfinite(preds[0].pred_instances.bboxes).all()


def _toy_dataset(tmp_path, files):
    (tmp_path / 'train').mkdir()
    images, anns = [], []
    for i, (name, img) in enumerate(files.items(), 1):
        path = tmp_path / 'train' / name
        if isinstance(img, bytes):
            path.write_bytes(img)
        else:
            cv2.imwrite(str(path), img)
        images.append(dict(id=i, file_name=name, width=48, height=40))
        anns.append(dict(id=i, image_id=i, bbox=[4, 4, 20, 16], area=320,
                         category_id=1, iscrowd=0))
    (tmp_path / 'train.json').write_text(
        json.dumps(dict(images=images, annotations=anns,
                        categories=[dict(id=1, name='rectangle')])))
    cfg = Config.fromfile(
        config_path('sam_detr_toy/sam-detr_r18_1xb8-toy-shapes.py'))
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=str(tmp_path) + '/', ann_file='train.json',
              metainfo=dict(classes=('rectangle', )))
    return DATASETS.build(ds)


def test_grayscale_images_become_three_channel(tmp_path):
    gray = np.random.default_rng(0).integers(0, 255, (40, 48), np.uint8)
    dataset = _toy_dataset(tmp_path, {'gray.png': gray})
    assert dataset[0]['inputs'].shape[0] == 3


def test_corrupt_image_names_the_file(tmp_path):
    dataset = _toy_dataset(tmp_path, {'corrupt.png': b'not a png at all'})
    with pytest.raises(Exception, match='corrupt.png'):
        dataset[0]


def test_unknown_config_key_names_the_key():
    cfg = tiny_model_cfg()
    cfg.decoder.layer_cfg.with_smcaa = True
    with pytest.raises(TypeError, match='with_smcaa'):
        MODELS.build(cfg)
