# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""RoIAlign of a feature map and sampling of RoIAlign features at points.

:func:`mmcv_roi_align` is the reference: mmcv's ``RoIAlign`` op, as the
official SAM-DETR code uses torchvision's. Two exact reformulations make the
CPU computation faster (the Semantics Aligner chooses between them, see
:func:`~mmdet_samdetr.models.layers.semantics_aligner.sampling_path`):

- :func:`separable_roi_align`: bilinear interpolation is separable and the
  adaptive sampling grid of a RoIAlign bin is a Cartesian product of row
  samples and column samples, so the pooled value of bin ``(p, q)`` of box
  ``k`` is

      out[k, c, p, q] = sum_{i, j} Ay[k, p, i] * F[b_k, c, i, j] * Ax[k, q, j]

  where ``Ay`` (``Ax``) averages the row (column) interpolation weights of
  the bin's samples. ``Ay``/``Ax`` are tiny and built without gradient
  (RoIAlign gives no gradient to the boxes, as in mmcv and torchvision); the
  two contractions are batched matrix products that autograd differentiates
  with respect to the features (mmcv's CPU backward is single-threaded).
- :func:`roi_point_sample`: sampling RoIAlign features bilinearly at a few
  points (``grid_sample``) is itself a separable weighting of the map, so it
  is computed from the map directly.

Both equal the reference (same sampling positions, same border rules) up to
float rounding; see ``tests/test_roi_align.py``.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


def coordinate_dtype(feat: Tensor) -> torch.dtype:
    """dtype of box coordinates and interpolation weights for ``feat``:
    its own, at least float32. float16 / bfloat16 corners in map pixels are
    off by up to 1/64 / 1/8 pixel on a 64-pixel-wide map."""
    return torch.promote_types(feat.dtype, torch.float32)


def mmcv_roi_align(feat: Tensor,
                   boxes: Tensor,
                   output_size: Tuple[int, int] = (7, 7),
                   spatial_scale: float = 1.0,
                   sampling_ratio: int = 0,
                   aligned: bool = True) -> Tensor:
    """mmcv's ``roi_align`` (average pooling) of ``N`` boxes per image.

    The reference RoIAlign: one op call for the whole batch.

    Args:
        feat (Tensor): (B, C, H, W).
        boxes (Tensor): (B, N, 4) xyxy in input pixels; no gradient flows to
            them.
        output_size, spatial_scale, sampling_ratio, aligned: As mmcv's
            ``RoIAlign`` (``pool_mode='avg'``).

    Returns:
        Tensor: (B * N, C, out_h, out_w), batch-major.
    """
    from mmcv.ops import roi_align
    bs, num_boxes = boxes.shape[:2]
    batch_idx = torch.arange(
        bs, device=boxes.device,
        dtype=boxes.dtype).repeat_interleave(num_boxes)[:, None]
    rois = torch.cat([batch_idx, boxes.detach().reshape(-1, 4)], dim=1)
    # mmcv's kernels have no bfloat16: such maps are pooled in float32
    dtype = torch.float32 if feat.dtype == torch.bfloat16 else feat.dtype
    # mmcv's CPU kernel reads the map as if it were contiguous: a strided
    # view (e.g. a transposed memory) gives wrong numbers without an error
    return roi_align(feat.contiguous().to(dtype), rois.to(dtype),
                     tuple(output_size), spatial_scale, sampling_ratio, 'avg',
                     aligned).to(feat.dtype)


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
        # mmcv takes ceilf, the float32 ceiling, also of a float64 size:
        # 1 + 2**-24 is one sample there, two in float64
        grid = torch.ceil((roi_len / out_size).float()).to(roi_len.dtype)
    grid = grid.clamp(min=0)
    # an integer read of the largest grid (no float-to-int guard), so that
    # torch.export keeps it data-dependent instead of failing on it
    num_grid = grid.max().clamp(min=1).long().item() if grid.numel() else 1

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


def roi_axis_weights(boxes: Tensor, height: int, width: int,
                     output_size: Tuple[int, int], spatial_scale: float,
                     sampling_ratio: int,
                     aligned: bool) -> Tuple[Tensor, Tensor]:
    """Row and column weights of RoIAlign, without gradient.

    Args:
        boxes (Tensor): ``(x1, y1, x2, y2)`` in input pixels, (B, N, 4).
        height (int), width (int): Feature map size.
        output_size (tuple[int, int]): ``(out_h, out_w)``.

    Returns:
        tuple[Tensor]: ``weight_y`` (B * N, out_h, height) and ``weight_x``
        (B * N, out_w, width).
    """
    out_h, out_w = output_size
    with torch.no_grad():
        flat = boxes.detach().reshape(-1, 4)
        weight_y = _axis_weights(flat[:, 1], flat[:, 3], height, out_h,
                                 spatial_scale, sampling_ratio, aligned)
        weight_x = _axis_weights(flat[:, 0], flat[:, 2], width, out_w,
                                 spatial_scale, sampling_ratio, aligned)
    return weight_y, weight_x


def separable_roi_align(feat: Tensor,
                        boxes: Tensor,
                        output_size: Tuple[int, int] = (7, 7),
                        spatial_scale: float = 1.0,
                        sampling_ratio: int = 0,
                        aligned: bool = True,
                        weights: Optional[Tuple[Tensor, Tensor]] = None
                        ) -> Tensor:
    """RoIAlign (average pooling) as two batched matrix products.

    Equal to :func:`mmcv_roi_align` with the same arguments.

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
        weights (tuple[Tensor], optional): :func:`roi_axis_weights` of these
            boxes and map, when the caller already has them.

    Returns:
        Tensor: Pooled features, shape (B * N, C, out_h, out_w), batch-major
        and contiguous, as mmcv's op.
    """
    bs, num_boxes = boxes.shape[:2]
    out = _separable_roi_align(feat, boxes, tuple(output_size),
                               spatial_scale, sampling_ratio, aligned,
                               weights)
    # contiguous, like mmcv's output: element-wise ops and their backward on
    # the permuted layout are several times slower
    return out.reshape(bs * num_boxes, *out.shape[2:]).contiguous()


def _separable_roi_align(feat: Tensor, boxes: Tensor,
                         output_size: Tuple[int, int], spatial_scale: float,
                         sampling_ratio: int, aligned: bool,
                         weights: Optional[Tuple[Tensor, Tensor]]) -> Tensor:
    """:func:`separable_roi_align` as a (B, N, C, out_h, out_w) view."""
    bs, channels, height, width = feat.shape
    if width > height:
        # The first product keeps one spatial axis (N*out*C*kept values);
        # keep the shorter one by working on the transposed map.
        out = _separable_roi_align(
            feat.transpose(2, 3), boxes[..., [1, 0, 3, 2]], output_size[::-1],
            spatial_scale, sampling_ratio, aligned,
            None if weights is None else weights[::-1])
        return out.transpose(3, 4)
    num_boxes = boxes.size(1)
    out_h, out_w = output_size
    weight_y, weight_x = weights or roi_axis_weights(
        boxes.to(coordinate_dtype(feat)), height, width, output_size,
        spatial_scale, sampling_ratio, aligned)
    weight_y, weight_x = weight_y.to(feat.dtype), weight_x.to(feat.dtype)
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


def _bilinear_taps(coord: Tensor, size: int) -> Tensor:
    """Weights of ``grid_sample``'s bilinear taps along one axis.

    ``coord`` is in ``[-1, 1]`` with ``align_corners=False`` (-1 and 1 are the
    outer edges of cells 0 and ``size - 1``). Taps outside the grid get no
    weight (zero padding). Written as ``grid_sample`` computes it (floor and
    fraction), so the gradient with respect to ``coord`` is the same
    everywhere, integer positions included.

    Returns:
        Tensor: ``coord.shape + (size, )``.
    """
    pix = ((coord + 1) * size - 1) / 2
    low = pix.detach().floor()
    frac = (pix - low)[..., None]
    cells = torch.arange(size, dtype=pix.dtype, device=pix.device)
    low = low[..., None]
    zero = frac.new_zeros(())
    return (torch.where(cells == low, 1 - frac, zero) +
            torch.where(cells == low + 1, frac, zero))


def roi_point_sample(feat: Tensor,
                     boxes: Tensor,
                     points: Tensor,
                     output_size: Tuple[int, int] = (7, 7),
                     spatial_scale: float = 1.0,
                     sampling_ratio: int = 0,
                     aligned: bool = True,
                     weights: Optional[Tuple[Tensor, Tensor]] = None
                     ) -> Tensor:
    """``grid_sample`` of RoIAlign features, without the RoI features.

    Computes ``grid_sample(roi_align(feat, boxes), points, 'bilinear',
    align_corners=False)`` (zero padding) for ``M`` points per box. Both
    steps are linear and separable, so each point is one weight map over the
    feature map, ``outer(ty @ Ay, tx @ Ax)`` with ``ty``/``tx`` the bilinear
    taps on the RoI grid and ``Ay``/``Ax`` RoIAlign's row/column weights, and
    the result is one batched matrix product with the map: no ``C x 7 x 7``
    RoI tensor per box, and every channel comes out in the query layout.
    Gradients reach ``feat`` and ``points`` as through the two-step form;
    ``boxes`` get none (as from RoIAlign).

    Args:
        feat (Tensor): Feature map, (B, C, H, W).
        boxes (Tensor): ``(x1, y1, x2, y2)`` in input pixels, (B, N, 4).
        points (Tensor): ``(x, y)`` in ``[-1, 1]`` on each box's RoI grid,
            (B, N, M, 2).
        output_size, spatial_scale, sampling_ratio, aligned: As RoIAlign.
        weights (tuple[Tensor], optional): :func:`roi_axis_weights` of these
            boxes and map, when the caller already has them.

    Returns:
        Tensor: Sampled features, (B, N, M, C).
    """
    bs, channels, height, width = feat.shape
    num_boxes, num_points = points.shape[1:3]
    # positions (boxes, points, taps) at least in float32
    dtype = coordinate_dtype(feat)
    weight_y, weight_x = weights or roi_axis_weights(
        boxes.to(dtype), height, width, output_size, spatial_scale,
        sampling_ratio, aligned)
    points = points.reshape(bs * num_boxes, num_points, 2).to(dtype)
    rows = torch.bmm(_bilinear_taps(points[..., 1], output_size[0]),
                     weight_y.to(dtype))  # (B*N, M, H)
    cols = torch.bmm(_bilinear_taps(points[..., 0], output_size[1]),
                     weight_x.to(dtype))  # (B*N, M, W)
    point_maps = (rows[..., :, None] * cols[..., None, :]).view(
        bs, num_boxes * num_points, height * width).to(feat.dtype)
    out = torch.bmm(point_maps, feat.flatten(2).transpose(1, 2))
    return out.view(bs, num_boxes, num_points, channels)
