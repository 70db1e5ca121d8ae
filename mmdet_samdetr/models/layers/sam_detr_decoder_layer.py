# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""One SAM-DETR decoder layer (official ``TransformerDecoderLayer``)."""
from typing import Dict, Optional, Tuple

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN
from mmdet.models.layers import DetrTransformerDecoderLayer
from mmdet.models.layers.transformer.utils import ConditionalAttention
from mmdet.registry import MODELS
from torch import Tensor, nn

from .salient_point_attention import SalientPointCrossAttention
from .semantics_aligner import SemanticsAligner


def smca_gaussian_bias(points: Tensor, scales: Tensor, valid_sizes: Tensor,
                       spatial_shape: Tuple[int, int]) -> Tensor:
    """SMCA logit bias centred on the salient points.

    As the official ``--smca`` decoder (``models/transformer_decoder.py`` of
    ZhangGongjie/SAM-DETR), the constant 8 copied there from SMCA-DETR:

    ``G = -(s_x^2 (g_x - x_j - 0.5)^2 + s_y^2 (g_y - y_j - 0.5)^2) / 8`` with
    ``g`` the point in feature pixels of the valid region and ``(x_j, y_j)``
    the integer cell indices of the padded map. Computed separably along x
    and y.

    Args:
        points (Tensor): Salient points (x, y) normalized to the valid
            region, (bs, nq, M, 2).
        scales (Tensor): Predicted scales (s_x, s_y), (bs, nq, M, 2).
        valid_sizes (Tensor): (W_valid, H_valid) per image, (bs, 2).
        spatial_shape (tuple[int, int]): Padded ``(H, W)``.

    Returns:
        Tensor: Bias of shape (bs, M, nq, H * W).
    """
    height, width = spatial_shape
    centres = (points * valid_sizes[:, None, None]).transpose(1, 2)
    sq_scales = scales.transpose(1, 2).square()  # (bs, M, nq, 2)
    xs = torch.arange(width, dtype=points.dtype, device=points.device) + 0.5
    ys = torch.arange(height, dtype=points.dtype, device=points.device) + 0.5
    dist_x = sq_scales[..., :1] * (centres[..., :1] - xs).square()
    dist_y = sq_scales[..., 1:] * (centres[..., 1:] - ys).square()
    return -(dist_y[..., :, None] + dist_x[..., None, :]).flatten(-2) / 8.0


@MODELS.register_module()
class SAMDETRTransformerDecoderLayer(DetrTransformerDecoderLayer):
    """Decoder layer of SAM-DETR, post-norm.

    self-attention (content and position projections added, as in
    Conditional DETR) -> norm1 -> Semantics Aligner -> salient-point
    cross-attention (+ SMCA bias) -> norm2 -> FFN -> norm3.

    Args:
        self_attn_cfg (dict): :class:`ConditionalAttention` kwargs.
        cross_attn_cfg (dict): :class:`SalientPointCrossAttention` kwargs.
        aligner_cfg (dict): :class:`SemanticsAligner` kwargs (``embed_dims``
            and ``with_smca`` are filled in).
        ffn_cfg (dict): mmcv ``FFN`` kwargs.
        norm_cfg (dict): Norm config. Defaults to LN.
        dropout (float): Dropout on the cross-attention residual branch.
        with_smca (bool): Add the SMCA Gaussian bias. Defaults to False.
    """

    def __init__(self,
                 *args,
                 aligner_cfg: Optional[dict] = None,
                 dropout: float = 0.1,
                 with_smca: bool = False,
                 **kwargs) -> None:
        self.aligner_cfg = dict(aligner_cfg or {})
        self.dropout = dropout
        self.with_smca = with_smca
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        self_attn_cfg = dict(self.self_attn_cfg)
        self_attn_cfg.pop('cross_attn', None)
        self.self_attn = ConditionalAttention(**self_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        cross_attn_cfg = dict(self.cross_attn_cfg)
        cross_attn_cfg.pop('batch_first', None)
        self.cross_attn = SalientPointCrossAttention(**cross_attn_cfg)
        aligner_cfg = dict(self.aligner_cfg)
        aligner_cfg.setdefault('embed_dims', self.embed_dims)
        aligner_cfg.setdefault('num_points', self.cross_attn.num_heads)
        aligner_cfg['with_smca'] = self.with_smca
        if aligner_cfg['num_points'] != self.cross_attn.num_heads:
            raise ValueError(
                'aligner_cfg.num_points must equal cross_attn_cfg.num_heads '
                '(one salient point per head), got '
                f'{aligner_cfg["num_points"]} and {self.cross_attn.num_heads}')
        self.semantics_aligner = SemanticsAligner(**aligner_cfg)
        self.cross_attn_drop = nn.Dropout(self.dropout)
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = nn.ModuleList(
            build_norm_layer(self.norm_cfg, self.embed_dims)[1]
            for _ in range(3))

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                memory: Tensor,
                memory_2d: Tensor,
                memory_pos: Tensor,
                reference_points: Tensor,
                valid_sizes: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                **kwargs) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Forward one layer.

        Args:
            query (Tensor): (bs, nq, d).
            query_pos (Tensor): Sine embedding of the reference centres,
                (bs, nq, d).
            memory (Tensor): Memory of the level in use, (bs, H*W, d).
            memory_2d (Tensor): The same as a map, (bs, d, H, W).
            memory_pos (Tensor): Key positional encoding, (bs, H*W, d).
            reference_points (Tensor): Reference boxes (cx, cy, w, h),
                normalized to the valid region, (bs, nq, 4).
            valid_sizes (Tensor): (W_valid, H_valid) in feature pixels,
                (bs, 2).
            key_padding_mask (Tensor, optional): True on padding, (bs, H*W).
            self_attn_mask (Tensor, optional): Bool mask (nq, nq), True where
                attention is forbidden (denoising groups).

        Returns:
            tuple: The new query (bs, nq, d) and the aligner outputs
            (``points`` etc., see :class:`SemanticsAligner`).
        """
        query = self.self_attn(
            query=query,
            key=query,
            query_pos=query_pos,
            key_pos=query_pos,
            attn_mask=self_attn_mask)
        query = self.norms[0](query)
        aligned = self.semantics_aligner(query, memory_2d, reference_points,
                                         valid_sizes)
        attn_bias = None
        if self.with_smca:
            attn_bias = smca_gaussian_bias(aligned['points'],
                                           aligned['scales'], valid_sizes,
                                           memory_2d.shape[-2:])
        out = self.cross_attn(
            aligned['content'],
            aligned['position'],
            memory,
            memory_pos,
            key_padding_mask=key_padding_mask,
            attn_bias=attn_bias)
        query = self.norms[1](query + self.cross_attn_drop(out))
        query = self.norms[2](self.ffn(query))
        return query, aligned
