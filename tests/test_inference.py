# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Inference through mmdet's own APIs (``init_detector`` +
``inference_detector``, ``DetInferencer``) for every model family."""
import copy
import json

import numpy as np
import pytest
import torch
from mmdet.apis import DetInferencer, inference_detector, init_detector
from mmdet.registry import MODELS
from mmengine.config import Config

from conftest import config_path, tiny_model_cfg, tiny_multiscale_cfg
from mmdet_samdetr.apis import SAMDETRInferencer

CLASSES = ('rectangle', 'ellipse', 'triangle', 'ring', 'cross')


def _dc5_dn(**kw):
    cfg = tiny_model_cfg(
        config='sam_detr/sam-detr-dn_r50-dc5_8xb1-12e_coco.py', with_dn=True,
        **kw)
    cfg.backbone.update(strides=(1, 2, 1), dilations=(1, 1, 2))
    return cfg


FAMILIES = {
    'sam-detr': lambda: tiny_model_cfg(num_classes=5),
    'sam-detr-smca': lambda: tiny_model_cfg(num_classes=5, with_smca=True),
    'sam-detr-dc5-dn': lambda: _dc5_dn(num_classes=5),
    'sam-detr-pp-smca-dn': lambda: tiny_multiscale_cfg(
        num_classes=5, with_smca=True, with_dn=True),
    'align-sam-detr': lambda: tiny_model_cfg(
        num_classes=5,
        config='align_sam_detr/align-sam-detr_r50_4xb4-12e_coco.py'),
    'align-sam-detr-pp': lambda: tiny_multiscale_cfg(
        num_classes=5,
        config='align_sam_detr/align-sam-detr-pp_r50_8xb2-12e_coco.py'),
}


def make_family(name, directory):
    """(config, checkpoint) of a tiny model of one family, with the toy
    config's test pipeline and classes."""
    cfg = Config.fromfile(
        config_path('sam_detr_toy/sam-detr_r18_1xb8-toy-shapes.py'))
    cfg.model = FAMILIES[name]()
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = directory / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=CLASSES))), ckpt)
    return cfg, str(ckpt)


def fresh(cfg):
    """A copy: mmdet 3.3's ``inference_detector`` on arrays rewrites the
    first step of the model config's test pipeline in place."""
    return copy.deepcopy(cfg)


# one image at the test size, one small and tall, one larger and wide
SIZES = [(96, 96), (40, 24), (130, 210)]


def _images():
    gen = np.random.default_rng(0)
    return [gen.integers(0, 255, (h, w, 3), dtype=np.uint8)
            for h, w in SIZES]


def _check(result, size, num_points=8):
    h, w = size
    pred = result.pred_instances
    assert result.ori_shape == size
    assert len(pred) == 10 and pred.salient_points.shape == (10, num_points,
                                                             2)
    assert (pred.bboxes[:, 0::2] >= 0).all() and (pred.bboxes[:, 0::2] <= w
                                                  + 1e-3).all()
    assert (pred.bboxes[:, 1::2] >= 0).all() and (pred.bboxes[:, 1::2] <= h
                                                  + 1e-3).all()
    # points lie in their reference boxes (centre in the image, sides at
    # most the image's), which may reach half an image beyond its border;
    # in the original image's frame (not the resized input's)
    pts = pred.salient_points
    for axis, side in ((0, w), (1, h)):
        assert (pts[..., axis] >= -side / 2).all()
        assert (pts[..., axis] <= 1.5 * side).all()


@pytest.mark.parametrize('name', list(FAMILIES))
def test_init_detector_and_inference_detector(name, tmp_path):
    cfg, ckpt = make_family(name, tmp_path)
    model = init_detector(fresh(cfg), ckpt, device='cpu')
    assert model.dataset_meta['classes'] == CLASSES
    results = inference_detector(model, _images())
    for result, size in zip(results, SIZES):
        _check(result, size)


@pytest.mark.parametrize('name', ['sam-detr-dc5-dn', 'align-sam-detr-pp'])
def test_det_inferencer_matches_inference_detector(name, tmp_path):
    cfg, ckpt = make_family(name, tmp_path)
    images = _images()
    expected = inference_detector(init_detector(fresh(cfg), ckpt,
                                                device='cpu'),
                                  images)
    # mmdet's own inferencer, unchanged
    stock = DetInferencer(model=fresh(cfg), weights=ckpt, device='cpu',
                          show_progress=False)
    samples = stock(images, return_datasamples=True)['predictions']
    plain = stock(images)['predictions']
    ours = SAMDETRInferencer(model=fresh(cfg), weights=ckpt, device='cpu',
                             show_progress=False)(
                                 images, out_dir=str(tmp_path),
                                 no_save_vis=True,
                                 no_save_pred=False)['predictions']
    for exp, sample, dct, our, size in zip(expected, samples, plain, ours,
                                           SIZES):
        _check(sample, size)
        torch.testing.assert_close(sample.pred_instances.bboxes,
                                   exp.pred_instances.bboxes)
        torch.testing.assert_close(sample.pred_instances.salient_points,
                                   exp.pred_instances.salient_points)
        assert set(dct) == {'labels', 'scores', 'bboxes'}
        assert our['bboxes'] == dct['bboxes']
        np.testing.assert_allclose(
            our['salient_points'],
            exp.pred_instances.salient_points.numpy(), rtol=1e-6)
    files = sorted((tmp_path / 'preds').glob('*.json'))
    assert len(files) == len(SIZES)
    saved = json.loads(files[0].read_text())
    assert len(saved['salient_points']) == len(saved['bboxes']) == 10
