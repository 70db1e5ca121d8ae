# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Behaviour of the Semantics Aligner and the SMCA bias."""
import pytest
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import nn

from mmdet_samdetr.models.layers import (SalientPointCrossAttention,
                                         SemanticsAligner, mmcv_roi_align,
                                         semantics_aligner, smca_gaussian_bias)
from mmdet_samdetr.models.layers.semantics_aligner import (SAMPLING_PATHS,
                                                           sampling_path)


def _aligner(with_smca=False, dims=32, num_points=8):
    torch.manual_seed(0)
    aligner = SemanticsAligner(
        embed_dims=dims,
        num_points=num_points,
        reduced_dims=8,
        mlp_dims=(32, 32, 32),
        with_smca=with_smca)
    aligner.init_weights()
    return aligner


def _inputs(bs=2, nq=20, dims=32, height=9, width=13):
    torch.manual_seed(1)
    query = torch.randn(bs, nq, dims)
    memory = torch.randn(bs, dims, height, width)
    boxes = torch.cat([torch.rand(bs, nq, 2), torch.rand(bs, nq, 2) * 0.9 +
                       0.05], -1)
    valid = torch.tensor([[width, height], [width - 4, height - 2]]).float()
    return query, memory, boxes, valid


def test_points_lie_inside_their_boxes():
    aligner = _aligner()
    # Large last-layer weights push tanh towards +-1: the worst case.
    nn.init.normal_(aligner.point_predictor[-1].weight, std=10.)
    query, memory, boxes, valid = _inputs()
    points = aligner(query, memory, boxes, valid)['points']
    xyxy = bbox_cxcywh_to_xyxy(boxes)[:, :, None]
    assert points.shape == (2, 20, 8, 2)
    assert (points >= xyxy[..., :2] - 1e-6).all()
    assert (points <= xyxy[..., 2:] + 1e-6).all()
    # ... and they spread: not all at the centre.
    assert (points - boxes[:, :, None, :2]).abs().max() > 0.1


def test_zero_offsets_give_box_centre_and_centre_feature():
    aligner = _aligner()
    nn.init.zeros_(aligner.point_predictor[-1].weight)
    nn.init.zeros_(aligner.point_predictor[-1].bias)
    query, memory, boxes, valid = _inputs()
    out = aligner(query, memory, boxes, valid)
    torch.testing.assert_close(out['points'],
                               boxes[:, :, None, :2].expand(-1, -1, 8, -1))
    # offset 0 samples the middle of the 7x7 RoI grid, i.e. cell (3, 3).
    pix = bbox_cxcywh_to_xyxy(boxes) * valid.repeat(1, 2)[:, None]
    roi = mmcv_roi_align(memory, pix).view(2, 20, 32, 7, 7)
    gate = aligner.content_gate(query).sigmoid().view(2, 20, 8, 32)
    expected = roi[..., 3, 3][:, :, None] * gate
    torch.testing.assert_close(out['content'], expected)


def test_default_init_is_the_official_effective_one():
    """The point MLP's last weight is not zero once the detector
    initializes (the official xavier reset overrides the official zero
    init), but its bias is."""
    aligner = _aligner()
    assert aligner.point_predictor[-1].bias.abs().max() == 0


def test_gradients_follow_the_official_paths():
    """The points learn only through grid_sample (the sine embedding is
    no_grad): content and SMCA scales give the point MLP a gradient, the
    position
    embedding does not; no gradient reaches the boxes through RoIAlign."""
    aligner = _aligner()
    query, memory, boxes, valid = _inputs()
    boxes.requires_grad_(True)
    out = aligner(query, memory, boxes, valid)
    (g_point, g_box) = torch.autograd.grad(
        out['position'].sum(), [aligner.point_predictor[-1].weight, boxes],
        allow_unused=True)
    assert g_point is None or g_point.abs().max() == 0
    assert g_box is None or g_box.abs().max() == 0
    out = aligner(query, memory, boxes, valid)
    (g_point, g_box) = torch.autograd.grad(
        out['content'].sum(), [aligner.point_predictor[-1].weight, boxes],
        allow_unused=True)
    assert g_point.abs().max() > 0
    assert g_box is None or g_box.abs().max() == 0
    # The points themselves do carry the box gradient (used by SMCA).
    out = aligner(query, memory, boxes, valid)
    (g_box, ) = torch.autograd.grad(out['points'].sum(), [boxes])
    assert g_box.abs().max() > 0


def test_smca_bias_peaks_at_the_salient_point():
    torch.manual_seed(0)
    height, width = 10, 14
    valid = torch.tensor([[14., 10.], [9., 6.]])
    points = torch.rand(2, 5, 8, 2) * 0.9 + 0.05
    scales = torch.randn(2, 5, 8, 2) + 2
    bias = smca_gaussian_bias(points, scales, valid, (height, width))
    assert bias.shape == (2, 8, 5, height * width)
    assert (bias <= 0).all()
    # The maximum is at the cell containing the point (in valid pixels).
    cell = (points * valid[:, None, None]).floor().long().transpose(1, 2)
    argmax = bias.argmax(-1)
    assert torch.equal(argmax // width, cell[..., 1])
    assert torch.equal(argmax % width, cell[..., 0])
    # Exact value against the official formula at one cell.
    b, h, q, y, x = 1, 3, 2, 4, 7
    g = points[b, q, h] * valid[b]
    s = scales[b, q, h]
    ref = -(s[0]**2 * (g[0] - x - 0.5)**2 + s[1]**2 *
            (g[1] - y - 0.5)**2) / 8
    torch.testing.assert_close(bias[b, h, q, y * width + x], ref)


@pytest.mark.parametrize('keys', [7, 40])
def test_cross_attention_shares_one_key_for_all_heads(keys):
    """Equal to the official MHA(8*d, 8 heads, vdim=d) fed with the key
    repeated per head, values and gradients, with fewer keys than channels
    and more."""
    torch.manual_seed(0)
    dims, heads, bs, nq = 16, 4, 2, 5
    attn = SalientPointCrossAttention(dims, heads, attn_drop=0.).double()
    for param in attn.parameters():  # non-zero biases everywhere
        nn.init.normal_(param, std=0.3)
    content, position = torch.randn(2, bs, nq, heads, dims,
                                    dtype=torch.float64,
                                    requires_grad=True).unbind(0)
    memory, pos = torch.randn(2, bs, keys, dims, dtype=torch.float64,
                              requires_grad=True).unbind(0)
    mask = torch.zeros(bs, keys, dtype=torch.bool)
    mask[1, -2:] = True
    ours = attn(content, position, memory, pos, mask)
    q = attn.qcontent_proj(content) + attn.qpos_sine_proj(position)
    k = attn.kcontent_proj(memory) + attn.kpos_sine_proj(pos)
    v = attn.v_proj(memory).view(bs, keys, heads, dims // heads)
    outs = []
    for h in range(heads):  # naive per-head reference
        logits = torch.einsum('bqc,bkc->bqk', q[:, :, h], k) / dims**0.5
        logits = logits.masked_fill(mask[:, None], float('-inf'))
        outs.append(torch.einsum('bqk,bkc->bqc', logits.softmax(-1),
                                 v[:, :, h]))
    ref = attn.out_proj(torch.cat(outs, -1))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    inputs = [content, position, memory, pos] + list(attn.parameters())
    grad_out = torch.randn(ref.shape, dtype=ref.dtype)
    grads = torch.autograd.grad((ours * grad_out).sum(), inputs)
    grads_ref = torch.autograd.grad((ref * grad_out).sum(), inputs)
    for g_ours, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-11)


def _map(height, width, channels=256, device='cpu'):
    return torch.empty((), device=device).expand(1, channels, height, width)


def test_direct_sampling_never_needs_more_memory_than_the_official_path():
    """On the CPU the points are sampled directly only while the
    (nq * M, H * W) weight map is no larger than the (nq, d, 7, 7) RoI
    features of the two-step path; off the CPU, the reference (mmcv's
    op, grid_sample)."""
    assert sampling_path(_map(25, 42), 8, 7) == 'direct'  # 800x1333, C5
    assert sampling_path(_map(50, 84), 8, 7) == 'separable'  # C4, DC5
    assert sampling_path(_map(100, 167), 8, 7) == 'separable'  # C3
    assert sampling_path(_map(28, 56), 8, 7) == 'direct'  # 8 * 1568 = 256 * 49
    assert sampling_path(_map(28, 57), 8, 7) == 'separable'
    assert sampling_path(_map(28, 56, 32), 8, 7) == 'separable'
    assert sampling_path(_map(25, 42, device='meta'), 8, 7) == 'reference'


@pytest.mark.parametrize('path', SAMPLING_PATHS + (None, ))
def test_aligner_equals_the_official_two_step_computation(path, monkeypatch):
    """Folding the 1x1 conv in front of RoIAlign, the separable RoIAlign
    and (``'direct'``) sampling the points straight from the map give the
    official RoIAlign -> conv -> MLP -> grid_sample result with mmcv's
    RoIAlign, values and gradients (to the memory, the query and every
    parameter). ``None``: the path :func:`sampling_path` picks here."""
    if path is not None:
        monkeypatch.setattr(semantics_aligner, 'sampling_path',
                            lambda *args: path)
    aligner = _aligner().double()
    # points spread
    nn.init.normal_(aligner.point_predictor[-1].weight, std=0.3)
    query, memory, boxes, valid = [t.double() for t in _inputs()]
    memory.requires_grad_(True)
    query.requires_grad_(True)
    out = aligner(query, memory, boxes, valid)['content']
    pix = bbox_cxcywh_to_xyxy(boxes) * valid.repeat(1, 2)[:, None]
    roi = mmcv_roi_align(memory, pix)
    ref = aligner.point_predictor(
        torch.relu(aligner.reduce_conv(roi)).flatten(1))
    offsets = ref[:, :16].tanh().view(-1, 1, 8, 2)
    ref = torch.nn.functional.grid_sample(roi, offsets, align_corners=False)
    ref = ref.view(2, 20, 32, 8).transpose(2, 3) * aligner.content_gate(
        query).sigmoid().view(2, 20, 8, 32)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grad_out = torch.randn(out.shape, dtype=out.dtype)
    inputs = [memory, query] + [
        p for n, p in aligner.named_parameters()
        if not n.startswith('position_gate')
    ]
    grads = torch.autograd.grad((out * grad_out).sum(), inputs)
    grads_ref = torch.autograd.grad((ref * grad_out).sum(), inputs)
    for g_out, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g_out, g_ref, rtol=0, atol=1e-11)
