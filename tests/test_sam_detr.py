# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Detector tests in mmdet's conventions, plus behaviour checks."""
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.testing import demo_mm_inputs

from conftest import det_sample, tiny_model_cfg


def _model(with_smca=False, **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(with_smca=with_smca, **kwargs))
    model.init_weights()
    return model


@pytest.mark.parametrize('with_smca', [False, True])
def test_empty_gt_loss(with_smca):
    model = _model(with_smca)
    losses = model.loss(torch.rand(1, 3, 96, 112), [det_sample()])
    assert len(losses) == 3 * 2  # 3 losses x 2 decoder layers
    for key, value in losses.items():
        if 'cls' in key:
            assert value.item() > 0, key
        else:
            assert value.item() == 0, key


@pytest.mark.parametrize('with_smca', [False, True])
def test_one_gt_loss(with_smca):
    model = _model(with_smca)
    sample = det_sample(boxes=[[23.6, 23.8, 88.6, 71.8]], labels=[2])
    losses = model.loss(torch.rand(1, 3, 96, 112), [sample])
    for key, value in losses.items():
        assert value.item() > 0, key
    sum(losses.values()).backward()


def test_forward_and_predict():
    model = _model().eval()
    img = torch.rand(1, 3, 96, 112)
    scores, boxes = model._forward(img, [det_sample()])
    assert scores.shape == (2, 1, 10, 4) and boxes.shape == (2, 1, 10, 4)
    assert ((boxes >= 0) & (boxes <= 1)).all()
    with torch.no_grad():
        result = model.predict(img, [det_sample()], rescale=True)[0]
    pred = result.pred_instances
    assert pred.bboxes.shape == (10, 4) and pred.scores.shape == (10, )
    assert pred.salient_points.shape == (10, 8, 2)
    assert (pred.bboxes[:, 2:] >= pred.bboxes[:, :2]).all()


def test_predicted_salient_points_match_queries_and_rescale():
    """The points attached to a detection are those of its query, in the
    same pixel frame as its box."""
    model = _model().eval()
    img = torch.rand(1, 3, 96, 112)
    sample = det_sample()
    sample.set_metainfo(dict(scale_factor=(2., 4.)))
    with torch.no_grad():
        heads = model.forward_transformer(model.extract_feat(img), [sample])
        pred = model.bbox_head.predict(
            **heads, batch_data_samples=[sample], rescale=True)[0]
        scores, _ = model.bbox_head(heads['hidden_states'],
                                    heads['references'])
    query = scores[-1, 0].sigmoid().flatten().topk(10).indices // 4
    expected = heads['salient_points'][-1, 0, query] * torch.tensor(
        [112., 96.]) / torch.tensor([2., 4.])
    torch.testing.assert_close(pred.salient_points, expected)


@pytest.mark.parametrize('with_smca', [False, True])
def test_images_of_different_sizes(with_smca):
    """Padding path: modes loss / predict / tensor on a padded batch."""
    model = _model(with_smca)
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 100, 130]],
                            num_classes=4)
    data = model.data_preprocessor(packed, True)
    assert data['inputs'].shape[-2:] == (128, 130)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    data = model.data_preprocessor(packed, False)
    with torch.no_grad():
        results = model(**data, mode='predict')
        outs = model(**data, mode='tensor')
    assert len(results) == 2 and isinstance(results[0], DetDataSample)
    assert isinstance(outs, tuple)


def test_result_of_an_image_does_not_depend_on_its_batch_mates():
    """Image A padded next to B or next to B' (other content, same size):
    identical predictions, i.e. padding and the mask isolate images."""
    model = _model(with_smca=True).eval()
    torch.manual_seed(3)
    a = torch.rand(3, 80, 96)
    outs = []
    for _ in range(2):
        batch = torch.zeros(2, 3, 112, 128)
        batch[0, :, :80, :96] = a
        batch[1] = torch.rand(3, 112, 128)
        samples = [det_sample((80, 96)), det_sample((112, 128))]
        for s in samples:
            s.set_metainfo(dict(batch_input_shape=(112, 128)))
        with torch.no_grad():
            outs.append(model.predict(batch, samples)[0].pred_instances)
    torch.testing.assert_close(outs[0].bboxes, outs[1].bboxes)
    torch.testing.assert_close(outs[0].salient_points,
                               outs[1].salient_points)


def test_salient_points_inside_the_reference_boxes():
    model = _model().eval()
    with torch.no_grad():
        heads = model.forward_transformer(
            model.extract_feat(torch.rand(1, 3, 96, 112)), [det_sample()])
    refs = heads['references'][:, :, :, None]  # (L, bs, nq, 1, 4)
    points = heads['salient_points']
    lo = refs[..., :2] - refs[..., 2:] / 2
    hi = refs[..., :2] + refs[..., 2:] / 2
    assert ((points >= lo - 1e-6) & (points <= hi + 1e-6)).all()
    # layer 1 reads the detached box predicted by layer 0
    _, boxes = model.bbox_head(heads['hidden_states'],
                               heads['references'])
    torch.testing.assert_close(heads['references'][1], boxes[0])


@pytest.mark.parametrize('with_smca', [False, True])
def test_reference_boxes_learn_through_the_official_paths(with_smca):
    """As in the official code: without SMCA, the learnable boxes get
    gradient only from layer 0's box prediction (the official sine
    embeddings run under no_grad, RoIAlign gives none and later references
    are detached); SMCA's Gaussian adds a path through the attention."""
    model = _model(with_smca)
    sample = det_sample(boxes=[[23.6, 23.8, 88.6, 71.8]], labels=[2])
    losses = model.loss(torch.rand(1, 3, 96, 112), [sample])
    last = losses['loss_cls'] + losses['loss_bbox'] + losses['loss_iou']
    grads = torch.autograd.grad(
        last, [model.query_embedding.weight] +
        [layer.semantics_aligner.point_predictor[-1].weight
         for layer in model.decoder.layers],
        allow_unused=True, retain_graph=True)
    ref_grad = grads[0]
    if with_smca:
        assert ref_grad is not None and ref_grad.abs().max() > 0
    else:
        assert ref_grad is None or ref_grad.abs().max() == 0
    # salient-point offsets learn through grid_sample in every layer
    assert all(g is not None and g.abs().max() > 0 for g in grads[1:])
    (ref_grad, ) = torch.autograd.grad(losses['d0.loss_bbox'],
                                       [model.query_embedding.weight])
    assert ref_grad.abs().max() > 0


def test_bad_decoder_config_is_reported():
    cfg = tiny_model_cfg()
    cfg.decoder.layer_cfg.aligner_cfg.num_points = 4
    with pytest.raises(ValueError, match='num_points'):
        MODELS.build(cfg)
    cfg = tiny_model_cfg()
    cfg.decoder.layer_levels = [0]
    with pytest.raises(ValueError, match='layer_levels'):
        MODELS.build(cfg)
