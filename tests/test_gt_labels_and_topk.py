# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Every head's prediction caps top-k at the candidates that exist, and
every detector and head checks the ground-truth labels before matching or
denoising reads them."""
import re

import pytest
import torch
from mmdet.models.dense_heads import DETRHead
from mmdet.registry import MODELS
from mmengine.config import Config

import mmdet_samdetr.models.dense_heads.align_detr_head as align_head_module
import mmdet_samdetr.models.dense_heads.sam_detr_head as sam_head_module
import mmdet_samdetr.models.detectors.align_detr as align_detr_module
import mmdet_samdetr.models.detectors.sam_detr_mixin as mixin_module
from conftest import (config_path, det_sample, tiny_model_cfg,
                      tiny_multiscale_cfg)
from mmdet_samdetr.models.utils import check_gt_labels
from test_align_detr_head import align_dino, align_ss

TOY = 'sam_detr_toy/{}_r18_1xb8-toy-shapes.py'
BOXES = [[4., 4., 30., 40.], [30., 20., 60., 60.]]


def toy_cfg(name='sam-detr', **model):
    """A toy-shapes model (5 classes, 30 queries) without the backbone
    checkpoint."""
    cfg = Config.fromfile(config_path(TOY.format(name))).model
    cfg.backbone.init_cfg = None
    cfg.update(model)
    return cfg


def build(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def sample(labels, size=(64, 64), boxes=BOXES, **meta):
    data_sample = det_sample(size, boxes=boxes, labels=labels)
    data_sample.set_metainfo(meta)
    return data_sample


# ------------------------------------------------------------------ top-k

def one_class(cfg, num_queries):
    """``cfg`` with 1 class, ``num_queries`` queries and the COCO configs'
    ``max_per_img=100``."""
    cfg.num_queries = num_queries
    cfg.bbox_head.num_classes = 1
    cfg.test_cfg.max_per_img = 100
    return cfg


def predict_one(model, size=(64, 64)):
    with torch.no_grad():
        return model.eval().predict(
            torch.rand(1, 3, *size), [det_sample(size)])[0].pred_instances


def test_one_class_and_20_queries_give_20_detections():
    """The reported input: toy SAM-DETR, 1 class, 20 queries,
    ``max_per_img=100``: every query once, best first (mmdet's top-k
    fails: 'selected index k out of range')."""
    model = build(one_class(toy_cfg(), 20))
    scores = []
    model.bbox_head.register_forward_hook(
        lambda module, args, out: scores.append(out[0][-1, 0, :, 0]))
    det = predict_one(model)
    assert len(det.bboxes) == len(det.scores) == len(det.labels) == 20
    assert det.labels.tolist() == [0] * 20
    torch.testing.assert_close(
        det.scores, scores[0].sigmoid().sort(descending=True).values)
    assert det.salient_points.shape == (20, 8, 2)


def test_align_detr_on_dino_caps_top_k():
    """AlignDETRHead on a tiny DINO (10 queries, 1 class)."""
    model = build(one_class(align_dino(), 10))
    assert len(predict_one(model).bboxes) == 10


def test_sam_detr_pp_with_dn_predicts_from_the_matching_queries_only(
        monkeypatch):
    """SAM-DETR++ with DN (10 queries, 1 class): no denoising queries at
    prediction, so they add no candidates."""
    model = build(one_class(tiny_multiscale_cfg(with_dn=True), 10))
    calls = []
    generator = model.dn_query_generator
    monkeypatch.setattr(
        generator, 'generate_dn_label_query',
        lambda *args, generate=generator.generate_dn_label_query:
        calls.append(1) or generate(*args))
    assert len(predict_one(model).bboxes) == 10
    assert calls == []
    # the denoising queries do run in training
    model.train().loss(torch.rand(1, 3, 64, 64), [sample([0, 0])])
    assert calls == [1]


@pytest.mark.parametrize('head_type, loss_cls', [
    ('SAMDETRHead', dict(type='FocalLoss', use_sigmoid=True)),
    ('SAMDETRHead', dict(type='CrossEntropyLoss', class_weight=[1.] * 4)),
    ('AlignDETRHead', dict(type='AlignLoss')),
])
@pytest.mark.parametrize('max_per_img', [4, 100])
def test_head_predictions_are_mmdets_capped(head_type, loss_cls,
                                            max_per_img):
    """Below the cap, the detections are mmdet's ``DETRHead``'s; above it,
    all candidates (sigmoid: 5 queries x 3 classes; softmax: 5 queries)."""
    head = MODELS.build(
        dict(type=head_type, num_classes=3, embed_dims=16, num_pred_layer=2,
             loss_cls=loss_cls, test_cfg=dict(max_per_img=max_per_img)))
    gen = torch.Generator().manual_seed(0)
    cls_score = torch.randn(5, head.cls_out_channels, generator=gen)
    bbox_pred = torch.rand(5, 4, generator=gen) * .8 + .1
    meta = dict(img_shape=(60, 80), scale_factor=(2., 4.))
    ours = head._predict_by_feat_single(cls_score, bbox_pred, meta)
    num = 15 if head.loss_cls.use_sigmoid else 5
    assert len(ours.scores) == min(max_per_img, num)
    if max_per_img <= num:
        theirs = DETRHead._predict_by_feat_single(head, cls_score,
                                                  bbox_pred, meta)
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(ours[key], theirs[key], rtol=0,
                                       atol=0)


# ----------------------------------------------------------------- labels

FAMILIES = {  # tiny models (4 classes)
    'SAM-DETR': tiny_model_cfg,
    'SAM-DETR++ DN': lambda: tiny_multiscale_cfg(with_dn=True),
    'Align-SAM-DETR': align_ss,
    'Align-DETR DINO DN': align_dino,
}


def test_label_minus_one_names_the_image_value_and_num_classes():
    """The reported input: toy Align-SAM-DETR (no DN), one 64x64 image,
    labels [0, -1] (it trained silently, the -1 box matched and regressed
    as background)."""
    model = build(toy_cfg('align-sam-detr'))
    bad = sample([0, -1], img_path='data/toy_shapes/train/img_3.png')
    with pytest.raises(ValueError) as error:
        model.loss(torch.rand(1, 3, 64, 64), [bad])
    message = str(error.value)
    assert 'data/toy_shapes/train/img_3.png' in message
    assert '[-1]' in message and 'num_classes=5' in message  # 5 shapes


@pytest.mark.parametrize('family', list(FAMILIES))
def test_label_equal_to_num_classes_is_refused_by_every_family(family):
    """``num_classes`` itself (a bare index error inside the matching or
    the denoising queries before) and -1, named by image id."""
    model = build(FAMILIES[family]())
    num_classes = model.bbox_head.num_classes
    img = torch.rand(2, 3, 64, 64)
    for bad in (num_classes, -1):
        samples = [sample([0, 1], img_id=7),
                   sample([0, bad], img_id=12)]
        with pytest.raises(ValueError,
                           match=rf'image 12: .*\[{bad}\].*num_classes='
                           rf'{num_classes}\b'):
            model.loss(img, samples)


def _head_inputs(head, family, batch_size=1, num_queries=6):
    """Random inputs of the head's ``loss`` in ``family``'s detector."""
    gen = torch.Generator().manual_seed(0)
    num_layers = head.num_pred_layer - int(head.as_two_stage)
    hidden = torch.randn(num_layers, batch_size, num_queries,
                         head.embed_dims, generator=gen)
    refs = torch.rand(num_layers + 1, batch_size, num_queries, 4,
                      generator=gen)
    if family == 'Align-DETR DINO DN':
        enc = (torch.randn(batch_size, num_queries, head.cls_out_channels,
                           generator=gen), refs[0])
        return dict(hidden_states=hidden, references=list(refs),
                    enc_outputs_class=enc[0], enc_outputs_coord=enc[1],
                    dn_meta=None)
    return dict(hidden_states=hidden, references=refs[1:])


@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_head_checks_labels_before_matching(family, monkeypatch):
    """The head alone (as in any detector): the check comes before the
    assigner sees the labels."""
    head = build(FAMILIES[family]()).bbox_head
    monkeypatch.setattr(head.assigner, 'assign', lambda *a, **k: 1 / 0)
    inputs = _head_inputs(head, family)
    bad = sample([0, head.num_classes])
    with pytest.raises(ValueError, match=rf'#0 of the batch.*\['
                       rf'{head.num_classes}\]'):
        head.loss(**inputs, batch_data_samples=[bad])


@pytest.mark.parametrize('family', list(FAMILIES))
def test_valid_labels_give_the_same_losses(family, monkeypatch):
    """The check only reads: the losses are those without it."""
    model = build(FAMILIES[family]())
    img = torch.rand(2, 3, 64, 64)

    def losses():
        torch.manual_seed(1)  # the denoising queries' noise
        return model.loss(
            img, [sample([0, 1]), sample([3], boxes=[[5., 6., 40., 50.]])])

    checked = losses()
    for module in (mixin_module, sam_head_module, align_head_module,
                   align_detr_module):
        monkeypatch.setattr(module, 'check_gt_labels', lambda *args: None)
    unchecked = losses()
    assert checked.keys() == unchecked.keys()
    for key, value in checked.items():
        assert torch.isfinite(value), key
        torch.testing.assert_close(value, unchecked[key], rtol=0, atol=0)


def test_check_gt_labels_on_dtypes_and_empty_images():
    check_gt_labels([det_sample((64, 64)), sample([0, 4])], 5)
    empty_float = det_sample((64, 64))
    empty_float.gt_instances.labels = torch.empty(0)
    check_gt_labels([empty_float, sample([2, 3])], 5)
    floats = sample([0, 1])
    floats.gt_instances.labels = torch.tensor([0., 1.5])
    with pytest.raises(ValueError,
                       match=re.escape('#1 of the batch: ground-truth labels '
                                       'must be integer')):
        check_gt_labels([sample([1], boxes=BOXES[:1]), floats], 5)
    with pytest.raises(ValueError,
                       match=r'\[-2, 5\] \(instances \[0, 2, 3\]'):
        check_gt_labels([sample([-2, 1, 5, -2], boxes=BOXES * 2)], 5)


def test_align_detr_is_dinos_state_dict():
    """``AlignDETR``: mmdet's DINO's modules and checkpoint keys."""
    assert align_dino().type == 'AlignDETR'
    ours = build(align_dino()).state_dict()
    dino = build(align_dino(type='DINO')).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {
        k: v.shape for k, v in dino.items()}
    for key in ours:
        torch.testing.assert_close(ours[key], dino[key], rtol=0, atol=0)
