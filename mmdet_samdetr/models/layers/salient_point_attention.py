# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Cross-attention of SAM-DETR: one salient-point query per head."""
from typing import Optional

import torch
from mmcv.cnn import Linear
from mmdet.models.layers import MLP
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn


@MODELS.register_module()
class SalientPointCrossAttention(BaseModule):
    """Multi-head cross-attention whose heads each query with one point.

    Head ``h`` attends with the ``d``-dimensional query built from salient
    point ``h`` (content + position), against a ``d``-dimensional key that is
    the same for every head (it is never copied per head: the logits of all
    heads come from one batched product). Values are split as usual into
    ``num_heads`` chunks of ``d / num_heads``. The logit scale is
    ``d ** -0.5``. This is the official ``MultiheadAttention(8 * 256, 8,
    vdim=256)`` with the key repeated 8 times, without the repeat.

    Args:
        embed_dims (int): ``d``. Defaults to 256.
        num_heads (int): Heads, equal to the number of salient points.
            Defaults to 8.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.1.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 attn_drop: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.qcontent_proj = Linear(embed_dims, embed_dims)
        self.qpos_sine_proj = MLP(embed_dims, embed_dims, embed_dims, 2)
        self.kcontent_proj = Linear(embed_dims, embed_dims)
        self.kpos_sine_proj = MLP(embed_dims, embed_dims, embed_dims, 2)
        self.v_proj = Linear(embed_dims, embed_dims)
        self.out_proj = Linear(embed_dims, embed_dims)
        self.attn_drop = nn.Dropout(attn_drop)
        # Inspection points (identities, no parameters): forward hooks on
        # them receive the attention probabilities and the SMCA bias
        self.attn_probs = nn.Identity()
        self.smca_bias = nn.Identity()

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.zeros_(self.out_proj.bias)

    def forward(self,
                content: Tensor,
                position: Tensor,
                memory: Tensor,
                memory_pos: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                attn_bias: Optional[Tensor] = None) -> Tensor:
        """Attend from the salient-point queries to the memory.

        Args:
            content (Tensor): Point content queries, (bs, nq, heads, d).
            position (Tensor): Point position queries, (bs, nq, heads, d).
            memory (Tensor): Memory of the level in use, (bs, S, d).
            memory_pos (Tensor): Its positional encoding, (bs, S, d).
            key_padding_mask (Tensor, optional): True on padding, (bs, S).
            attn_bias (Tensor, optional): Added to the logits after the
                padding mask, before the softmax (SMCA),
                (bs, heads, nq, S).

        Returns:
            Tensor: Attention output after ``out_proj``, (bs, nq, d).
        """
        bs, num_queries, num_heads, dims = content.shape
        num_keys = memory.size(1)
        key = self.kcontent_proj(memory) + self.kpos_sine_proj(memory_pos)
        key = key * dims**-0.5
        query = self.qcontent_proj(content) + self.qpos_sine_proj(position)
        query = query.transpose(1, 2).reshape(bs, num_heads * num_queries,
                                              dims)
        logits = torch.bmm(query, key.transpose(1, 2))
        logits = logits.view(bs, num_heads, num_queries, num_keys)
        value = self.v_proj(memory).view(bs, num_keys, num_heads,
                                         dims // num_heads).transpose(1, 2)
        if key_padding_mask is not None:
            logits = logits.masked_fill(key_padding_mask[:, None, None],
                                        float('-inf'))
        if attn_bias is not None:
            logits = logits + self.smca_bias(attn_bias)
        weights = self.attn_drop(self.attn_probs(logits.softmax(dim=-1)))
        out = torch.matmul(weights, value)  # (bs, heads, nq, d / heads)
        return self.out_proj(out.transpose(1, 2).reshape(bs, num_queries,
                                                         dims))
