# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The Semantics Aligner of SAM-DETR (CVPR 2022, Sec. 3.2)."""
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from mmdet.models.layers import coordinate_to_encoding
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.model import BaseModule
from torch import Tensor, nn

from .roi_align import (coordinate_dtype, mmcv_roi_align, roi_axis_weights,
                        roi_point_sample, separable_roi_align)

SAMPLING_PATHS = ('reference', 'separable', 'direct')


def sampling_path(memory_2d: Tensor, num_points: int, roi_size: int) -> str:
    """How the Semantics Aligner pools and samples this map.

    The one place that chooses between the reference computation and its
    exact faster forms; all give the same values and gradients up to float
    rounding (``tests/test_semantics_aligner.py``):

    - ``'reference'``, the official computation: mmcv's RoIAlign of all
      channels (the memory and the output of the 1x1 conv), then
      ``grid_sample`` at the salient points. Used off the CPU, where it is
      mmcv's CUDA op.
    - ``'separable'``: the same two steps with :func:`separable_roi_align`
      instead of mmcv's op, whose CPU backward runs on one thread. Used on
      the CPU for large maps.
    - ``'direct'``: :func:`separable_roi_align` of the conv's channels only,
      and the point features read straight from the map by
      :func:`roi_point_sample`. Used on the CPU while its ``(nq * M, H * W)``
      weight map is no larger than the ``(nq, C, 7, 7)`` RoI features of the
      other two (``M * H * W <= C * roi_size ** 2``, up to 1,568 cells for
      ``M = 8``, ``C = 256``: the stride-32 level of a COCO-size image), so
      it never needs more memory than they do.

    Args:
        memory_2d (Tensor): The map, (bs, C, H, W).
        num_points (int): Salient points ``M`` per query.
        roi_size (int): RoIAlign output size.

    Returns:
        str: One of :data:`SAMPLING_PATHS`.
    """
    if memory_2d.device.type != 'cpu':
        return 'reference'
    channels, height, width = memory_2d.shape[-3:]
    if num_points * height * width <= channels * roi_size * roi_size:
        return 'direct'
    return 'separable'


@MODELS.register_module()
class SemanticsAligner(BaseModule):
    """Resample decoder queries from the encoded image inside their boxes.

    For each query: RoIAlign the 2-D memory inside its reference box (7x7),
    predict ``num_points`` salient points inside the box from the pooled
    features (``reduce_conv``, a 1x1 conv, then ``point_predictor``, an MLP),
    bilinearly sample the RoI features at those points (one feature per
    cross-attention head), gate them by the previous query
    (``sigmoid(content_gate(query))``), and build the sine embedding of each
    point gated the same way (``position_gate``).

    The official code (``models/transformer_decoder.py`` of
    ZhangGongjie/SAM-DETR) names these modules ``point1``, ``point2``,
    ``attn1`` and ``attn2``; ``tools/convert_official_checkpoint.py`` maps
    them.

    Args:
        embed_dims (int): Query and memory channels ``d``. Defaults to 256.
        num_points (int): Salient points ``M`` per query, one per
            cross-attention head. Defaults to 8.
        roi_size (int): RoIAlign output size. Defaults to 7.
        reduced_dims (int): Channels of the 1x1 conv. Defaults to 64.
        mlp_dims (tuple[int]): Hidden widths of the point MLP. Defaults to
            (256, 512, 512).
        with_smca (bool): Also predict a Gaussian scale ``(s_x, s_y)`` per
            point for SMCA. Defaults to False.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_points: int = 8,
                 roi_size: int = 7,
                 reduced_dims: int = 64,
                 mlp_dims: tuple = (256, 512, 512),
                 with_smca: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_points = num_points
        self.roi_size = roi_size
        self.with_smca = with_smca
        self.reduce_conv = nn.Conv2d(embed_dims, reduced_dims, 1)
        dims = (reduced_dims * roi_size * roi_size, ) + tuple(mlp_dims)
        layers = []
        for in_dims, out_dims in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(in_dims, out_dims), nn.ReLU(inplace=True)]
        out_per_point = 4 if with_smca else 2
        layers.append(nn.Linear(dims[-1], out_per_point * num_points))
        self.point_predictor = nn.Sequential(*layers)
        self.content_gate = nn.Linear(embed_dims, embed_dims * num_points)
        self.position_gate = nn.Linear(embed_dims, embed_dims * num_points)

    def init_weights(self) -> None:
        """Zero bias of the point predictor's last layer.

        The official layer also zeroes its weight, but the official
        ``Transformer._reset_parameters`` later applies xavier to every
        matrix of the transformer, which overrides it; the detector's
        ``init_weights`` does the same, so only the bias is set here.
        """
        super().init_weights()
        nn.init.zeros_(self.point_predictor[-1].bias)

    def forward(self, query: Tensor, memory_2d: Tensor,
                reference_points: Tensor,
                valid_sizes: Tensor) -> Dict[str, Tensor]:
        """Align the queries with the memory.

        Args:
            query (Tensor): Queries after self-attention, (bs, nq, d).
            memory_2d (Tensor): Encoder memory of the level in use,
                (bs, d, H, W), padded.
            reference_points (Tensor): Reference boxes (cx, cy, w, h)
                normalized to the valid (unpadded) region, (bs, nq, 4).
            valid_sizes (Tensor): Valid width and height of each image in
                feature pixels, (bs, 2) as (W_valid, H_valid).

        Returns:
            dict: ``content`` (bs, nq, M, d) gated content queries,
            ``position`` (bs, nq, M, d) gated sine embeddings of the points,
            ``points`` (bs, nq, M, 2) salient points (x, y) normalized like
            ``reference_points``, and, with SMCA, ``scales`` (bs, nq, M, 2).
        """
        bs, num_queries = query.shape[:2]
        boxes = bbox_cxcywh_to_xyxy(reference_points) * valid_sizes.repeat(
            1, 2)[:, None]
        path = sampling_path(memory_2d, self.num_points, self.roi_size)
        if path == 'direct':
            out, sample = self._predict_and_sample_direct(memory_2d, boxes)
        else:
            out, sample = self._predict_and_sample_roi(
                memory_2d, boxes,
                mmcv_roi_align if path == 'reference' else separable_roi_align)
        offsets = out[..., :2 * self.num_points].tanh().view(
            bs, num_queries, self.num_points, 2)
        content = sample(offsets)
        points = (reference_points[..., None, :2] +
                  0.5 * reference_points[..., None, 2:] * offsets)
        results = dict(
            content=content * self._gate(self.content_gate, query),
            position=self._position_embedding(points) *
            self._gate(self.position_gate, query),
            points=points)
        if self.with_smca:
            results['scales'] = out[..., 2 * self.num_points:].view(
                bs, num_queries, self.num_points, 2)
        return results

    def _reduced_map(self, memory_2d: Tensor) -> Tensor:
        """The 1x1 conv, without bias, on the whole map.

        The conv commutes with RoIAlign (both linear; the bias is added
        after pooling), so it runs once on the ``H x W`` map instead of on
        the ``bs * nq * 49`` RoI cells: exact.
        """
        return F.conv2d(memory_2d, self.reduce_conv.weight)

    def _predict(self, reduced_roi: Tensor, bs: int) -> Tensor:
        """Point MLP on the pooled reduced features (bs * nq, c, 7, 7)."""
        reduced_roi = F.relu(reduced_roi +
                             self.reduce_conv.bias.view(1, -1, 1, 1))
        return self.point_predictor(reduced_roi.flatten(1)).view(
            bs, -1, self.point_predictor[-1].out_features)

    def _predict_and_sample_roi(self, memory_2d: Tensor, boxes: Tensor,
                                roi_align: Callable):
        """Official two steps: RoIAlign of all channels, ``grid_sample``.

        ``roi_align`` is :func:`mmcv_roi_align` or
        :func:`separable_roi_align`.

        Returns:
            tuple: MLP output (bs, nq, 2M or 4M) and a function of the
            offsets (bs, nq, M, 2) giving the point features (bs, nq, M, d).
        """
        bs, num_queries = boxes.shape[:2]
        dims = memory_2d.size(1)
        reduced = self._reduced_map(memory_2d)
        # one RoIAlign pools both; split (not two slices): its backward is
        # one concatenation
        pooled = roi_align(
            torch.cat([memory_2d, reduced], dim=1), boxes,
            (self.roi_size, self.roi_size))
        roi_feats, reduced_roi = pooled.split([dims, reduced.size(1)], dim=1)

        def sample(offsets: Tensor) -> Tensor:
            # with align_corners=False, +-1 are the outer edges of the 7x7
            # grid, i.e. the box edges: every point lies inside its box
            return F.grid_sample(
                roi_feats,
                offsets.view(bs * num_queries, 1, self.num_points, 2),
                mode='bilinear',
                align_corners=False).view(bs, num_queries, dims,
                                          self.num_points).transpose(2, 3)

        return self._predict(reduced_roi, bs), sample

    def _predict_and_sample_direct(self, memory_2d: Tensor, boxes: Tensor):
        """RoIAlign of the reduced channels only; the points are sampled
        from the map by :func:`roi_point_sample`. Same returns as
        :meth:`_predict_and_sample_roi`."""
        roi_size = (self.roi_size, self.roi_size)
        # shared by the RoIAlign of the reduced channels and the point
        # sampling, both over these boxes and this map
        weights = roi_axis_weights(
            boxes.to(coordinate_dtype(memory_2d)), *memory_2d.shape[-2:],
            roi_size, 1.0, 0, True)
        reduced_roi = separable_roi_align(
            self._reduced_map(memory_2d), boxes, roi_size, weights=weights)

        def sample(offsets: Tensor) -> Tensor:
            return roi_point_sample(
                memory_2d, boxes, offsets, roi_size, weights=weights)

        return self._predict(reduced_roi, boxes.size(0)), sample

    def _gate(self, gate: nn.Linear, query: Tensor) -> Tensor:
        """``sigmoid(gate(query))`` per point, (bs, nq, M, d)."""
        bs, num_queries, dims = query.shape
        return gate(query).sigmoid().view(bs, num_queries, self.num_points,
                                          dims)

    def _position_embedding(self, points: Tensor) -> Tensor:
        """Sine embedding of the points, (bs, nq, M, d), without gradient
        (the official ``gen_sineembed_for_position`` runs under
        ``torch.no_grad``)."""
        bs, num_queries, num_points, _ = points.shape
        with torch.no_grad():
            position = coordinate_to_encoding(
                points.reshape(bs, num_queries * num_points, 2),
                num_feats=self.embed_dims // 2)
        return position.view(bs, num_queries, num_points, self.embed_dims)
