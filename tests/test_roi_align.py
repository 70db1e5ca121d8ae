# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The separable RoIAlign equals mmcv's op (the reference), forward and
backward, and the direct point sampling equals grid_sample of mmcv's RoIAlign
output."""
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mmcv.ops import roi_align

from mmdet_samdetr.models.layers import (mmcv_roi_align, roi_point_sample,
                                         separable_roi_align)


def _mmcv(feat, boxes, output_size, sampling_ratio, aligned):
    """mmcv's op called directly, (B * N, C, out_h, out_w)."""
    bs, num = boxes.shape[:2]
    batch_idx = torch.arange(bs, dtype=boxes.dtype).repeat_interleave(num)
    rois = torch.cat([batch_idx[:, None], boxes.reshape(-1, 4)], 1)
    return roi_align(feat, rois, output_size, 1.0, sampling_ratio, 'avg',
                     aligned)


def _random_boxes(bs, num, height, width, dtype, scale=1.0):
    centre = torch.rand(bs, num, 2, dtype=dtype) * torch.tensor(
        [width, height], dtype=dtype) * 1.3 - 2
    size = torch.rand(bs, num, 2, dtype=dtype) * torch.tensor(
        [width, height], dtype=dtype) * scale
    return torch.cat([centre - size / 2, centre + size / 2], -1)


@pytest.mark.parametrize('sampling_ratio', [0, 1, 2])
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('box_scale', [0.05, 0.6, 2.0])
def test_matches_mmcv_forward_backward(sampling_ratio, aligned, box_scale):
    torch.manual_seed(0)
    feat = torch.randn(2, 6, 11, 15, dtype=torch.float64, requires_grad=True)
    boxes = _random_boxes(2, 40, 11, 15, torch.float64, box_scale)
    ours = separable_roi_align(feat, boxes, (7, 7), 1.0, sampling_ratio,
                               aligned)
    ref = _mmcv(feat, boxes, (7, 7), sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(ref)
    (g_ours, ) = torch.autograd.grad((ours * grad_out).sum(), feat)
    (g_ref, ) = torch.autograd.grad((ref * grad_out).sum(), feat)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-11)


def _grid_sample_of_mmcv(feat, boxes, points, output_size, aligned=True):
    """The official two steps: RoIAlign, then grid_sample at the points."""
    bs, num, num_points = points.shape[:3]
    roi = _mmcv(feat, boxes, output_size, 0, aligned)
    out = torch.nn.functional.grid_sample(
        roi, points.reshape(bs * num, 1, num_points, 2), 'bilinear',
        align_corners=False)
    return out.view(bs, num, -1, num_points).transpose(2, 3)


@pytest.mark.parametrize('box_scale', [0.05, 0.6, 2.0])
@pytest.mark.parametrize('output_size', [(7, 7), (5, 3)])
def test_point_sample_equals_grid_sample_of_roi_align(box_scale,
                                                      output_size):
    torch.manual_seed(2)
    feat = torch.randn(2, 5, 9, 14, dtype=torch.float64, requires_grad=True)
    boxes = _random_boxes(2, 30, 9, 14, torch.float64, box_scale)
    points = torch.rand(2, 30, 6, 2, dtype=torch.float64) * 2 - 1
    # the edges, the centre and cell centres (integer positions on the RoI
    # grid, where the bilinear weights switch taps)
    cell_x = (2 * torch.arange(output_size[1]) + 1) / output_size[1] - 1
    points[0, :, 0] = torch.tensor([-1., 1.])
    points[0, :, 1] = 0.
    points[1, :, :2, 0] = cell_x[:2]
    points[1, :, 2, 1] = (2 * 1 + 1) / output_size[0] - 1
    points.requires_grad_(True)
    ours = roi_point_sample(feat, boxes, points, output_size)
    ref = _grid_sample_of_mmcv(feat, boxes, points, output_size)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    grad_out = torch.randn(ref.shape, dtype=ref.dtype)
    grads = torch.autograd.grad((ours * grad_out).sum(), [feat, points])
    grads_ref = torch.autograd.grad((ref * grad_out).sum(), [feat, points])
    for g_ours, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-11)


def test_point_sample_gives_boxes_no_gradient():
    feat = torch.randn(1, 3, 8, 8)
    boxes = torch.tensor([[[1., 1., 6., 5.]]], requires_grad=True)
    points = torch.zeros(1, 1, 2, 2, requires_grad=True)
    roi_point_sample(feat, boxes, points).sum().backward()
    assert boxes.grad is None
    assert points.grad is not None


def test_adaptive_grid_differs_per_box():
    """Boxes of very different sizes use different sample counts; a single
    fixed grid would not reproduce mmcv."""
    torch.manual_seed(1)
    feat = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    boxes = torch.tensor([[[2., 2., 6., 6.], [0., 0., 39., 37.],
                           [10., 3., 11., 30.]]], dtype=torch.float64)
    ref = _mmcv(feat, boxes, (7, 7), 0, True)
    torch.testing.assert_close(
        separable_roi_align(feat, boxes), ref, rtol=0, atol=1e-12)
    fixed = separable_roi_align(feat, boxes, sampling_ratio=2)
    assert (fixed - ref).abs().max() > 1e-3


def test_empty_and_outside_boxes_give_zero():
    feat = torch.randn(1, 2, 8, 8)
    boxes = torch.tensor([[[3., 3., 3., 3.], [20., 20., 30., 30.]]])
    out = separable_roi_align(feat, boxes)
    assert out.abs().max() == 0
    torch.testing.assert_close(out, _mmcv(feat, boxes, (7, 7), 0, True))


def test_no_gradient_to_boxes():
    feat = torch.randn(1, 2, 8, 8, requires_grad=True)
    boxes = torch.tensor([[[1., 1., 6., 5.]]], requires_grad=True)
    separable_roi_align(feat, boxes).sum().backward()
    assert boxes.grad is None
    assert feat.grad.abs().sum() > 0


def test_float32_close_to_mmcv_in_mmcv_layout():
    torch.manual_seed(2)
    feat = torch.randn(2, 16, 20, 25, requires_grad=True)
    boxes = _random_boxes(2, 30, 20, 25, torch.float32, 0.7)
    ours = separable_roi_align(feat, boxes)
    ref = mmcv_roi_align(feat, boxes)
    assert ours.shape == ref.shape == (60, 16, 7, 7)
    assert ours.is_contiguous()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ref, _mmcv(feat, boxes, (7, 7), 0, True),
                               rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    out=st.integers(1, 7),
    coords=st.lists(
        st.floats(-4, 16, allow_nan=False, width=32), min_size=4,
        max_size=4))
# found by this test: a box height of 1 + 2**-24 is one sample per bin in
# mmcv (its grid size is a float32 ceiling) and was two in our float64
@example(height=1, width=1, out=1, coords=[0.0, 5.960464477539063e-08, 1.0,
                                           -1.0])
def test_property_matches_mmcv(height, width, out, coords):
    feat = torch.randn(1, 3, height, width, dtype=torch.float64)
    x1, y1, x2, y2 = coords
    boxes = torch.tensor([[[min(x1, x2), min(y1, y2),
                            max(x1, x2), max(y1, y2)]]], dtype=torch.float64)
    torch.testing.assert_close(
        separable_roi_align(feat, boxes, (out, out)),
        _mmcv(feat, boxes, (out, out), 0, True),
        rtol=0,
        atol=1e-10)


@pytest.mark.parametrize('roi_align', [mmcv_roi_align, separable_roi_align])
def test_non_contiguous_map_gives_the_contiguous_result(roi_align):
    """A transposed view of the memory (what a decoder gets from a
    (bs, H*W, C) sequence) pools as the same map stored contiguously; mmcv's
    CPU kernel alone would misread the strides."""
    torch.manual_seed(0)
    seq = torch.randn(2, 9 * 13, 6, dtype=torch.float64)
    view = seq.transpose(1, 2).view(2, 6, 9, 13)  # not contiguous
    assert not view.is_contiguous()
    boxes = torch.rand(2, 30, 4, dtype=torch.float64) * 8
    boxes[..., 2:] += boxes[..., :2]
    expected = roi_align(view.contiguous(), boxes)
    torch.testing.assert_close(roi_align(view, boxes), expected, rtol=0,
                               atol=1e-12)
