# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align-DETR's Align Loss and mixed (one-to-k) Hungarian matching.

Expected numbers: the test vector of Align-DETR's released code and paper
(1 image, 3 queries, 2 classes, 1 ground truth of class 0 at cxcywh
(0.5, 0.5, 0.4, 0.4), k = 2, tau = 1.5, alpha = 0.25, gamma = 2), derived
independently in numpy from the formulas (IoU without eps).
"""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.structures import InstanceData

from mmdet_samdetr.models.losses import align_quality

LOGITS = [[1.2, -2.0], [2.5, -1.0], [-3.0, 0.5]]
BOXES = [[0.50, 0.50, 0.40, 0.36], [0.55, 0.45, 0.50, 0.50],
         [0.85, 0.15, 0.10, 0.10]]
GT_BOX = [0.50, 0.50, 0.40, 0.40]
IOUS = [0.9, 0.64]  # q0, q1 with the ground truth
IMG = 100  # pixels, square
# official costs: focal class cost x2, L1 (normalized cxcywh) x5, -GIoU x2
MATCH_COSTS = [
    dict(type='FocalLossCost', weight=2.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)
]


def align_loss(**kw):
    return MODELS.build(dict(type='AlignLoss', **kw))


def vector_target(dtype=torch.float32):
    """(labels, ious, ranks) of the test vector: q0 rank 0, q1 rank 1."""
    return (torch.tensor([0, 0, 2]), torch.tensor(IOUS + [0.],
                                                  dtype=dtype),
            torch.tensor([0, 1, -1]))


# ---------------------------------------------------------------- loss

@pytest.mark.parametrize('form, per_query, total', [
    ('ia_bce', [0.426894, 1.70106, 0.377521], 2.50547),
    ('align', [0.130545, 1.43197, 0.377521], 1.94003),
])
def test_loss_reproduces_the_test_vector(form, per_query, total):
    logits = torch.tensor(LOGITS, requires_grad=True)
    loss = align_loss(form=form)
    entries = loss(logits, vector_target(), reduction_override='none')
    torch.testing.assert_close(entries.sum(1), torch.tensor(per_query),
                               rtol=1e-5, atol=1e-6)
    value = loss(logits, vector_target(), avg_factor=1.0)
    assert value.item() == pytest.approx(total, rel=1e-5)
    if form == 'ia_bce':
        torch.testing.assert_close(
            entries, torch.tensor([[0.425091, 0.00180356],
                                   [1.67840, 0.0226581],
                                   [0.000109283, 0.377412]]),
            rtol=1e-5, atol=1e-7)
        value.backward()
        torch.testing.assert_close(
            logits.grad, torch.tensor([[-0.0966351, 0.00487094],
                                       [0.563945, 0.0525811],
                                       [0.000314872, 0.526152]]),
            rtol=1e-5, atol=1e-7)


def test_quality_clamp_comes_before_the_rank_weight():
    """IoU 0 at rank 1: t = 0.01 exp(-1/1.5) = 0.00513417 (seen through the
    IA-BCE gradient p - t)."""
    logit = torch.tensor([[0.3]], requires_grad=True)
    loss = align_loss(form='ia_bce')
    loss(logit, (torch.tensor([0]), torch.tensor([0.]), torch.tensor([1])),
         reduction_override='sum').backward()
    t = torch.sigmoid(logit.detach()) - logit.grad
    assert t.item() == pytest.approx(0.00513417, rel=1e-5)
    assert loss.rank_weight(torch.tensor(1)).item() == pytest.approx(
        0.513417, rel=1e-5)


@pytest.mark.parametrize('form', ['align', 'ia_bce'])
def test_loss_is_finite_at_saturated_logits_and_iou_0_or_1(form):
    logits = torch.tensor([[100., -100.], [-100., 100.], [100., 100.],
                           [-100., -100.]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2])
    for iou in (0., 1.):
        target = (labels, torch.full((4, ), iou), torch.tensor([0, 1, 0, -1]))
        value = align_loss(form=form)(logits, target, avg_factor=2.)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
        logits.grad = None
    # a confident, perfect positive costs almost nothing; a confident
    # negative costs about its logit
    one = align_loss(form=form)(
        torch.tensor([[100., -100.]]),
        (torch.tensor([0]), torch.tensor([1.]), torch.tensor([0])),
        reduction_override='none')
    assert one[0, 1].item() == 0 and one[0, 0].item() < 1e-6
    bg = align_loss(form=form)(torch.tensor([[100.]]), (
        torch.tensor([1]), torch.tensor([0.]), torch.tensor([-1])),
        reduction_override='sum')
    assert bg.item() == pytest.approx(100.)


def test_loss_of_empty_inputs_is_zero_and_differentiable():
    for kw in (dict(), dict(avg_factor=1.), dict(reduction_override='sum')):
        pred = torch.zeros(0, 3, requires_grad=True)
        value = align_loss()(pred, (torch.zeros(0, dtype=torch.long),
                                    torch.zeros(0), torch.zeros(0)), **kw)
        assert value.item() == 0
        value.backward()
    none = align_loss()(torch.zeros(0, 3), (torch.zeros(
        0, dtype=torch.long), torch.zeros(0), torch.zeros(0)),
        reduction_override='none')
    assert none.shape == (0, 3)


def test_weight_avg_factor_and_loss_weight():
    logits = torch.tensor(LOGITS)
    loss = align_loss(form='ia_bce', loss_weight=3.)
    entries = loss(logits, vector_target(), reduction_override='none')
    weight = torch.tensor([1., 0., 2.])
    weighted = loss(logits, vector_target(), weight=weight, avg_factor=4.)
    expected = (entries * weight[:, None]).sum() / 4
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-6)
    assert entries.sum().item() == pytest.approx(3 * 2.50547, rel=1e-5)


@pytest.mark.parametrize('kw, match', [
    (dict(use_sigmoid=False), 'use_sigmoid'),
    (dict(form='focal'), 'form'),
    (dict(alpha=1.5), 'alpha'),
    (dict(tau=0), 'tau'),
])
def test_bad_loss_settings_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        align_loss(**kw)


def _reference(x, labels, ious, ranks, form, alpha=0.25, gamma=2.0,
               tau=1.5, target_logits=None):
    """The released code's formula written directly (sigmoid().log()); the
    targets come from ``target_logits`` (default: x), as constants."""
    p = torch.sigmoid(x)
    p_t = torch.sigmoid(x if target_logits is None else target_logits)
    n, c = x.shape
    t = torch.zeros_like(x)
    pos = torch.zeros_like(x, dtype=torch.bool)
    for i in range(n):
        if labels[i] < c:
            q = max(p_t[i, labels[i]].item()**alpha *
                    ious[i].item()**(1 - alpha), 0.01)
            t[i, labels[i]] = q * math.exp(-ranks[i].item() / tau)
            pos[i, labels[i]] = True
    neg = -p**gamma * torch.log(1 - p)
    if form == 'ia_bce':
        posl = -t * torch.log(p) - (1 - t) * torch.log(1 - p)
    else:
        posl = (-t * (1 - p)**gamma * torch.log(p) -
                (1 - t) * p**gamma * torch.log(1 - p))
    return torch.where(pos, posl, neg).sum()


@pytest.mark.parametrize('form', ['align', 'ia_bce'])
def test_float64_gradient_matches_the_direct_formula(form):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(7, 5, generator=gen, dtype=torch.float64) *
         3).requires_grad_()
    labels = torch.tensor([0, 4, 5, 2, 5, 1, 3])
    ious = torch.rand(7, generator=gen, dtype=torch.float64)
    ious[3] = 0.
    ranks = torch.tensor([0, 1, -1, 2, -1, 0, 1])
    target = (labels, ious, ranks)
    ours = align_loss(form=form)(x, target, reduction_override='sum')
    (g_ours, ) = torch.autograd.grad(ours, x)
    ref = _reference(x, labels, ious, ranks, form)
    (g_ref, ) = torch.autograd.grad(ref, x)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)
    # and a central finite difference of the formula, targets held fixed
    eps, numeric = 1e-6, torch.zeros_like(x)
    for idx in itertools.product(range(7), range(5)):
        step = torch.zeros_like(x)
        step[idx] = eps
        numeric[idx] = (_reference(x.detach() + step, *target, form,
                                   target_logits=x.detach()) -
                        _reference(x.detach() - step, *target, form,
                                   target_logits=x.detach())) / (2 * eps)
    torch.testing.assert_close(g_ours, numeric, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- assigner

def assigner(**kw):
    return TASK_UTILS.build(
        dict(type='MixedHungarianAssigner', match_costs=MATCH_COSTS, **kw))


def cxcywh_to_pixels(boxes, size=IMG):
    b = torch.tensor(boxes, dtype=torch.float32)
    return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2],
                     1) * size


def vector_instances():
    pred = InstanceData(scores=torch.tensor(LOGITS),
                        bboxes=cxcywh_to_pixels(BOXES))
    gt = InstanceData(bboxes=cxcywh_to_pixels([GT_BOX]),
                      labels=torch.tensor([0]))
    return pred, gt, dict(img_shape=(IMG, IMG))


def assigned_quality(pred, result, alpha=0.25):
    """(N,) quality of every query with its assigned ground truth (0 for
    background), from the assignment's labels and IoUs."""
    pos = result.gt_inds > 0
    quality = torch.zeros(len(pos))
    scores = pred.scores[pos, result.labels[pos]].sigmoid()
    quality[pos] = align_quality(scores, result.max_overlaps[pos], alpha)
    return quality


def test_matching_ranks_by_quality_not_by_cost():
    pred, gt, meta = vector_instances()
    mixed = assigner()
    cost = sum(c(pred, gt, meta) for c in mixed.match_costs)[:, 0]
    torch.testing.assert_close(
        cost, torch.tensor([-2.88934, -3.08348, 8.93853]), rtol=1e-5,
        atol=1e-5)
    result = mixed.assign(pred, gt, meta, k=2)
    assert result.gt_inds.tolist() == [1, 1, 0]
    assert result.labels.tolist() == [0, 0, -1]
    torch.testing.assert_close(result.max_overlaps,
                               torch.tensor(IOUS + [0.]))
    # q1 costs less than q0 (-3.08 < -2.89), yet q0 ranks first by quality
    assert result.get_extra_property('ranks').tolist() == [0, 1, -1]
    torch.testing.assert_close(assigned_quality(pred, result),
                               torch.tensor([0.865160, 0.701568, 0.]),
                               rtol=1e-5, atol=1e-6)
    one = mixed.assign(pred, gt, meta, k=1)
    assert one.gt_inds.tolist() == [0, 1, 0]  # the cheapest alone


def official_k(k, num_gts_per_image, num_queries):
    """The released ``MixedMatcher``: a running minimum over the batch of
    int(0.5 * num_queries / G); images without ground truth keep it."""
    out = []
    for g in num_gts_per_image:
        if g > 0:
            k = min(int(0.5 * num_queries / g), k)
        out.append(k)
    return out


@pytest.mark.parametrize('gts, official, ours', [
    ([300, 5], [1, 1], [2, 2]),
    ([500, 5], [0, 0], [1, 2]),
    ([5, 300], [2, 1], [2, 2]),
])
def test_k_cap_per_image_vs_the_official_running_minimum(gts, official,
                                                         ours):
    nq = 900
    assert official_k(2, gts, nq) == official
    mixed = assigner()
    gen = torch.Generator().manual_seed(0)
    measured = []
    for g in gts:
        xy = torch.rand(g, 2, generator=gen) * 80
        gt = InstanceData(bboxes=torch.cat([xy, xy + 10], 1),
                          labels=torch.zeros(g, dtype=torch.long))
        xy = torch.rand(nq, 2, generator=gen) * 80
        pred = InstanceData(scores=torch.randn(nq, 2, generator=gen),
                            bboxes=torch.cat([xy, xy + 10], 1))
        result = mixed.assign(pred, gt, dict(img_shape=(IMG, IMG)), k=2)
        per_gt = torch.bincount(result.gt_inds, minlength=g + 1)[1:]
        assert (per_gt == per_gt[0]).all()
        measured.append(int(per_gt[0]))
    assert measured == ours
    assert [mixed.capped_k(2, g, nq) for g in gts] == ours


def _random_case(data, num_preds, num_gts):
    def boxes(n):  # xyxy, integer corners, at least 1 pixel wide
        xywh = torch.tensor(
            data.draw(st.lists(st.tuples(*[st.integers(0, 40)] * 4),
                               min_size=n, max_size=n)),
            dtype=torch.float32).reshape(n, 4)
        return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] + 1], 1)

    scores = data.draw(st.lists(st.floats(-4, 4), min_size=num_preds * 3,
                                max_size=num_preds * 3))
    labels = data.draw(st.lists(st.integers(0, 2), min_size=num_gts,
                                max_size=num_gts))
    pred = InstanceData(scores=torch.tensor(scores).reshape(num_preds, 3),
                        bboxes=boxes(num_preds))
    gt = InstanceData(bboxes=boxes(num_gts),
                      labels=torch.tensor(labels, dtype=torch.long))
    return pred, gt


@settings(max_examples=60, deadline=None)
@given(data=st.data(), num_preds=st.integers(1, 12),
       num_gts=st.integers(0, 8), k=st.integers(1, 4))
def test_assigner_properties(data, num_preds, num_gts, k):
    pred, gt = _random_case(data, num_preds, num_gts)
    mixed = assigner()
    result = mixed.assign(pred, gt, dict(img_shape=(64, 64)), k=k)
    gt_inds = result.gt_inds
    ranks = result.get_extra_property('ranks')
    quality = assigned_quality(pred, result)
    if num_gts == 0:
        assert (gt_inds == 0).all() and (ranks == -1).all()
        return
    k_eff = mixed.capped_k(k, num_gts, num_preds)
    assert 1 <= k_eff <= k and (k_eff * num_gts <= num_preds or k_eff == 1)
    per_gt = torch.bincount(gt_inds, minlength=num_gts + 1)[1:]
    # a query holds at most one ground truth by construction (gt_inds is
    # per query); each ground truth gets exactly k when k * G fits
    assert int(per_gt.sum()) == min(k_eff * num_gts, num_preds)
    if k_eff * num_gts <= num_preds:
        assert (per_gt == k_eff).all()
    pos = gt_inds > 0
    assert (result.labels[pos] == gt.labels[gt_inds[pos] - 1]).all()
    assert (ranks[~pos] == -1).all() and (ranks[pos] >= 0).all()
    for g in range(1, num_gts + 1):
        members = (gt_inds == g).nonzero()[:, 0]
        order = members[torch.argsort(ranks[members])]
        assert sorted(ranks[members].tolist()) == list(range(len(members)))
        q = quality[order]
        assert (q[:-1] >= q[1:]).all()  # rank 0 has the best quality
        ties = q[:-1] == q[1:]  # ties: lower query index first
        assert (order[:-1][ties] < order[1:][ties]).all()
    # the assignment is a minimum-cost one of the cost tiled k times
    if num_preds <= 6 and k_eff * num_gts <= num_preds:
        cost = sum(c(pred, gt, dict(img_shape=(64, 64)))
                   for c in mixed.match_costs).numpy()
        tiled = np.tile(cost, (1, k_eff))
        best = min(
            sum(tiled[r, c] for c, r in enumerate(rows))
            for rows in itertools.permutations(range(num_preds),
                                               tiled.shape[1]))
        got = sum(cost[q, gt_inds[q] - 1] for q in pos.nonzero()[:, 0])
        assert got == pytest.approx(best, rel=1e-5, abs=1e-4)


def test_non_finite_cost_names_the_image():
    pred, gt, meta = vector_instances()
    pred.scores[0, 0] = float('nan')
    with pytest.raises(ValueError, match='a.jpg'):
        assigner().assign(pred, gt, dict(meta, img_path='a.jpg'), k=2)
    with pytest.raises(ValueError, match='k must be'):
        assigner().assign(pred, gt, meta, k=0)
