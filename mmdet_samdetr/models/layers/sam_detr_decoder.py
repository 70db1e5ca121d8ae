# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR decoder with per-layer reference-box refinement."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import DetrTransformerDecoder, coordinate_to_encoding
from mmdet.registry import MODELS
from mmengine.model import ModuleList
from torch import Tensor, nn

from .sam_detr_decoder_layer import SAMDETRTransformerDecoderLayer


def valid_sizes_from_mask(key_padding_mask: Optional[Tensor],
                          spatial_shape: Tuple[int, int],
                          batch_size: int,
                          device: torch.device = None) -> Tensor:
    """(W_valid, H_valid) of each image in feature pixels, (bs, 2).

    Counts the unpadded cells of row 0 and column 0, as the official code
    does. ``key_padding_mask`` is (bs, H*W) with True on padding, or None
    when no image of the batch is padded.
    """
    height, width = spatial_shape
    if key_padding_mask is None:
        return torch.tensor([[width, height]], dtype=torch.float32,
                            device=device).expand(batch_size, 2)
    valid = ~key_padding_mask.view(-1, height, width)
    return torch.stack([valid[:, 0, :].sum(1), valid[:, :, 0].sum(1)],
                       dim=-1).float()


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
                reference_unsigmoid: Tensor,
                spatial_shapes: List[Tuple[int, int]],
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
            reference_unsigmoid (Tensor): Initial boxes before sigmoid,
                (bs, nq, 4).
            spatial_shapes (list[tuple[int, int]]): (H_l, W_l) per level.
            reg_branches (nn.ModuleList): The head's per-layer regression
                branches, used to refine the boxes.
            key_padding_mask (Tensor, optional): (bs, sum H_l*W_l), True on
                padding.
            self_attn_mask (Tensor, optional): (nq, nq) bool.

        Returns:
            tuple[Tensor]: hidden states (L, bs, nq, d); the reference boxes
            each layer read (L, bs, nq, 4); salient points of each layer
            (L, bs, nq, M, 2), normalized (x, y).
        """
        bs = query.size(0)
        starts = [0]
        for height, width in spatial_shapes:
            starts.append(starts[-1] + height * width)
        levels = {}

        def level_inputs(level: int):
            if level not in levels:
                height, width = spatial_shapes[level]
                sl = slice(starts[level], starts[level + 1])
                mem = memory[:, sl]
                mask = None if key_padding_mask is None else \
                    key_padding_mask[:, sl]
                levels[level] = dict(
                    memory=mem,
                    memory_2d=mem.transpose(1, 2).reshape(
                        bs, -1, height, width),
                    memory_pos=memory_pos[:, sl],
                    key_padding_mask=mask,
                    valid_sizes=valid_sizes_from_mask(
                        mask, (height, width), bs, memory.device))
            return levels[level]

        unsigmoid = reference_unsigmoid
        intermediate, references, points = [], [], []
        for layer_id, layer in enumerate(self.layers):
            level = -1 if self.layer_levels is None else \
                self.layer_levels[layer_id]
            level = level % len(spatial_shapes)
            ref_boxes = unsigmoid.sigmoid()
            with torch.no_grad():  # no gradient, as in the official code
                query_pos = coordinate_to_encoding(
                    ref_boxes[..., :2], num_feats=self.embed_dims // 2)
            query, aligned = layer(
                query,
                query_pos=query_pos,
                ref_boxes=ref_boxes,
                self_attn_mask=self_attn_mask,
                **level_inputs(level),
                **kwargs)
            if layer_id < self.num_layers - 1:
                unsigmoid = (unsigmoid +
                             reg_branches[layer_id](query)).detach()
            intermediate.append(query)
            references.append(ref_boxes)
            points.append(aligned['points'])
        return (torch.stack(intermediate), torch.stack(references),
                torch.stack(points))
