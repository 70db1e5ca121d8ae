# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align-DETR's head: per-layer k, rank weights, normalization, DN, and the
SAM-DETR / DINO models trained with it."""
import math

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

from conftest import (det_sample, load_model_cfg, tiny_model_cfg,
                      tiny_multiscale_cfg)
from test_align_loss_and_assigner import (BOXES, GT_BOX, IMG, LOGITS,
                                          MATCH_COSTS, cxcywh_to_pixels)


def head(form='ia_bce', k=(2, 1), **kw):
    cfg = dict(
        type='AlignDETRHead',
        num_classes=2,
        embed_dims=16,
        num_pred_layer=len(k),
        sync_cls_avg_factor=True,
        all_layers_num_gt_repeat=list(k),
        loss_cls=dict(type='AlignLoss', form=form),
        train_cfg=dict(
            assigner=dict(type='MixedHungarianAssigner',
                          match_costs=MATCH_COSTS)))
    cfg.update(kw)
    return MODELS.build(cfg)


def vector_batch(num_images=1):
    gt = InstanceData(bboxes=cxcywh_to_pixels([GT_BOX]),
                      labels=torch.tensor([0]))
    meta = dict(img_shape=(IMG, IMG))
    cls = torch.tensor(LOGITS).expand(num_images, -1, -1)
    box = torch.tensor(BOXES).expand(num_images, -1, -1)
    return cls, box, [gt] * num_images, [meta] * num_images


def bce(t, p):
    return -t * math.log(p) - (1 - t) * math.log(1 - p)


def neg(p):
    return -p**2 * math.log(1 - p)


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_layer_with_k2_reproduces_the_test_vector():
    cls, box, gts, metas = vector_batch()
    loss_cls, loss_bbox, loss_iou = head().loss_by_feat_single(
        cls, box, gts, metas, layer_index=0)
    assert loss_cls.item() == pytest.approx(2.50547, rel=1e-5)
    assert loss_bbox.item() == pytest.approx(5 * 0.194025, rel=1e-5)
    assert loss_iou.item() == pytest.approx(2 * 0.284830, rel=1e-5)
    assert (loss_cls + loss_bbox + loss_iou).item() == pytest.approx(
        4.04526, rel=1e-5)
    align = head(form='align').loss_by_feat_single(
        cls, box, gts, metas, layer_index=0)[0]
    assert align.item() == pytest.approx(1.94003, rel=1e-5)


def test_each_layer_gets_its_k_and_the_last_is_one_to_one():
    cls, box, gts, metas = vector_batch()
    # without denoising queries (dn_meta None): SAM-DETR's split_outputs
    losses = head(type='AlignSAMDETRHead').loss_by_feat(
        torch.stack([cls, cls]), torch.stack([box, box]), None, None, gts,
        metas, None)
    assert losses['d0.loss_cls'].item() == pytest.approx(2.50547, rel=1e-5)
    # last layer, k = 1: only q1 (the cheapest) is positive, at rank 0 with
    # the soft target t = q = 0.701568, box weight 1
    p = [[sig(x) for x in row] for row in LOGITS]
    expected = (neg(p[0][0]) + neg(p[0][1]) + bce(0.701568, p[1][0]) +
                neg(p[1][1]) + neg(p[2][0]) + neg(p[2][1]))
    assert losses['loss_cls'].item() == pytest.approx(expected, rel=1e-5)
    assert losses['loss_bbox'].item() == pytest.approx(5 * 0.3, rel=1e-5)
    assert losses['loss_iou'].item() == pytest.approx(2 * (1 - 0.64),
                                                      rel=1e-5)


def test_normalized_by_ground_truths_not_positives_nor_images():
    """Two copies of the image: twice the sum over twice the ground truths,
    though k = 2 puts two positives on each."""
    one = head().loss_by_feat_single(*vector_batch(1), layer_index=0)
    two = head().loss_by_feat_single(*vector_batch(2), layer_index=0)
    for a, b in zip(one, two):
        assert b.item() == pytest.approx(a.item(), rel=1e-6)
    scaled = head().loss_by_feat_single(*vector_batch(1), layer_index=0,
                                        avg_factor=4.)
    assert scaled[0].item() == pytest.approx(one[0].item() / 4, rel=1e-6)


def test_empty_ground_truth():
    cls, box, gts, metas = vector_batch(2)
    empty = InstanceData(bboxes=torch.zeros(0, 4),
                         labels=torch.zeros(0, dtype=torch.long))
    cls = cls.clone().requires_grad_()
    # one image without ground truth: its queries are all negatives
    some = head().loss_by_feat_single(cls, box, [gts[0], empty], metas,
                                      layer_index=0)
    p = [sig(x) for row in LOGITS for x in row]
    assert some[0].item() == pytest.approx(2.50547 + sum(map(neg, p)),
                                           rel=1e-5)
    assert some[1].item() == pytest.approx(5 * 0.194025, rel=1e-5)
    # no ground truth anywhere: normalizer 1, no box loss, still a graph
    none = head().loss_by_feat_single(cls, box, [empty, empty], metas,
                                      layer_index=0)
    assert none[0].item() == pytest.approx(2 * sum(map(neg, p)), rel=1e-5)
    assert none[1].item() == 0 and none[2].item() == 0
    sum(none).backward()
    assert torch.isfinite(cls.grad).all() and cls.grad.abs().sum() > 0


def test_denoising_queries_get_the_soft_target_without_rank_weights():
    """Two DN groups of one ground truth (positive, negative query each):
    positives have rank 0 (t = q, box weight 1), normalized by the positive
    DN queries (G x groups = 2)."""
    gt = InstanceData(bboxes=cxcywh_to_pixels([GT_BOX]),
                      labels=torch.tensor([0]))
    dn_meta = dict(num_denoising_queries=4, num_denoising_groups=2)
    cls = torch.tensor([LOGITS[0], LOGITS[2], LOGITS[1], LOGITS[2]])[None]
    box = torch.tensor([BOXES[0], BOXES[2], BOXES[1], BOXES[2]])[None]
    loss_cls, loss_bbox, loss_iou = head()._loss_dn_single(
        cls, box, [gt], [dict(img_shape=(IMG, IMG))], dn_meta)
    p = [[sig(x) for x in row] for row in LOGITS]
    q0 = p[0][0]**0.25 * 0.9**0.75
    q1 = p[1][0]**0.25 * 0.64**0.75
    expected = (bce(q0, p[0][0]) + neg(p[0][1]) + bce(q1, p[1][0]) +
                neg(p[1][1]) + 2 * (neg(p[2][0]) + neg(p[2][1]))) / 2
    assert loss_cls.item() == pytest.approx(expected, rel=1e-5)
    assert loss_bbox.item() == pytest.approx(5 * (0.04 + 0.3) / 2, rel=1e-5)
    assert loss_iou.item() == pytest.approx(2 * (0.1 + 0.36) / 2, rel=1e-5)


def test_config_keys():
    # default k: 2 on every decoder layer but the last, and 2 on the encoder
    assert head(k=(1, ) * 6, all_layers_num_gt_repeat=None
                ).all_layers_num_gt_repeat == [2, 2, 2, 2, 2, 1]
    assert head(k=(1, ) * 7, all_layers_num_gt_repeat=None,
                as_two_stage=True).all_layers_num_gt_repeat == [2] * 5 + [
                    1, 2]
    with pytest.raises(ValueError, match='all_layers_num_gt_repeat'):
        head(k=(2, 1), all_layers_num_gt_repeat=[2, 2, 1])
    with pytest.raises(ValueError, match='all_layers_num_gt_repeat'):
        head(k=(2, 0))
    # the port's head-level keys reach the loss and the assigner
    h = head(alpha=0.5, gamma=1.0, tau=3.0)
    loss = h.loss_cls
    assert (loss.alpha, loss.gamma, loss.tau) == (0.5, 1.0, 3.0)
    assert h.assigner.alpha == 0.5
    with pytest.raises(ValueError, match='bbox_head.tau'):
        head(tau=3.0, loss_cls=dict(type='AlignLoss', tau=1.5))
    assert head(loss_cls=dict(type='AlignLoss', alpha=0.5)
                ).assigner.alpha == 0.5  # the loss's, by default
    with pytest.raises(ValueError, match='assigner.alpha'):
        head(loss_cls=dict(type='AlignLoss', alpha=0.5),
             train_cfg=dict(assigner=dict(type='MixedHungarianAssigner',
                                          match_costs=MATCH_COSTS,
                                          alpha=0.25)))
    # the port's loss config (IA-BCE written as a sigmoid cross-entropy)
    port = head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True,
                              loss_weight=1.0))
    assert port.loss_cls.form == 'ia_bce'
    with pytest.raises(TypeError, match='AlignLoss'):
        head(loss_cls=dict(type='FocalLoss', use_sigmoid=True))
    with pytest.raises(TypeError, match='MixedHungarianAssigner'):
        head(train_cfg=dict(assigner=dict(type='HungarianAssigner',
                                          match_costs=MATCH_COSTS)))
    with pytest.raises(ValueError, match='layer_index'):
        head().loss_by_feat_single(*vector_batch())


# ---------------------------------------------------------------- models

ONE_GT = dict(boxes=[[23.6, 23.8, 88.6, 71.8]], labels=[2])
TWO_GT = dict(boxes=[[10., 12., 50., 60.], [40., 30., 100., 90.]],
              labels=[1, 3])


def align_ss(**kw):
    return tiny_model_cfg(
        config='align_sam_detr/align-sam-detr_r50_4xb4-12e_coco.py', **kw)


def align_ms(**kw):
    return tiny_multiscale_cfg(
        config='align_sam_detr/align-sam-detr-pp_r50_8xb2-12e_coco.py',
        layer_levels=(2, 0), **kw)


def align_dino(**kw):
    """Our Align-DETR config on mmdet's DINO, small: a quarter-width
    ResNet-18 (C3-C5 + one extra level), 1 encoder and 2 decoder layers,
    256-d (mmdet's DINO decoder encodes reference points with 128 features
    per coordinate)."""
    cfg = load_model_cfg('align_detr/align-detr-4scale_r50_8xb2-12e_coco.py')
    cfg.update(num_queries=10)
    cfg.backbone.update(depth=18, base_channels=16)
    cfg.neck.update(in_channels=[32, 64, 128])
    cfg.encoder.update(num_layers=1)
    cfg.encoder.layer_cfg.ffn_cfg.update(feedforward_channels=64)
    cfg.decoder.update(num_layers=2)
    cfg.decoder.layer_cfg.ffn_cfg.update(feedforward_channels=64)
    cfg.bbox_head.update(num_classes=4, all_layers_num_gt_repeat=[2, 1, 2])
    cfg.dn_cfg.group_cfg.num_dn_queries = 6
    cfg.test_cfg.max_per_img = 10
    cfg.update(kw)
    return cfg


MODELS_UNDER_TEST = {
    'ss': lambda: align_ss(),
    'ss-dn': lambda: align_ss(with_dn=True),
    'ms-smca-dn': lambda: align_ms(with_smca=True, with_dn=True),
    'dino': align_dino,
}


def _build(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _record_k(model, monkeypatch):
    """The k of every assignment, in call order."""
    calls = []
    assign = model.bbox_head.assigner.assign

    def spy(*args, k, **kwargs):
        calls.append(k)
        return assign(*args, k=k, **kwargs)

    monkeypatch.setattr(model.bbox_head.assigner, 'assign', spy)
    return calls


@pytest.mark.parametrize('kind', list(MODELS_UNDER_TEST))
def test_models_train_with_align_loss_and_mixed_matching(kind, monkeypatch):
    model = _build(MODELS_UNDER_TEST[kind]())
    calls = _record_k(model, monkeypatch)
    losses = model.loss(torch.rand(2, 3, 96, 112),
                        [det_sample(**TWO_GT), det_sample(**ONE_GT)])
    names = {'loss_cls', 'loss_bbox', 'loss_iou'}
    expected = names | {f'd0.{n}' for n in names}
    if kind != 'ss':
        expected |= {'dn_' + n for n in names} | {f'd0.dn_{n}' for n in names}
    if kind == 'dino':
        expected |= {'enc_' + n for n in names}
    assert set(losses) == expected
    # per image: decoder layer 0 with k = 2, the last one-to-one, then
    # DINO's encoder proposals with k = 2
    assert calls == ([2, 2, 1, 1, 2, 2] if kind == 'dino' else [2, 2, 1, 1])
    for key, value in losses.items():
        assert torch.isfinite(value) and value.item() > 0, key
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.bbox_head.parameters() if p.requires_grad)


@pytest.mark.parametrize('kind', ['ss-dn', 'dino'])
@pytest.mark.parametrize('empty', ['all', 'one'])
def test_models_with_empty_ground_truth(kind, empty):
    model = _build(MODELS_UNDER_TEST[kind]())
    first = det_sample() if empty == 'all' else det_sample(**TWO_GT)
    losses = model.loss(torch.rand(2, 3, 96, 112), [first, det_sample()])
    for key, value in losses.items():
        assert torch.isfinite(value), key
        if empty == 'all' and 'cls' not in key:
            assert value.item() == 0, key
    sum(losses.values()).backward()


@pytest.mark.parametrize('kind', ['ms-smca-dn', 'dino'])
def test_models_predict_images_of_different_sizes(kind):
    model = _build(MODELS_UNDER_TEST[kind]()).eval()
    samples = [det_sample((96, 112)), det_sample((64, 80))]
    img = torch.rand(2, 3, 96, 112)
    for s in samples:
        s.set_metainfo(dict(batch_input_shape=(96, 112)))
    with torch.no_grad():
        results = model.predict(img, samples)
    for r, (h, w) in zip(results, [(96, 112), (64, 80)]):
        boxes = r.pred_instances.bboxes
        assert len(boxes) == 10
        assert (boxes[:, 2] <= w + 1e-4).all() and (boxes[:, 3] <= h +
                                                    1e-4).all()
        if kind != 'dino':
            assert r.pred_instances.salient_points.shape == (10, 8, 2)


# ---------------------------------------------------------------- gloo

def _rank_losses(rank, init_file, out_dir):
    """One process: the k = 2 layer's losses on this rank's images, with
    the normalizer all-reduced (default) and with its local count."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=2)
    try:
        cls, box, gts, metas = vector_batch(1)
        if rank == 1:  # three ground truths (the same box, other classes)
            gts = [InstanceData(bboxes=gts[0].bboxes.repeat(3, 1),
                                labels=torch.tensor([0, 1, 0]))]
        h = head()
        reduced = h.loss_by_feat_single(cls, box, gts, metas, layer_index=0)
        local = h.loss_by_feat_single(cls, box, gts, metas, layer_index=0,
                                      avg_factor=float(len(gts[0])))
        torch.save([torch.stack(reduced), torch.stack(local)],
                   f'{out_dir}/rank{rank}.pth')
    finally:
        dist.destroy_process_group()


def test_two_processes_normalize_by_the_global_ground_truth_count(tmp_path):
    """Rank 0 has 1 ground truth, rank 1 has 3: both divide by their mean,
    2 (the official num_boxes), not by their own count."""
    import torch.multiprocessing as mp
    mp.spawn(_rank_losses, args=(str(tmp_path / 'init'), str(tmp_path)),
             nprocs=2)
    for rank, count in ((0, 1.), (1, 3.)):
        reduced, local = torch.load(tmp_path / f'rank{rank}.pth')
        torch.testing.assert_close(reduced, local * count / 2.)
        assert not torch.allclose(reduced, local)


# ---------------------------------------------------------------- configs

ALIGN_SAM_DETR = {
    'align-sam-detr_r50_4xb4-12e_coco.py':
    'sam_detr/sam-detr_r50_4xb4-12e_coco.py',
    'align-sam-detr_r50_4xb4-50e_coco.py':
    'sam_detr/sam-detr_r50_4xb4-50e_coco.py',
    'align-sam-detr_r50-dc5_8xb1-12e_coco.py':
    'sam_detr/sam-detr_r50-dc5_8xb1-12e_coco.py',
    'align-sam-detr_r50-dc5_8xb1-50e_coco.py':
    'sam_detr/sam-detr_r50-dc5_8xb1-50e_coco.py',
    'align-sam-detr-pp_r50_8xb2-12e_coco.py':
    'sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py',
    'align-sam-detr-pp_r50_8xb2-50e_coco.py':
    'sam_detr_pp/sam-detr-pp_r50_8xb2-50e_coco.py',
}


def _strip_scope(x):
    """Without the ``_scope_`` keys that ``mmdet::`` bases add."""
    if isinstance(x, dict):
        return {k: _strip_scope(v) for k, v in x.items() if k != '_scope_'}
    if isinstance(x, (list, tuple)):
        return type(x)(_strip_scope(v) for v in x)
    return x


def _flat(d, prefix=''):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def _diff(a, b):
    """Flattened keys whose values differ between two configs."""
    fa = _flat(_strip_scope(a.to_dict()))
    fb = _flat(_strip_scope(b.to_dict()))
    return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


@pytest.mark.parametrize('name', list(ALIGN_SAM_DETR))
def test_align_sam_detr_configs_change_only_the_training_targets(name):
    from mmengine.config import Config
    from conftest import config_path
    ours = Config.fromfile(config_path('align_sam_detr/' + name))
    base = Config.fromfile(config_path(ALIGN_SAM_DETR[name]))
    changed = _diff(ours, base)
    # the model's head and assigner, and the two variables they come from
    assert {k.split('.')[0] for k in changed} == {
        'model', 'align_bbox_head', 'align_assigner'}
    assert {'.'.join(k.split('.')[:2])
            for k in changed if k.startswith('model.')} == {
                'model.bbox_head', 'model.train_cfg'}
    assert ours.model.bbox_head.type == 'AlignSAMDETRHead'
    assert ours.model.bbox_head.loss_cls == dict(
        type='AlignLoss', form='align', alpha=0.25, gamma=2.0, tau=1.5,
        loss_weight=1.0)
    assert ours.model.train_cfg.assigner.type == 'MixedHungarianAssigner'
    assert (ours.model.train_cfg.assigner.match_costs ==
            base.model.train_cfg.assigner.match_costs)


def test_align_detr_config_states_only_the_marked_differences_from_dino():
    from mmengine.config import Config
    from conftest import config_path
    ours = Config.fromfile(
        config_path('align_detr/align-detr-4scale_r50_8xb2-12e_coco.py'))
    import mmdet
    dino = Config.fromfile(f'{mmdet.__path__[0]}/.mim/configs/dino/'
                           'dino-4scale_r50_8xb2-12e_coco.py')
    assert _diff(ours, dino) == {
        'custom_imports.imports', 'custom_imports.allow_failed_imports',
        'custom_hooks', 'train_cfg.type',
        'runner_type', 'model.type', 'model.backbone.frozen_stages',
        'model.neck.bias',
        'model.positional_encoding.offset',
        'model.positional_encoding.temperature', 'model.bbox_head.type',
        'model.bbox_head.all_layers_num_gt_repeat',
        'model.bbox_head.inverse_sigmoid_eps',
        'model.bbox_head.loss_cls.type', 'model.bbox_head.loss_cls.form',
        'model.bbox_head.loss_cls.tau', 'model.bbox_head.loss_cls.use_sigmoid',
        'model.train_cfg.assigner.type',
        'train_dataloader.dataset.filter_cfg.filter_empty_gt',
        'optim_wrapper.paramwise_cfg.norm_decay_mult'
    }
    assert ours.model.type == 'AlignDETR'  # DINO with checked labels
    assert ours.model.bbox_head.all_layers_num_gt_repeat == [2] * 5 + [1, 2]
    k4 = Config.fromfile(
        config_path('align_detr/align-detr-k4-4scale_r50_8xb2-12e_coco.py'))
    assert k4.model.bbox_head.all_layers_num_gt_repeat == [4] * 5 + [1, 4]
    ia_bce = Config.fromfile(config_path(
        'align_detr/align-detr-ia-bce-4scale_r50_8xb2-12e_coco.py'))
    assert ia_bce.model.bbox_head.loss_cls.form == 'ia_bce'
    # the 24-epoch configs: mmdet's DINO 24-epoch schedule, nothing else
    dino24 = Config.fromfile(f'{mmdet.__path__[0]}/.mim/configs/dino/'
                             'dino-4scale_r50_8xb2-24e_coco.py')
    for loss in ('', '-ia-bce'):
        cfg12, cfg24 = (Config.fromfile(
            config_path(f'align_detr/align-detr{loss}-4scale_r50_8xb2-'
                        f'{epochs}e_coco.py')) for epochs in (12, 24))
        assert _diff(cfg24, cfg12) == {
            'max_epochs', 'train_cfg.max_epochs', 'param_scheduler'
        }
        assert cfg24.param_scheduler == dino24.param_scheduler
        assert cfg24.train_cfg.max_epochs == 24
        assert cfg24.model.bbox_head.loss_cls.form == (
            'ia_bce' if loss else 'align')


@pytest.mark.parametrize('eps', [1e-5, 1e-3])
def test_reference_clamp_where_the_head_adds_its_offsets(eps):
    # a reference coordinate below the clamp: 1e-4; zero offsets
    align = head(k=(2, ), inverse_sigmoid_eps=eps)
    for branch in align.reg_branches:
        torch.nn.init.zeros_(branch[-1].weight)
        torch.nn.init.zeros_(branch[-1].bias)
    reference = torch.tensor([[[1e-4, 0.5, 0.9999, 0.2]]])
    _, boxes = align(torch.zeros(1, 1, 1, 16), [reference])
    # detrex's inverse_sigmoid: log(max(x, eps) / max(1 - x, eps))
    expected = [
        sig(math.log(max(x, eps) / max(1 - x, eps)))
        for x in (1e-4, 0.5, 0.9999, 0.2)
    ]
    torch.testing.assert_close(
        boxes[0, 0, 0].double(), torch.tensor(expected).double(),
        rtol=1e-5, atol=1e-9)
