# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR decoder with per-layer reference-box refinement."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import DetrTransformerDecoder, coordinate_to_encoding
from mmdet.registry import MODELS
from mmengine.model import ModuleList
from torch import Tensor, nn

from .sam_detr_decoder_layer import SAMDETRTransformerDecoderLayer


@MODELS.register_module()
class SAMDETRTransformerDecoder(DetrTransformerDecoder):
    """Stack of :class:`SAMDETRTransformerDecoderLayer`.

    Reference boxes start from the learnable (unsigmoided) anchors and are
    refined after every layer by the head's regression branch of that layer,
    detached (the official code's iterative refinement). There is no final
    norm (post-norm layers).

    Args:
        layer_levels (Sequence[int], optional): Feature level each layer
            reads (index into ``spatial_shapes``); ``None`` = the last level
            for every layer. SAM-DETR++ uses coarse-to-fine levels.
        post_norm_cfg: Must be None (kept for the parent's signature).
    """

    def __init__(self,
                 *args,
                 layer_levels: Optional[Sequence[int]] = None,
                 post_norm_cfg=None,
                 **kwargs) -> None:
        self.layer_levels = layer_levels
        super().__init__(*args, post_norm_cfg=post_norm_cfg, **kwargs)

    def _init_layers(self) -> None:
        self.layers = ModuleList(
            SAMDETRTransformerDecoderLayer(**self.layer_cfg)
            for _ in range(self.num_layers))
        self.embed_dims = self.layers[0].embed_dims
        if self.post_norm_cfg is not None:
            raise ValueError('SAM-DETR has no final decoder norm; set '
                             'decoder.post_norm_cfg=None')
        self.post_norm = None
        if self.layer_levels is not None and len(
                self.layer_levels) != self.num_layers:
            raise ValueError(
                f'decoder.layer_levels has {len(self.layer_levels)} entries '
                f'for {self.num_layers} layers')

    def forward(self,
                query: Tensor,
                memory: Tensor,
                memory_pos: Tensor,
                reference_points_unact: Tensor,
                spatial_shapes: List[Tuple[int, int]],
                valid_ratios: Tensor,
                reg_branches: nn.ModuleList,
                key_padding_mask: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                **kwargs) -> Tuple[Tensor, Tensor, Tensor]:
        """Run all layers.

        Args:
            query (Tensor): Initial content queries, (bs, nq, d).
            memory (Tensor): Encoder output, levels concatenated,
                (bs, sum H_l*W_l, d).
            memory_pos (Tensor): Key positional encoding, same shape.
            reference_points_unact (Tensor): Initial boxes (cx, cy, w, h)
                before sigmoid, (bs, nq, 4).
            spatial_shapes (list[tuple[int, int]]): (H_l, W_l) of each
                level, integers (the memory is split and reshaped by them).
            valid_ratios (Tensor): Unpadded fraction (w, h) of each level
                per image, (bs, L, 2), as mmdet's
                :meth:`DeformableDETR.get_valid_ratio`.
            reg_branches (nn.ModuleList): The head's per-layer regression
                branches, used to refine the boxes.
            key_padding_mask (Tensor, optional): (bs, sum H_l*W_l), True on
                padding.
            self_attn_mask (Tensor, optional): (nq, nq) bool.

        Returns:
            tuple[Tensor]: hidden states (num_layers, bs, nq, d); the
            reference boxes each layer read, after sigmoid (num_layers, bs,
            nq, 4); salient points of each layer (num_layers, bs, nq, M, 2),
            normalized (x, y).
        """
        bs = query.size(0)
        sizes = [height * width for height, width in spatial_shapes]
        split = dict(memory=memory.split(sizes, 1),
                     memory_pos=memory_pos.split(sizes, 1),
                     key_padding_mask=None if key_padding_mask is None else
                     key_padding_mask.split(sizes, 1))
        levels = {}

        def level_inputs(level: int):
            if level not in levels:
                height, width = spatial_shapes[level]
                mem = split['memory'][level]
                # (W_valid, H_valid) in feature pixels: the ratios are
                # counts of unpadded cells over the size, so rounding
                # recovers the counts exactly
                ratios = valid_ratios[:, level].float()
                valid_sizes = torch.stack(
                    [ratios[:, 0] * width, ratios[:, 1] * height], -1).round()
                levels[level] = dict(
                    memory=mem,
                    memory_2d=mem.transpose(1, 2).reshape(
                        bs, -1, height, width),
                    memory_pos=split['memory_pos'][level],
                    key_padding_mask=None if key_padding_mask is None else
                    split['key_padding_mask'][level],
                    valid_sizes=valid_sizes)
            return levels[level]

        reference_unact = reference_points_unact
        intermediate, references, points = [], [], []
        for layer_id, layer in enumerate(self.layers):
            level = -1 if self.layer_levels is None else \
                self.layer_levels[layer_id]
            level = level % len(spatial_shapes)
            reference_points = reference_unact.sigmoid()
            with torch.no_grad():  # no gradient, as in the official code
                query_pos = coordinate_to_encoding(
                    reference_points[..., :2],
                    num_feats=self.embed_dims // 2)
            query, aligned = layer(
                query,
                query_pos=query_pos,
                reference_points=reference_points,
                self_attn_mask=self_attn_mask,
                **level_inputs(level),
                **kwargs)
            if layer_id < self.num_layers - 1:
                reference_unact = (reference_unact +
                                   reg_branches[layer_id](query)).detach()
            intermediate.append(query)
            references.append(reference_points)
            points.append(aligned['points'])
        return (torch.stack(intermediate), torch.stack(references),
                torch.stack(points))
