# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""RoIAlign for a fixed number of boxes per image.

On CUDA this calls mmcv's ``RoIAlign`` op. On CPU it uses an exact
reformulation that is much faster than mmcv's CPU kernel (whose backward is
single-threaded): bilinear interpolation is separable and the adaptive
sampling grid of a RoIAlign bin is a Cartesian product of row samples and
column samples, so the pooled value of bin ``(p, q)`` of box ``k`` is

    out[k, c, p, q] = sum_{i, j} Ay[k, p, i] * F[b_k, c, i, j] * Ax[k, q, j]

where ``Ay`` (``Ax``) averages the row (column) interpolation weights of the
bin's samples. ``Ay``/``Ax`` are tiny and built without gradient (RoIAlign
gives no gradient to the boxes, as in mmcv and torchvision); the two
contractions are batched matrix products that autograd differentiates with
respect to the features. The result equals mmcv's ``roi_align`` (same
sampling positions, same border rules) up to float rounding; see
``tests/test_roi_align.py``.
"""
from typing import Tuple

import torch
from torch import Tensor


def _axis_weights(start: Tensor, end: Tensor, size: int, out_size: int,
                  spatial_scale: float, sampling_ratio: int,
                  aligned: bool) -> Tensor:
    """Averaged interpolation weights of each output bin along one axis.

    Follows mmcv's ``roi_align`` CPU/CUDA kernels exactly: sample positions,
    the adaptive ``ceil(roi_size / out_size)`` grid, the ``[-1, size]``
    validity window, clamping at 0 and at ``size - 1``, and a zero result for
    empty boxes.

    Args:
        start (Tensor): Box start coordinates in input pixels, shape (K, ).
        end (Tensor): Box end coordinates in input pixels, shape (K, ).
        size (int): Feature size along this axis.
        out_size (int): Number of output bins along this axis.

    Returns:
        Tensor: Weights of shape (K, out_size, size); row ``(k, p)`` sums to
        the fraction of the bin's samples that fall inside the map.
    """
    offset = 0.5 if aligned else 0.0
    roi_start = start * spatial_scale - offset
    roi_len = end * spatial_scale - offset - roi_start
    if not aligned:
        roi_len = roi_len.clamp(min=1.0)
    bin_len = roi_len / out_size
    if sampling_ratio > 0:
        grid = torch.full_like(roi_len, float(sampling_ratio))
    else:
        grid = torch.ceil(roi_len / out_size)
    grid = grid.clamp(min=0)
    num_grid = max(int(grid.max().item()) if grid.numel() else 0, 1)

    bins = torch.arange(out_size, dtype=start.dtype, device=start.device)
    samples = torch.arange(num_grid, dtype=start.dtype, device=start.device)
    # sample positions, (K, out_size, num_grid)
    step = (bin_len / grid.clamp(min=1))[:, None, None]
    pos = (roi_start[:, None, None] + bins[None, :, None] *
           bin_len[:, None, None] + (samples[None, None, :] + 0.5) * step)
    valid = (samples[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (
        pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().clamp(max=size - 1)
    at_edge = low >= size - 1
    frac = torch.where(at_edge, torch.zeros_like(pos), pos - low)
    high = torch.where(at_edge, low, low + 1)
    norm = valid.to(pos.dtype) / grid.clamp(min=1)[:, None, None]
    weights = pos.new_zeros(start.numel() * out_size, size)
    index = torch.cat([low, high], dim=-1).long().view(-1, 2 * num_grid)
    value = torch.cat([(1 - frac) * norm, frac * norm],
                      dim=-1).view(-1, 2 * num_grid)
    weights.scatter_add_(1, index, value)
    return weights.view(start.numel(), out_size, size)


def separable_roi_align(feat: Tensor,
                        boxes: Tensor,
                        output_size: Tuple[int, int] = (7, 7),
                        spatial_scale: float = 1.0,
                        sampling_ratio: int = 0,
                        aligned: bool = True) -> Tensor:
    """RoIAlign (average pooling) as two batched matrix products.

    Args:
        feat (Tensor): Feature map, shape (B, C, H, W).
        boxes (Tensor): Boxes ``(x1, y1, x2, y2)`` in input pixels (before
            ``spatial_scale``), the same number for each image, shape
            (B, N, 4). No gradient flows to them.
        output_size (tuple[int, int]): ``(out_h, out_w)``.
        spatial_scale (float): Scale applied to the box coordinates.
        sampling_ratio (int): Samples per bin and axis; ``0`` means adaptive
            (``ceil(roi_size / out_size)``), as in mmcv.
        aligned (bool): Shift boxes by -0.5 pixel (``aligned=True`` in mmcv).

    Returns:
        Tensor: Pooled features, shape (B, N, C, out_h, out_w).
    """
    bs, channels, height, width = feat.shape
    if width > height:
        # The first product keeps one spatial axis (N*out*C*kept values);
        # keep the shorter one by working on the transposed map.
        out = separable_roi_align(
            feat.transpose(2, 3), boxes[..., [1, 0, 3, 2]],
            tuple(output_size)[::-1], spatial_scale, sampling_ratio, aligned)
        return out.transpose(3, 4)
    num_boxes = boxes.size(1)
    out_h, out_w = output_size
    with torch.no_grad():
        flat = boxes.detach().reshape(-1, 4).to(feat.dtype)
        weight_y = _axis_weights(flat[:, 1], flat[:, 3], height, out_h,
                                 spatial_scale, sampling_ratio, aligned)
        weight_x = _axis_weights(flat[:, 0], flat[:, 2], width, out_w,
                                 spatial_scale, sampling_ratio, aligned)
    # contract rows: (B, N*out_h, H) @ (B, H, C*W) -> (B, N*out_h, C*W)
    rows = torch.bmm(
        weight_y.view(bs, num_boxes * out_h, height),
        feat.transpose(1, 2).reshape(bs, height, channels * width))
    # contract columns: (B*N, out_h*C, W) @ (B*N, W, out_w)
    out = torch.bmm(
        rows.view(bs * num_boxes, out_h * channels, width),
        weight_x.transpose(1, 2))
    return out.view(bs, num_boxes, out_h, channels,
                    out_w).permute(0, 1, 3, 2, 4)


def batched_roi_align(feat: Tensor,
                      boxes: Tensor,
                      output_size: Tuple[int, int] = (7, 7),
                      spatial_scale: float = 1.0,
                      sampling_ratio: int = 0,
                      aligned: bool = True,
                      impl: str = 'auto') -> Tensor:
    """RoIAlign of ``N`` boxes per image, one call for the whole batch.

    Args:
        feat (Tensor): (B, C, H, W).
        boxes (Tensor): (B, N, 4) xyxy in input pixels.
        impl (str): ``'mmcv'`` (mmcv's op), ``'separable'`` (the exact
            matrix form above) or ``'auto'``: mmcv on CUDA, separable on CPU.

    Returns:
        Tensor: (B * N, C, out_h, out_w), batch-major.
    """
    if impl not in ('auto', 'mmcv', 'separable'):
        raise ValueError(f"roi_align impl must be 'auto', 'mmcv' or "
                         f"'separable', got {impl!r}")
    if impl == 'auto':
        impl = 'separable' if feat.device.type == 'cpu' else 'mmcv'
    bs, num_boxes = boxes.shape[:2]
    if impl == 'separable':
        out = separable_roi_align(feat, boxes, output_size, spatial_scale,
                                  sampling_ratio, aligned)
        return out.reshape(bs * num_boxes, *out.shape[2:])
    from mmcv.ops import roi_align
    batch_idx = torch.arange(
        bs, device=boxes.device,
        dtype=boxes.dtype).repeat_interleave(num_boxes)[:, None]
    rois = torch.cat([batch_idx, boxes.detach().reshape(-1, 4)], dim=1)
    return roi_align(feat, rois.to(feat.dtype), output_size, spatial_scale,
                     sampling_ratio, 'avg', aligned)
