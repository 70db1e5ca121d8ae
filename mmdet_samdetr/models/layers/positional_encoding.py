# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The sine positional encoding in the official SAM-DETR order of
operations."""
from typing import Optional

import torch
from mmdet.models.layers import SinePositionalEncoding
from mmdet.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class OfficialSinePositionalEncoding(SinePositionalEncoding):
    """mmdet's :class:`SinePositionalEncoding`, normalised as the official
    ``PositionEmbeddingSine`` (``models/position_encoding.py`` of
    ZhangGongjie/SAM-DETR) computes it in float32.

    The official code shifts the count of valid pixels first and divides
    by the shifted last count plus ``eps`` plus 0.5:
    ``c' = cumsum - 0.5``, ``c' / ((c'_last + eps) + 0.5) * scale``; mmdet
    computes ``(cumsum + offset) / (cumsum_last + eps) * scale``. On rows
    and columns with a valid pixel both are equal to the last bit; on a
    row or column that is entirely padding (``cumsum_last = 0``) the
    official divisor is ``((0 - 0.5) + 1e-6) + 0.5 = 1.0133e-6`` in
    float32, mmdet's ``1e-6``, and the sine arguments (about -3.10e6 and
    -3.14e6 rad) give unrelated values. Padded cells reach the model in
    padded batches (SAM-DETR++'s deformable encoder turns them into memory,
    and the Semantics Aligner's RoIAlign reads them for boxes past an
    image's valid area), so weights converted from the official
    checkpoints need this order to give the official outputs there. The
    SAM-DETR and SAM-DETR++ configs use it.

    Args: those of :class:`SinePositionalEncoding`; ``normalize=True`` and
    ``offset=-0.5`` as the official code (the order above is the official
    one for any ``offset``).

    Returns (:meth:`forward`): (bs, 2 * num_feats, H, W), as mmdet's.
    """

    def forward(self,
                mask: Tensor,
                input: Optional[Tensor] = None) -> Tensor:
        """The encoding of ``mask`` (bs, H, W), True on padding; without a
        mask (``input`` (bs, C, H, W) given), of an unpadded batch."""
        if not self.normalize:
            return super().forward(mask, input)
        if mask is None:
            batch, _, height, width = input.shape
            mask = input.new_zeros((batch, height, width), dtype=torch.bool)
        batch, height, width = mask.shape
        not_mask = ~mask.bool()
        y_embed = not_mask.cumsum(1, dtype=torch.float32) + self.offset
        x_embed = not_mask.cumsum(2, dtype=torch.float32) + self.offset
        # official: c / (c_last + eps + 0.5), left to right
        y_embed = y_embed / (y_embed[:, -1:, :] + self.eps -
                             self.offset) * self.scale
        x_embed = x_embed / (x_embed[:, :, -1:] + self.eps -
                             self.offset) * self.scale
        dim_t = torch.arange(
            self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature**(2 * (dim_t // 2) / self.num_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack(
            (pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()),
            dim=4).view(batch, height, width, -1)
        pos_y = torch.stack(
            (pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()),
            dim=4).view(batch, height, width, -1)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
