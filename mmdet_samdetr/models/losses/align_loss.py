# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align Loss of Align-DETR (Cai et al., BMVC 2024, Eq. 3-5)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor, nn

from .float32 import force_float32


def align_quality(scores: Tensor,
                  ious: Tensor,
                  alpha: float = 0.25,
                  min_quality: float = 0.01) -> Tensor:
    """Align-DETR's detached quality :math:`\\max(p^{\\alpha}u^{1-\\alpha},
    q_{min})` of probabilities ``scores`` and IoUs ``ious`` (same shape)."""
    q = scores.detach().pow(alpha) * ious.detach().clamp(min=0).pow(1 - alpha)
    return q.clamp(min=min_quality)


@MODELS.register_module()
class AlignLoss(nn.Module):
    r"""Align Loss: focal loss with a quality- and rank-aware soft target.

    For a positive query (one of the ``k`` candidates of a ground truth) and
    the ground truth's class, the target is

    .. math:: t = e^{-r/\tau} \cdot \max(p^{\alpha}\,u^{1-\alpha}, q_{min})

    with :math:`p` the sigmoid score of that class, :math:`u` the IoU of the
    query's box with the ground truth and :math:`r` the query's rank among
    the candidates (0 = best). :math:`t` is a target: it carries no
    gradient. Every other entry (background queries, and the other classes
    of a positive query) gets the focal negative term
    :math:`-p^{\gamma}\log(1-p)`, with no :math:`\alpha`-balancing (paper
    Eq. 1 and 5, and the released code).

    Positive entries, by ``form``:

    - ``'align'`` (default, the paper's Eq. 3):
      :math:`-t(1-p)^{\gamma}\log p - (1-t)p^{\gamma}\log(1-p)`.
    - ``'ia_bce'`` (the released code's ``IA_BCE_loss``, whose released
      configs reach 50.3 AP): :math:`-t\log p - (1-t)\log(1-p)`.

    Choices where the paper is silent (the released code decides each):
    the quality is clamped at ``min_quality`` = 0.01 *before* the rank
    weight (so an IoU-0 candidate at rank 1 gets 0.01 e^{-1/tau}); the
    modulating factors :math:`(1-p)^{\gamma}` and :math:`p^{\gamma}` are not
    detached (as in focal loss); the sum is normalized by the caller's
    ``avg_factor`` (Align-DETR: the number of ground truths, not of
    positives). Everything is computed from logits (``logsigmoid``), so
    logits of +-100 give finite values and gradients.

    Args:
        use_sigmoid (bool): Must be True (per-class sigmoid scores).
        form (str): ``'align'`` or ``'ia_bce'``.
        alpha (float): Weight of the score in the quality
            :math:`p^{\alpha}u^{1-\alpha}`. Defaults to 0.25.
        gamma (float): Focusing exponent. Defaults to 2.
        tau (float): Rank temperature of :math:`e^{-r/\tau}`.
            Defaults to 1.5.
        min_quality (float): Lower clamp of the quality. Defaults to 0.01.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
        loss_weight (float): Weight of the loss.
    """

    forms = ('align', 'ia_bce')

    def __init__(self,
                 use_sigmoid: bool = True,
                 form: str = 'align',
                 alpha: float = 0.25,
                 gamma: float = 2.0,
                 tau: float = 1.5,
                 min_quality: float = 0.01,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError('AlignLoss only supports use_sigmoid=True')
        if form not in self.forms:
            raise ValueError(f'AlignLoss.form must be one of {self.forms}, '
                             f'got {form!r}')
        if not 0 <= alpha <= 1:
            raise ValueError(f'AlignLoss.alpha must be in [0, 1], got {alpha}')
        if tau <= 0:
            raise ValueError(f'AlignLoss.tau must be positive, got {tau}')
        self.use_sigmoid = use_sigmoid
        self.form = form
        self.alpha = alpha
        self.gamma = gamma
        self.tau = tau
        self.min_quality = min_quality
        self.reduction = reduction
        self.loss_weight = loss_weight

    def rank_weight(self,
                    ranks: Tensor,
                    dtype: torch.dtype = torch.float32) -> Tensor:
        """:math:`e^{-r/\\tau}`, the weight of a candidate of rank ``r``."""
        return torch.exp(-ranks.to(dtype) / self.tau)

    def quality(self, scores: Tensor, ious: Tensor) -> Tensor:
        """:func:`align_quality` with this loss's ``alpha`` and clamp."""
        return align_quality(scores, ious, self.alpha, self.min_quality)

    def _positive(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of positive entries (P,) from their logits and targets."""
        if self.form == 'ia_bce':
            return F.binary_cross_entropy_with_logits(
                logits, targets, reduction='none')
        p = logits.sigmoid()
        return (targets * (1 - p).pow(self.gamma) * -F.logsigmoid(logits) +
                (1 - targets) * p.pow(self.gamma) * -F.logsigmoid(-logits))

    # focal terms, quality and targets in float32 (float16 overflows them)
    @force_float32
    def forward(self,
                pred: Tensor,
                target: Tuple[Tensor, Tensor, Tensor],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Loss of every (query, class) entry, weighted and reduced.

        Args:
            pred (Tensor): Logits, (N, C).
            target (tuple[Tensor]): ``labels`` (N,) in [0, C] (C is
                background), ``ious`` (N,) IoU of each box with its ground
                truth (ignored for background) and ``ranks`` (N,) rank of
                each positive among its ground truth's candidates (0 for a
                one-to-one or denoising positive).
            weight (Tensor, optional): (N,) or (N, C) per-entry weights.
            avg_factor (float, optional): Divisor of the sum for 'mean'.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: The loss, float32 (also under mixed precision,
            :func:`force_float32`), a scalar unless the reduction is 'none'
            ((N, C) then).
        """
        assert reduction_override in (None, 'none', 'mean', 'sum')
        reduction = reduction_override or self.reduction
        labels, ious, ranks = target
        if pred.dim() != 2 or labels.shape != pred.shape[:1]:
            raise ValueError('AlignLoss expects pred (N, C) and labels (N,), '
                             f'got {tuple(pred.shape)} and '
                             f'{tuple(labels.shape)}')
        # -p^gamma log(1 - p) on every entry, then the positives replaced
        loss = pred.sigmoid().pow(self.gamma) * -F.logsigmoid(-pred)
        pos_idx = ((labels >= 0) & (labels < pred.size(1))).nonzero()[:, 0]
        if pos_idx.numel() > 0:
            pos_labels = labels[pos_idx]
            logits = pred[pos_idx, pos_labels]
            targets = (self.quality(logits.sigmoid(), ious[pos_idx]) *
                       self.rank_weight(ranks[pos_idx], pred.dtype))
            loss = loss.index_put((pos_idx, pos_labels),
                                  self._positive(logits, targets))
        elif pred.numel() == 0 and avg_factor is None and reduction == 'mean':
            return pred.sum() * 0  # the mean of nothing: 0, not NaN
        if weight is not None and weight.dim() == 1:
            weight = weight[:, None]
        loss = weight_reduce_loss(loss, weight, reduction, avg_factor)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'form={self.form!r}, alpha={self.alpha}, '
                f'gamma={self.gamma}, tau={self.tau}, '
                f'min_quality={self.min_quality}')
