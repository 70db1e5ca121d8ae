# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""mmdet's Deformable DETR encoder, also taking level sizes as integers.

``torch.export`` (the ONNX exporter) keeps image sizes symbolic; it cannot
trace a step that reads a size back out of a tensor's values. mmcv 2.1's
:class:`MultiScaleDeformableAttention` asserts on the values of the
``spatial_shapes`` tensor and its PyTorch path splits the value by sizes
read from it, and mmdet 3.3's encoder builds its reference points with
``torch.linspace``, whose exported length stays the traced one. The
classes here work around both: with ``spatial_shapes`` given as a list of
``(H, W)`` integer pairs they compute the same numbers without reading a
tensor; with mmdet's ``(L, 2)`` tensor (training, evaluation) mmcv's
forward runs unchanged. Parameter names and initialization are mmdet's.
"""
from typing import List, Tuple, Union

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch
from mmdet.models.layers import (DeformableDetrTransformerEncoder,
                                 DeformableDetrTransformerEncoderLayer)
from mmdet.models.layers.transformer import deformable_detr_layers
from mmdet.registry import MODELS
from mmengine.model import ModuleList
from torch import Tensor

LevelSizes = Union[Tensor, List[Tuple[int, int]]]


@MODELS.register_module()
class TraceableMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's :class:`MultiScaleDeformableAttention`; ``spatial_shapes``
    may also be a list of ``(H, W)`` integers.

    With integer sizes (``torch.export``) it computes mmcv's forward for
    batch-first queries and 2-d reference points, without mmcv's assert on
    the tensor's values, on the PyTorch sampling path
    (``multi_scale_deformable_attn_pytorch``).
    """

    def forward(self,
                query: Tensor,
                key: Tensor = None,
                value: Tensor = None,
                identity: Tensor = None,
                query_pos: Tensor = None,
                key_padding_mask: Tensor = None,
                reference_points: Tensor = None,
                spatial_shapes: LevelSizes = None,
                level_start_index: Tensor = None,
                **kwargs) -> Tensor:
        if isinstance(spatial_shapes, Tensor):  # mmcv's forward, unchanged
            return super().forward(query, key, value, identity, query_pos,
                                   key_padding_mask, reference_points,
                                   spatial_shapes, level_start_index,
                                   **kwargs)
        if not self.batch_first or reference_points.shape[-1] != 2:
            raise NotImplementedError(
                'integer spatial_shapes need batch_first=True and 2-d '
                'reference points (the Deformable DETR encoder)')
        value = query if value is None else value
        identity = query if identity is None else identity
        if query_pos is not None:
            query = query + query_pos
        bs, num_query, _ = query.shape
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, value.size(1), self.num_heads, -1)
        sampling_offsets = self.sampling_offsets(query).view(
            bs, num_query, self.num_heads, self.num_levels, self.num_points, 2)
        attention_weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads,
            self.num_levels * self.num_points).softmax(-1).view(
                bs, num_query, self.num_heads, self.num_levels,
                self.num_points)
        # (W, H) of each level, built by multiplication so that traced
        # sizes stay symbolic
        one = query.new_ones(())
        offset_normalizer = torch.stack([
            torch.stack([one * width, one * height])
            for height, width in spatial_shapes
        ])
        sampling_locations = reference_points[:, :, None, :, None, :] + \
            sampling_offsets / offset_normalizer[None, None, None, :, None, :]
        output = multi_scale_deformable_attn_pytorch(value, spatial_shapes,
                                                     sampling_locations,
                                                     attention_weights)
        return self.dropout(self.output_proj(output)) + identity


class TraceableDeformableDetrTransformerEncoderLayer(
        DeformableDetrTransformerEncoderLayer):
    """mmdet's encoder layer with
    :class:`TraceableMultiScaleDeformableAttention`."""

    def _init_layers(self) -> None:
        self.self_attn = TraceableMultiScaleDeformableAttention(
            **self.self_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = ModuleList(
            build_norm_layer(self.norm_cfg, self.embed_dims)[1]
            for _ in range(2))


@MODELS.register_module()
class TraceableDeformableDetrTransformerEncoder(
        DeformableDetrTransformerEncoder):
    """mmdet's :class:`DeformableDetrTransformerEncoder`; ``spatial_shapes``
    may also be a list of ``(H, W)`` integers (see the module docstring).
    Layers, parameters and their initialization are mmdet's."""

    def _init_layers(self) -> None:
        self.layers = ModuleList(
            TraceableDeformableDetrTransformerEncoderLayer(**self.layer_cfg)
            for _ in range(self.num_layers))
        if self.num_cp > 0:
            checkpoint_wrapper = deformable_detr_layers.checkpoint_wrapper
            if checkpoint_wrapper is None:
                raise NotImplementedError(
                    'num_cp > 0 (activation checkpointing) needs fairscale')
            for i in range(self.num_cp):
                self.layers[i] = checkpoint_wrapper(self.layers[i])
        self.embed_dims = self.layers[0].embed_dims

    @staticmethod
    def get_encoder_reference_points(spatial_shapes: LevelSizes,
                                     valid_ratios: Tensor,
                                     device: Union[torch.device, str]
                                     ) -> Tensor:
        """mmdet's reference points (cell centres over the valid region),
        (bs, sum H*W, L, 2), with ``arange(H) + 0.5`` in place of
        ``linspace(0.5, H - 0.5, H)``: the same float32 values (the step is
        exactly 1), and a length that stays symbolic when exported."""
        reference_points_list = []
        for lvl, (height, width) in enumerate(spatial_shapes):
            ref_y, ref_x = torch.meshgrid(
                torch.arange(height, dtype=torch.float32, device=device) +
                0.5,
                torch.arange(width, dtype=torch.float32, device=device) +
                0.5,
                indexing='ij')
            ref_y = ref_y.reshape(-1)[None] / (
                valid_ratios[:, None, lvl, 1] * height)
            ref_x = ref_x.reshape(-1)[None] / (
                valid_ratios[:, None, lvl, 0] * width)
            reference_points_list.append(torch.stack((ref_x, ref_y), -1))
        reference_points = torch.cat(reference_points_list, 1)
        return reference_points[:, :, None] * valid_ratios[:, None]
