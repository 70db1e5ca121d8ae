# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The Semantics Aligner of SAM-DETR (CVPR 2022, Sec. 3.2)."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmdet.models.layers import coordinate_to_encoding
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.model import BaseModule
from torch import Tensor, nn

from .roi_align import (batched_roi_align, roi_axis_weights,
                        roi_point_sample)


@MODELS.register_module()
class SemanticsAligner(BaseModule):
    """Resample decoder queries from the encoded image inside their boxes.

    For each query: RoIAlign the 2-D memory inside its reference box (7x7),
    predict ``num_points`` salient points inside the box with a 1x1 ConvNet
    and an MLP, bilinearly sample the RoI features at those points (one
    feature per cross-attention head), gate them by the previous query
    (``sigmoid(content_gate(query))``), and build the sine embedding of each
    point gated the same way (``position_gate``).

    Module names follow the official code (``point1``, ``point2``, ``attn1``
    and ``attn2`` there).

    Args:
        embed_dims (int): Query and memory channels ``d``. Defaults to 256.
        num_points (int): Salient points ``M`` per query, one per
            cross-attention head. Defaults to 8.
        roi_size (int): RoIAlign output size. Defaults to 7.
        reduced_dims (int): Channels of the 1x1 ConvNet. Defaults to 64.
        mlp_dims (tuple[int]): Hidden widths of the point MLP. Defaults to
            (256, 512, 512).
        with_smca (bool): Also predict a Gaussian scale ``(s_x, s_y)`` per
            point for SMCA. Defaults to False.
        roi_align_impl (str): See :func:`batched_roi_align`.
        point_sampling (str): How the point features are read.
            ``'direct'`` (default): :func:`roi_point_sample`, the exact
            closed form of sampling the RoIAlign features at the points,
            straight from the map; RoIAlign then pools only the ConvNet's
            ``reduced_dims`` channels. ``'roi'``: the official two steps,
            RoIAlign of all ``embed_dims`` channels, then ``grid_sample``.
            Both give the same values and gradients up to float rounding.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_points: int = 8,
                 roi_size: int = 7,
                 reduced_dims: int = 64,
                 mlp_dims: tuple = (256, 512, 512),
                 with_smca: bool = False,
                 roi_align_impl: str = 'auto',
                 point_sampling: str = 'direct',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_points = num_points
        self.roi_size = roi_size
        self.with_smca = with_smca
        self.roi_align_impl = roi_align_impl
        if point_sampling not in ('direct', 'roi'):
            raise ValueError("point_sampling must be 'direct' or 'roi', got "
                             f'{point_sampling!r}')
        self.point_sampling = point_sampling
        self.point1 = nn.Sequential(
            nn.Conv2d(embed_dims, reduced_dims, 1), nn.ReLU(inplace=True))
        dims = (reduced_dims * roi_size * roi_size, ) + tuple(mlp_dims)
        layers = []
        for in_dims, out_dims in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(in_dims, out_dims), nn.ReLU(inplace=True)]
        out_per_point = 4 if with_smca else 2
        layers.append(nn.Linear(dims[-1], out_per_point * num_points))
        self.point2 = nn.Sequential(*layers)
        self.attn1 = nn.Linear(embed_dims, embed_dims * num_points)
        self.attn2 = nn.Linear(embed_dims, embed_dims * num_points)

    def init_weights(self) -> None:
        """Zero bias of the point predictor's last layer.

        The official layer also zeroes its weight, but the transformer's
        later xavier pass overrides that (spec §0, trap 1); the detector's
        ``init_weights`` applies xavier to every matrix of the decoder, so
        only the bias is set here.
        """
        super().init_weights()
        nn.init.zeros_(self.point2[-1].bias)

    def forward(self, query: Tensor, memory_2d: Tensor, ref_boxes: Tensor,
                valid_sizes: Tensor) -> Dict[str, Tensor]:
        """Align the queries with the memory.

        Args:
            query (Tensor): Queries after self-attention, (bs, nq, d).
            memory_2d (Tensor): Encoder memory of the level in use,
                (bs, d, H, W), padded.
            ref_boxes (Tensor): Reference boxes (cx, cy, w, h) normalized to
                the valid (unpadded) region, (bs, nq, 4).
            valid_sizes (Tensor): Valid width and height of each image in
                feature pixels, (bs, 2) as (W_valid, H_valid).

        Returns:
            dict: ``content`` (bs, nq, M, d) gated content queries,
            ``position`` (bs, nq, M, d) gated sine embeddings of the points,
            ``points`` (bs, nq, M, 2) salient points (x, y) normalized like
            ``ref_boxes``, and, with SMCA, ``scales`` (bs, nq, M, 2).
        """
        bs, num_queries, dims = query.shape
        num_points = self.num_points
        scale = valid_sizes.repeat(1, 2)[:, None]  # (bs, 1, 4)
        boxes = bbox_cxcywh_to_xyxy(ref_boxes) * scale
        # point1's 1x1 conv commutes with RoIAlign (both linear; the bias is
        # added after pooling), so it runs once on the map instead of on
        # bs*nq*49 RoI cells: exact, and its cost drops from bs*nq*49 to H*W
        # positions.
        conv = self.point1[0]
        reduced = F.conv2d(memory_2d, conv.weight)
        roi_size = (self.roi_size, self.roi_size)
        if self.point_sampling == 'roi':
            # one RoIAlign pools both; split (not two slices): its backward
            # is one concatenation
            pooled = batched_roi_align(
                torch.cat([memory_2d, reduced], dim=1),
                boxes, roi_size, impl=self.roi_align_impl)
            roi_feats, reduced = pooled.split([dims, reduced.size(1)], dim=1)
        else:
            # shared by the RoIAlign of the reduced channels and the point
            # sampling, both over these boxes and this map
            weights = roi_axis_weights(boxes.to(memory_2d.dtype),
                                       *memory_2d.shape[-2:], roi_size, 1.0,
                                       0, True)
            reduced = batched_roi_align(
                reduced,
                boxes,
                roi_size,
                impl=self.roi_align_impl,
                weights=weights)
        reduced = self.point1[1](reduced + conv.bias.view(1, -1, 1, 1))
        out = self.point2(reduced.flatten(1))
        # (x, y) in [-1, 1] on the RoI grid; with align_corners=False +-1 are
        # the outer edges of the 7x7 grid, i.e. the box edges, so every
        # point lies inside its box.
        offsets = out[:, :2 * num_points].tanh().view(bs, num_queries,
                                                      num_points, 2)
        if self.point_sampling == 'roi':
            content = F.grid_sample(
                roi_feats,
                offsets.view(bs * num_queries, 1, num_points, 2),
                mode='bilinear',
                align_corners=False).view(bs, num_queries, dims,
                                          num_points).transpose(2, 3)
        else:
            content = roi_point_sample(
                memory_2d, boxes, offsets, roi_size, weights=weights)
        content = content * self.attn1(query).sigmoid().view(
            bs, num_queries, num_points, dims)

        points = ref_boxes[..., None, :2] + 0.5 * ref_boxes[..., None,
                                                            2:] * offsets
        with torch.no_grad():  # the official sine embedding has no gradient
            position = coordinate_to_encoding(
                points.view(bs, num_queries * num_points, 2),
                num_feats=dims // 2)
        position = position.view(bs, num_queries, num_points, dims)
        position = position * self.attn2(query).sigmoid().view(
            bs, num_queries, num_points, dims)
        results = dict(content=content, position=position, points=points)
        if self.with_smca:
            results['scales'] = out[:, 2 * num_points:].view(
                bs, num_queries, num_points, 2)
        return results
