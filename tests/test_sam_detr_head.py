# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAMDETRHead's public prediction method: the last layer's detections with
their salient points, for plain, tensor and symbolic (traced) image sizes."""
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.utils import digit_version

from conftest import det_sample
from mmdet_samdetr.apis.onnx_export import ONNX_EXPORT_MIN_TORCH

NUM_LAYERS, BS, NQ, M = 2, 2, 10, 8
SIZES = [(96, 112), (64, 80)]


@pytest.fixture
def head():
    torch.manual_seed(0)
    head = MODELS.build(
        dict(
            type='SAMDETRHead',
            num_classes=4,
            embed_dims=16,
            num_pred_layer=NUM_LAYERS,
            loss_cls=dict(type='FocalLoss', use_sigmoid=True),
            test_cfg=dict(max_per_img=7)))
    head.init_weights()
    return head.eval()


def _outputs(seed=1):
    gen = torch.Generator().manual_seed(seed)
    cls_scores = torch.randn(NUM_LAYERS, BS, NQ, 4, generator=gen)
    bbox_preds = torch.rand(NUM_LAYERS, BS, NQ, 4, generator=gen) * .8 + .1
    points = torch.rand(NUM_LAYERS, BS, NQ, M, 2, generator=gen)
    return cls_scores, bbox_preds, points


def test_predict_by_feat_uses_the_last_layer_and_gathers_the_points(head):
    cls_scores, bbox_preds, points = _outputs()
    metas = [dict(img_shape=s, scale_factor=(2., 4.)) for s in SIZES]
    results = head.predict_by_feat(
        cls_scores, bbox_preds, metas, layer_salient_points=points)
    for img_id, ((h, w), res) in enumerate(zip(SIZES, results)):
        flat = cls_scores[-1, img_id].sigmoid().flatten()
        top = flat.topk(7)
        query = top.indices // 4
        torch.testing.assert_close(res.scores, top.values)
        assert res.labels.tolist() == (top.indices % 4).tolist()
        cx, cy, bw, bh = bbox_preds[-1, img_id, query].unbind(-1)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2,
                             cy + bh / 2], -1).clamp(0, 1)
        scale = torch.tensor([w / 2., h / 4.])
        torch.testing.assert_close(res.bboxes, boxes * scale.repeat(2))
        torch.testing.assert_close(res.salient_points,
                                   points[-1, img_id, query] * scale)
    # without points: no salient_points field; earlier layers are not read
    cls_scores[0] = float('nan')
    plain = head.predict_by_feat(cls_scores, bbox_preds, metas)
    assert 'salient_points' not in plain[0]
    torch.testing.assert_close(plain[0].bboxes, results[0].bboxes)


def test_predict_calls_predict_by_feat(head):
    _, _, points = _outputs()
    gen = torch.Generator().manual_seed(2)
    hidden_states = torch.randn(NUM_LAYERS, BS, NQ, 16, generator=gen)
    references = torch.rand(NUM_LAYERS, BS, NQ, 4, generator=gen)
    samples = [det_sample(s) for s in SIZES]
    results = head.predict(hidden_states, references, samples,
                           salient_points=points, rescale=False)
    cls_scores, bbox_preds = head(hidden_states, references)
    expected = head.predict_by_feat(
        cls_scores, bbox_preds, [s.metainfo for s in samples],
        rescale=False, layer_salient_points=points)
    for res, exp in zip(results, expected):
        for key in ('bboxes', 'scores', 'labels', 'salient_points'):
            assert torch.equal(res[key], exp[key]), key


@pytest.mark.skipif(
    digit_version(torch.__version__) < digit_version(ONNX_EXPORT_MIN_TORCH),
    reason=f'torch.export.Dim.AUTO needs torch>={ONNX_EXPORT_MIN_TORCH}')
def test_sizes_may_be_tensors_or_symbolic(head):
    """The exporter passes the traced image size: 0-d tensors, or symbolic
    sizes under torch.export, give the numbers of Python ints and stay
    symbolic in the exported program."""
    cls_scores, bbox_preds, points = _outputs()
    cls_scores, bbox_preds, points = cls_scores[:, :1], bbox_preds[:, :1], \
        points[:, :1]

    def predict(h, w):
        res = head.predict_by_feat(
            cls_scores, bbox_preds, [dict(img_shape=(h, w))],
            rescale=False, layer_salient_points=points)[0]
        return res.bboxes, res.scores, res.labels, res.salient_points

    for h, w in SIZES:
        expected = predict(h, w)
        for got, exp in zip(predict(torch.tensor(h), torch.tensor(w)),
                            expected):
            assert torch.equal(got, exp)

    class Predict(torch.nn.Module):

        def forward(self, image):
            return predict(*image.shape[-2:])

    auto = torch.export.Dim.AUTO
    program = torch.export.export(
        Predict(), (torch.zeros(1, 3, *SIZES[0]), ),
        dynamic_shapes=({2: auto, 3: auto}, ))
    for h, w in SIZES:
        got = program.module()(torch.zeros(1, 3, h, w))
        for a, b in zip(got, predict(h, w)):
            assert torch.equal(a, b)
