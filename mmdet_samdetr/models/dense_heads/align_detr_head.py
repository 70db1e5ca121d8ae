# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align-DETR's losses on mmdet's DINO head."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import DINOHead
from mmdet.registry import MODELS
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   bbox_xyxy_to_cxcywh)
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor

from ..losses import AlignLoss
from ..task_modules import MixedHungarianAssigner


@MODELS.register_module()
class AlignDETRHead(DINOHead):
    r"""Head of `Align-DETR <https://arxiv.org/abs/2304.07527>`_ on DINO.

    Every prediction layer runs its own one-to-k matching
    (:class:`MixedHungarianAssigner`, k from ``all_layers_num_gt_repeat``)
    and is supervised by :class:`AlignLoss` with the rank weight
    :math:`e^{-r/\tau}` on the soft class target and on the L1 and GIoU
    losses (paper Eq. 4 and 6). The last decoder layer (k = 1) keeps the
    soft target with rank 0; denoising queries get the soft target with
    rank 0 (no rank weights), as in the official ``AlignDETRCriterion``.
    Every loss is normalized by the number of ground truths (for DN, of
    positive denoising queries), averaged over processes, at least 1: not
    by the number of positives (k per ground truth).

    Names and config keys follow mmdet's ``projects/AlignDETR`` port. The
    layer index reaches :meth:`loss_by_feat_single` as an argument.

    Args:
        all_layers_num_gt_repeat (list[int], optional): k of every
            prediction layer: the decoder layers, then the encoder output
            when ``as_two_stage``. Defaults to the released configs: 2 on
            every decoder layer but the last (1), and 2 on the encoder.
        alpha (float, optional): Quality exponent; when given, written into
            ``loss_cls`` (and the assigner), as the port's key.
        gamma (float, optional): Focusing exponent, likewise.
        tau (float, optional): Rank temperature, likewise.
        loss_cls (dict): Must build an :class:`AlignLoss`. The port's
            ``CrossEntropyLoss(use_sigmoid=True)`` (its way of writing
            IA-BCE) is read as ``AlignLoss(form='ia_bce')``.
        train_cfg (dict): ``assigner`` must build a
            :class:`MixedHungarianAssigner`; its ``alpha`` defaults to the
            loss's.
    """

    def __init__(self,
                 *args,
                 all_layers_num_gt_repeat: Optional[Sequence[int]] = None,
                 alpha: Optional[float] = None,
                 gamma: Optional[float] = None,
                 tau: Optional[float] = None,
                 loss_cls: dict = dict(type='AlignLoss'),
                 train_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        loss_cls = self._align_loss_cfg(loss_cls, alpha=alpha, gamma=gamma,
                                        tau=tau)
        if train_cfg is not None:
            train_cfg = copy.deepcopy(train_cfg)
            assigner = train_cfg['assigner']
            if assigner.get('type') in ('MixedHungarianAssigner',
                                        MixedHungarianAssigner):
                assigner.setdefault('alpha', loss_cls.get('alpha', 0.25))
        super().__init__(
            *args, loss_cls=loss_cls, train_cfg=train_cfg, **kwargs)
        if not isinstance(self.loss_cls, AlignLoss):
            raise TypeError('AlignDETRHead needs loss_cls=dict(type='
                            f"'AlignLoss'), got {type(self.loss_cls)}")
        if train_cfg is not None:
            if not isinstance(self.assigner, MixedHungarianAssigner):
                raise TypeError(
                    'AlignDETRHead needs train_cfg.assigner=dict(type='
                    f"'MixedHungarianAssigner'), got {type(self.assigner)}")
            if self.assigner.alpha != self.loss_cls.alpha:
                raise ValueError(
                    f'train_cfg.assigner.alpha={self.assigner.alpha} differs '
                    f'from bbox_head.loss_cls.alpha={self.loss_cls.alpha}: '
                    'candidates would be ranked by another quality than '
                    'the one in the target')
        num_decoder_layers = self.num_pred_layer - int(self.as_two_stage)
        if all_layers_num_gt_repeat is None:
            all_layers_num_gt_repeat = [2] * (num_decoder_layers - 1) + [1]
            if self.as_two_stage:
                all_layers_num_gt_repeat.append(2)
        all_layers_num_gt_repeat = list(all_layers_num_gt_repeat)
        if (len(all_layers_num_gt_repeat) != self.num_pred_layer
                or min(all_layers_num_gt_repeat) < 1):
            raise ValueError(
                'bbox_head.all_layers_num_gt_repeat needs one k >= 1 per '
                f'prediction layer ({num_decoder_layers} decoder layers'
                f"{' + the encoder' if self.as_two_stage else ''}), got "
                f'{all_layers_num_gt_repeat}')
        self.all_layers_num_gt_repeat = all_layers_num_gt_repeat

    @staticmethod
    def _align_loss_cfg(loss_cls: dict, **port_keys) -> dict:
        """``loss_cls`` with the port's head-level keys written into it."""
        loss_cls = dict(copy.deepcopy(loss_cls))
        if (loss_cls.get('type') == 'CrossEntropyLoss'
                and loss_cls.get('use_sigmoid')):
            print_log(
                'AlignDETRHead: loss_cls CrossEntropyLoss(use_sigmoid=True) '
                "(mmdet's port) is read as AlignLoss(form='ia_bce')",
                logger='current')
            loss_cls = dict(
                type='AlignLoss',
                form='ia_bce',
                loss_weight=loss_cls.get('loss_weight', 1.0))
        for key, value in port_keys.items():
            if value is None:
                continue
            if key in loss_cls and loss_cls[key] != value:
                raise ValueError(
                    f'bbox_head.{key}={value} disagrees with '
                    f'bbox_head.loss_cls.{key}={loss_cls[key]}; set one')
            loss_cls[key] = value
        return loss_cls

    def loss_by_feat(
        self,
        all_layers_cls_scores: Tensor,
        all_layers_bbox_preds: Tensor,
        enc_cls_scores: Optional[Tensor],
        enc_bbox_preds: Optional[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        dn_meta: Optional[Dict[str, int]] = None,
        batch_gt_instances_ignore: OptInstanceList = None
    ) -> Dict[str, Tensor]:
        """:meth:`DINOHead.loss_by_feat`, with each layer's index passed to
        :meth:`loss_by_feat_single` (for its k) and one normalizer for all
        matching losses.

        Args:
            all_layers_cls_scores (Tensor): (L, bs, nq_total, C).
            all_layers_bbox_preds (Tensor): (L, bs, nq_total, 4), normalized
                cxcywh.
            enc_cls_scores (Tensor, optional): (bs, nq_enc, C).
            enc_bbox_preds (Tensor, optional): (bs, nq_enc, 4).
            dn_meta (dict, optional): Denoising layout; None: no DN.

        Returns:
            dict[str, Tensor]: mmdet DINO's keys (``loss_cls``, ``d{i}.*``,
            ``enc_loss_*``, ``dn_loss_*``, ``d{i}.dn_loss_*``).
        """
        assert batch_gt_instances_ignore is None, \
            'AlignDETRHead does not support ignored ground truths'
        if dn_meta is None:  # mmdet 3.3's split_outputs needs a dn_meta
            cls_scores, bbox_preds = all_layers_cls_scores, \
                all_layers_bbox_preds
            dn_cls_scores = dn_bbox_preds = None
        else:
            (cls_scores, bbox_preds, dn_cls_scores,
             dn_bbox_preds) = self.split_outputs(all_layers_cls_scores,
                                                 all_layers_bbox_preds,
                                                 dn_meta)
        num_gts = self._global_mean_count(
            sum(len(gt) for gt in batch_gt_instances), all_layers_cls_scores)
        loss_dict = dict()
        num_layers = len(cls_scores)
        for layer in range(num_layers):
            losses = self.loss_by_feat_single(
                cls_scores[layer],
                bbox_preds[layer],
                batch_gt_instances,
                batch_img_metas,
                layer_index=layer,
                avg_factor=num_gts)
            prefix = '' if layer == num_layers - 1 else f'd{layer}.'
            for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'),
                                   losses):
                loss_dict[prefix + name] = value
        if enc_cls_scores is not None:
            losses = self.loss_by_feat_single(
                enc_cls_scores,
                enc_bbox_preds,
                batch_gt_instances,
                batch_img_metas,
                layer_index=self.num_pred_layer - 1,
                avg_factor=num_gts)
            for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'),
                                   losses):
                loss_dict['enc_' + name] = value
        if dn_cls_scores is not None:
            dn_losses = self.loss_dn(
                dn_cls_scores,
                dn_bbox_preds,
                batch_gt_instances=batch_gt_instances,
                batch_img_metas=batch_img_metas,
                dn_meta=dn_meta)
            names = ('dn_loss_cls', 'dn_loss_bbox', 'dn_loss_iou')
            for name, values in zip(names, dn_losses):
                loss_dict[name] = values[-1]
                for layer, value in enumerate(values[:-1]):
                    loss_dict[f'd{layer}.{name}'] = value
        return loss_dict

    @staticmethod
    def _global_mean_count(count: int, like: Tensor) -> float:
        """``count`` averaged over processes, at least 1 (the official
        ``num_boxes``)."""
        count = reduce_mean(like.new_tensor(float(count)))
        return torch.clamp(count, min=1).item()

    def loss_by_feat_single(self,
                            cls_scores: Tensor,
                            bbox_preds: Tensor,
                            batch_gt_instances: InstanceList,
                            batch_img_metas: List[dict],
                            layer_index: Optional[int] = None,
                            avg_factor: Optional[float] = None
                            ) -> Tuple[Tensor]:
        """Losses of one prediction layer's matching queries.

        Args:
            cls_scores (Tensor): (bs, nq, C) logits.
            bbox_preds (Tensor): (bs, nq, 4) normalized cxcywh.
            layer_index (int): Index into ``all_layers_num_gt_repeat``.
            avg_factor (float, optional): Normalizer; defaults to the number
                of ground truths averaged over processes.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``.
        """
        if layer_index is None:
            raise ValueError('AlignDETRHead.loss_by_feat_single needs the '
                             'layer_index (it selects k)')
        k = self.all_layers_num_gt_repeat[layer_index]
        if avg_factor is None:
            avg_factor = self._global_mean_count(
                sum(len(gt) for gt in batch_gt_instances), cls_scores)
        factors = self._image_factors(batch_img_metas, bbox_preds)
        pred_xyxy = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        labels = torch.full(cls_scores.shape[:2], self.num_classes,
                            dtype=torch.long, device=cls_scores.device)
        ranks = torch.zeros_like(labels)
        ious = bbox_preds.new_zeros(cls_scores.shape[:2])
        bbox_targets = torch.zeros_like(bbox_preds)
        # one Hungarian assignment per image, on the CPU (as mmdet's DETRs)
        for i, (gt, meta) in enumerate(zip(batch_gt_instances,
                                           batch_img_metas)):
            result = self.assigner.assign(
                InstanceData(scores=cls_scores[i], bboxes=pred_xyxy[i]), gt,
                meta, k=k)
            pos = (result.gt_inds > 0).nonzero()[:, 0]
            labels[i, pos] = result.labels[pos]
            ious[i, pos] = result.max_overlaps[pos]
            ranks[i, pos] = result.get_extra_property('ranks')[pos]
            bbox_targets[i, pos] = bbox_xyxy_to_cxcywh(
                gt.bboxes[result.gt_inds[pos] - 1] / factors[i])
        return self._align_losses(cls_scores, bbox_preds, factors, labels,
                                  ious, ranks, bbox_targets, avg_factor)

    def _loss_dn_single(self, dn_cls_scores: Tensor, dn_bbox_preds: Tensor,
                        batch_gt_instances: InstanceList,
                        batch_img_metas: List[dict],
                        dn_meta: Dict[str, int]) -> Tuple[Tensor]:
        """Denoising losses of one layer: the positive denoising queries
        (DINO's targets) with the soft target at rank 0 and box weight 1."""
        labels, _, bbox_targets, _, num_pos, _ = self.get_dn_targets(
            batch_gt_instances, batch_img_metas, dn_meta)
        labels, bbox_targets = torch.stack(labels), torch.stack(bbox_targets)
        factors = self._image_factors(batch_img_metas, dn_bbox_preds)
        pos = labels < self.num_classes
        ious = dn_bbox_preds.new_zeros(labels.shape)
        ious[pos] = bbox_overlaps(
            (bbox_cxcywh_to_xyxy(dn_bbox_preds.detach()) * factors)[pos],
            (bbox_cxcywh_to_xyxy(bbox_targets) * factors)[pos],
            is_aligned=True)
        return self._align_losses(
            dn_cls_scores, dn_bbox_preds, factors, labels, ious,
            torch.zeros_like(labels), bbox_targets,
            self._global_mean_count(num_pos, dn_cls_scores))

    @staticmethod
    def _image_factors(batch_img_metas: List[dict], like: Tensor) -> Tensor:
        """(bs, 1, 4) image sizes (w, h, w, h)."""
        return like.new_tensor([[[meta['img_shape'][1], meta['img_shape'][0]]
                                 * 2] for meta in batch_img_metas])

    def _align_losses(self, cls_scores: Tensor, bbox_preds: Tensor,
                      factors: Tensor, labels: Tensor, ious: Tensor,
                      ranks: Tensor, bbox_targets: Tensor,
                      avg_factor: float) -> Tuple[Tensor]:
        """Class, L1 and GIoU losses from per-query targets.

        Args:
            cls_scores (Tensor): (bs, n, C) logits.
            bbox_preds (Tensor): (bs, n, 4) normalized cxcywh.
            factors (Tensor): (bs, 1, 4) image sizes.
            labels (Tensor): (bs, n), ``num_classes`` = background.
            ious (Tensor): (bs, n) IoU with the assigned ground truth.
            ranks (Tensor): (bs, n) rank among the ground truth's candidates.
            bbox_targets (Tensor): (bs, n, 4) normalized cxcywh.
            avg_factor (float): Normalizer of all three losses.
        """
        loss_cls = self.loss_cls(
            cls_scores.reshape(-1, self.cls_out_channels),
            (labels.flatten(), ious.flatten(), ranks.flatten()),
            avg_factor=avg_factor)
        pos = labels < self.num_classes
        weights = self.loss_cls.rank_weight(ranks[pos], bbox_preds.dtype)
        weights = weights[:, None].expand(-1, 4)
        pos_preds, pos_targets = bbox_preds[pos], bbox_targets[pos]
        pos_factors = factors.expand(-1, pos.size(1), -1)[pos]
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(pos_preds) * pos_factors,
            bbox_cxcywh_to_xyxy(pos_targets) * pos_factors,
            weights,
            avg_factor=avg_factor)
        loss_bbox = self.loss_bbox(
            pos_preds, pos_targets, weights, avg_factor=avg_factor)
        return loss_cls, loss_bbox, loss_iou
