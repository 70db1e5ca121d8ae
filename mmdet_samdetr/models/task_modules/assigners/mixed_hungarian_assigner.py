# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""One-to-k Hungarian matching with ranks (Align-DETR's mixed matching)."""
from typing import Optional

import numpy as np
import torch
from mmdet.models.task_modules.assigners import (AssignResult,
                                                 HungarianAssigner)
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ...losses import align_quality, force_float32


@TASK_UTILS.register_module()
class MixedHungarianAssigner(HungarianAssigner):
    r"""Assigns k distinct queries to every ground truth and ranks them.

    Align-DETR (Cai et al., BMVC 2024, Sec. 3.2; the official
    ``MixedMatcher`` and ``get_local_rank``): the (queries x ground truths)
    matching cost is tiled k times along the ground-truth axis and solved by
    one Hungarian assignment, so every ground truth gets exactly k distinct
    queries and conflicts between ground truths are resolved jointly (it is
    not a per-ground-truth top-k of the cost). The candidates of each ground
    truth are then ranked by the detached quality
    :math:`q = \max(p^{\alpha}u^{1-\alpha}, q_{min})` (p: the query's score
    for the ground truth's class, u: IoU), descending, ties broken by query
    index; not by the cost.

    k is capped per image: ``max(1, min(k, num_preds // num_gts))``, so k x
    G never exceeds the queries and an image with ground truth always gets
    positives. (Deviation: the released code caps with a running minimum of
    ``int(0.5 * num_queries / G)`` over the images of a batch, so one
    crowded image lowers k for the images after it, and G > num_queries / 2
    gives that image and all later ones no positives at all.)

    Args:
        match_costs (dict | list[dict]): Match costs, as for mmdet's
            :class:`HungarianAssigner`.
        alpha (float): Weight of the score in the quality. Defaults to 0.25.
        min_quality (float): Lower clamp of the quality. Defaults to 0.01.
    """

    def __init__(self,
                 match_costs,
                 alpha: float = 0.25,
                 min_quality: float = 0.01) -> None:
        super().__init__(match_costs)
        self.alpha = alpha
        self.min_quality = min_quality

    @staticmethod
    def capped_k(k: int, num_gts: int, num_preds: int) -> int:
        """k used for an image with ``num_gts`` ground truths."""
        if num_gts == 0:
            return 0
        return max(1, min(k, num_preds // num_gts))

    # costs, IoUs and qualities in float32: float16 ties or overflows them
    @force_float32
    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: Optional[dict] = None,
               k: int = 1,
               **kwargs) -> AssignResult:
        """Assign k queries to each ground truth.

        Args:
            pred_instances (InstanceData): ``scores`` (N, C) logits and
                ``bboxes`` (N, 4) xyxy in pixels.
            gt_instances (InstanceData): ``bboxes`` (G, 4) xyxy and
                ``labels`` (G,).
            img_meta (dict, optional): Image meta, passed to the costs and
                named in errors.
            k (int): Candidates per ground truth before the cap.

        Returns:
            AssignResult: ``gt_inds`` (N,) 0 = background, i + 1 = ground
            truth i; ``labels`` (N,) (-1 for background); ``max_overlaps``
            (N,) IoU with the assigned ground truth (0 for background;
            float32 also under mixed precision, :func:`force_float32`); and
            the extra property ``ranks`` (N,) (-1 for background).
        """
        if k < 1:
            raise ValueError(
                f'MixedHungarianAssigner: k must be >= 1, got {k}')
        gt_bboxes, gt_labels = gt_instances.bboxes, gt_instances.labels
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        device = gt_labels.device
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full_like(gt_inds, -1)
        ious = pred_instances.bboxes.new_zeros(num_preds)
        ranks = torch.full_like(gt_inds, -1)
        if num_gts > 0 and num_preds > 0:
            cost = sum(
                match_cost(
                    pred_instances=pred_instances,
                    gt_instances=gt_instances,
                    img_meta=img_meta) for match_cost in self.match_costs)
            cost = cost.detach().cpu()
            if not torch.isfinite(cost).all():
                name = (img_meta or {}).get('img_path',
                                            (img_meta or {}).get('img_id'))
                raise ValueError(
                    f'MixedHungarianAssigner: non-finite matching cost for '
                    f'image {name} (NaN/inf in the predictions or boxes)')
            k = self.capped_k(k, num_gts, num_preds)
            rows, cols = linear_sum_assignment(cost.repeat(1, k).numpy())
            rows = torch.from_numpy(rows).to(device)
            gts = torch.from_numpy(np.asarray(cols % num_gts)).to(device)
            gt_inds[rows] = gts + 1
            labels[rows] = gt_labels[gts]
            pos_ious = bbox_overlaps(
                pred_instances.bboxes[rows].detach(),
                gt_bboxes[gts],
                is_aligned=True)
            ious[rows] = pos_ious.to(ious.dtype)
            scores = pred_instances.scores[rows, gt_labels[gts]].sigmoid()
            quality = align_quality(scores, pos_ious, self.alpha,
                                    self.min_quality)
            ranks[rows] = self.rank_within_groups(gts, quality, num_gts)
        result = AssignResult(
            num_gts=num_gts, gt_inds=gt_inds, max_overlaps=ious,
            labels=labels)
        result.set_extra_property('ranks', ranks)
        return result

    @staticmethod
    def rank_within_groups(groups: Tensor, values: Tensor,
                           num_groups: int) -> Tensor:
        """Rank of each value within its group, descending (0 = largest);
        ties keep the input order (stable sorts).

        Args:
            groups (Tensor): (P,) group of each value, in [0, num_groups).
            values (Tensor): (P,).

        Returns:
            Tensor: (P,) ranks.
        """
        by_value = torch.sort(-values, stable=True)[1]
        order = by_value[torch.sort(groups[by_value], stable=True)[1]]
        counts = torch.bincount(groups, minlength=num_groups)
        starts = torch.cumsum(counts, 0) - counts
        ranks = torch.empty_like(groups)
        ranks[order] = torch.arange(
            len(groups), device=groups.device) - starts[groups[order]]
        return ranks
