# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align-DETR's training targets for mmdet's DETR heads with denoising."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.dense_heads import DINOHead
from mmdet.models.layers import inverse_sigmoid
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   bbox_xyxy_to_cxcywh)
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor

from ..losses import AlignLoss, force_float32
from ..task_modules import MixedHungarianAssigner
from ..utils import check_gt_labels
from .sam_detr_head import SAMDETRHead


class AlignDETRMixin:
    r"""Align-DETR's matching and losses for a subclass of mmdet's
    :class:`DINOHead` (`Align-DETR <https://arxiv.org/abs/2304.07527>`_,
    Cai et al., BMVC 2024).

    Put it first among the bases: ``class Head(AlignDETRMixin, DINOHead)``.
    Every prediction layer runs its own one-to-k matching
    (:class:`MixedHungarianAssigner`, k = ``all_layers_num_gt_repeat[i]``)
    and is supervised by :class:`AlignLoss`, whose soft class target and
    the L1 and GIoU losses carry the rank weight :math:`e^{-r/\tau}` (paper
    Eq. 4 and 6). Denoising queries keep DINO's targets with the soft class
    target at rank 0 (no rank weights), as the official
    ``AlignDETRCriterion``. Every loss is normalized by the number of ground
    truths (for DN, of positive denoising queries) averaged over processes,
    at least 1 (the official ``num_boxes``): not by the number of positives,
    which is k per ground truth.

    The layer index travels as an argument: :meth:`loss_by_feat` ->
    :meth:`loss_by_feat_single` -> :meth:`get_targets` ->
    :meth:`_get_targets_single` (mmdet's ``projects/AlignDETR`` recovers it
    from the indexing of the score tensor instead). The denoising targets
    are DINO's (:meth:`DINOHead.get_dn_targets`).

    Args:
        all_layers_num_gt_repeat (list[int], optional): k of every
            prediction layer: the decoder layers, then the encoder output
            when ``as_two_stage``. Defaults to the released configs: 2 on
            every decoder layer but the last (1), and 2 on the encoder.
        alpha (float, optional): Quality exponent; when given, written into
            ``loss_cls`` (and the assigner), as the key of mmdet's port.
        gamma (float, optional): Focusing exponent, likewise.
        tau (float, optional): Rank temperature, likewise.
        loss_cls (dict): Must build an :class:`AlignLoss`. The port's
            ``CrossEntropyLoss(use_sigmoid=True)`` (its way of writing
            IA-BCE) is read as ``AlignLoss(form='ia_bce')``.
        train_cfg (dict, optional): ``assigner`` must build a
            :class:`MixedHungarianAssigner`; its ``alpha`` defaults to the
            loss's.

    Raises:
        TypeError: ``loss_cls`` or the assigner of another type.
        ValueError: ``all_layers_num_gt_repeat`` without one k >= 1 per
            prediction layer; a head-level key that disagrees with
            ``loss_cls``; assigner and loss with different ``alpha``.
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
        name = type(self).__name__
        if not isinstance(self.loss_cls, AlignLoss):
            raise TypeError(f'{name} needs loss_cls=dict(type='
                            f"'AlignLoss'), got {type(self.loss_cls)}")
        if train_cfg is not None:
            if not isinstance(self.assigner, MixedHungarianAssigner):
                raise TypeError(
                    f'{name} needs train_cfg.assigner=dict(type='
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
                'loss_cls CrossEntropyLoss(use_sigmoid=True) (the loss of '
                "mmdet's AlignDETR port) is read as AlignLoss(form='ia_bce')",
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

    # matching, targets and losses in float32 (float16 overflows the focal
    # terms and the quality, and loses the IoU of small boxes)
    @force_float32
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
        """:meth:`DINOHead.loss_by_feat`, with the index of every layer
        passed to :meth:`loss_by_feat_single` (mmdet's version cannot pass
        it) and one normalizer for all matching losses; the denoising losses
        are :meth:`DINOHead.loss_dn`'s.

        Args:
            all_layers_cls_scores (Tensor): (num_decoder_layers, bs,
                num_queries_total, cls_out_channels) logits; the first
                ``dn_meta['num_denoising_queries']`` queries are denoising
                queries.
            all_layers_bbox_preds (Tensor): (num_decoder_layers, bs,
                num_queries_total, 4), normalized (cx, cy, w, h).
            enc_cls_scores (Tensor, optional): (bs, num_queries,
                cls_out_channels) of the encoder proposals (two-stage).
            enc_bbox_preds (Tensor, optional): (bs, num_queries, 4).
            batch_gt_instances (list[InstanceData]): ``bboxes`` (G, 4) xyxy
                pixels and ``labels`` (G, ) of each image.
            batch_img_metas (list[dict]): ``img_shape`` (h, w) of each image.
            dn_meta (dict, optional): ``num_denoising_queries`` and
                ``num_denoising_groups``; None: no denoising queries (only
                where ``split_outputs`` accepts None, as
                :meth:`SAMDETRHead.split_outputs`).

        Returns:
            dict[str, Tensor]: mmdet DINO's keys: ``loss_cls``,
            ``loss_bbox``, ``loss_iou`` of the last layer, ``d{i}.*`` of the
            others, ``enc_loss_*`` and, with denoising queries,
            ``dn_loss_*`` and ``d{i}.dn_loss_*``; float32 also under
            mixed precision (:func:`force_float32`).
        """
        assert batch_gt_instances_ignore is None, \
            f'{type(self).__name__} does not support ignored ground truths'
        (cls_scores, bbox_preds, dn_cls_scores,
         dn_bbox_preds) = self.split_outputs(all_layers_cls_scores,
                                             all_layers_bbox_preds, dn_meta)
        num_gts = self._mean_over_processes(
            sum(len(gt) for gt in batch_gt_instances), all_layers_cls_scores)
        names = ('loss_cls', 'loss_bbox', 'loss_iou')
        loss_dict = dict()
        num_layers = len(cls_scores)
        for layer_index in range(num_layers):
            losses = self.loss_by_feat_single(
                cls_scores[layer_index],
                bbox_preds[layer_index],
                batch_gt_instances,
                batch_img_metas,
                layer_index=layer_index,
                avg_factor=num_gts)
            prefix = ('' if layer_index == num_layers - 1 else
                      f'd{layer_index}.')
            loss_dict.update(
                (prefix + name, loss) for name, loss in zip(names, losses))
        if enc_cls_scores is not None:
            losses = self.loss_by_feat_single(
                enc_cls_scores,
                enc_bbox_preds,
                batch_gt_instances,
                batch_img_metas,
                layer_index=self.num_pred_layer - 1,
                avg_factor=num_gts)
            loss_dict.update(
                ('enc_' + name, loss) for name, loss in zip(names, losses))
        if dn_cls_scores is not None:
            dn_losses = self.loss_dn(
                dn_cls_scores,
                dn_bbox_preds,
                batch_gt_instances=batch_gt_instances,
                batch_img_metas=batch_img_metas,
                dn_meta=dn_meta)
            for name, layer_losses in zip(names, dn_losses):
                loss_dict['dn_' + name] = layer_losses[-1]
                loss_dict.update((f'd{layer_index}.dn_{name}', loss)
                                 for layer_index, loss in enumerate(
                                     layer_losses[:-1]))
        return loss_dict

    def loss_by_feat_single(self,
                            cls_scores: Tensor,
                            bbox_preds: Tensor,
                            batch_gt_instances: InstanceList,
                            batch_img_metas: List[dict],
                            layer_index: Optional[int] = None,
                            avg_factor: Optional[float] = None
                            ) -> Tuple[Tensor]:
        """Losses of the matching queries of one prediction layer.

        Args:
            cls_scores (Tensor): (bs, num_queries, cls_out_channels) logits.
            bbox_preds (Tensor): (bs, num_queries, 4), normalized (cx, cy,
                w, h).
            batch_gt_instances (list[InstanceData]): As in
                :meth:`loss_by_feat`.
            batch_img_metas (list[dict]): As in :meth:`loss_by_feat`.
            layer_index (int): Index into ``all_layers_num_gt_repeat`` (the
                encoder output: ``num_pred_layer - 1``).
            avg_factor (float, optional): Normalizer of the three losses;
                defaults to the number of ground truths averaged over
                processes, at least 1.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``.

        Raises:
            ValueError: Without ``layer_index`` (as when called by mmdet's
                ``loss_by_feat``).
        """
        if layer_index is None:
            raise ValueError(f'{type(self).__name__}.loss_by_feat_single '
                             'needs the layer_index (it selects k)')
        if avg_factor is None:
            avg_factor = self._mean_over_processes(
                sum(len(gt) for gt in batch_gt_instances), cls_scores)
        labels_list, ious_list, ranks_list, bbox_targets_list = \
            self.get_targets(list(cls_scores), list(bbox_preds),
                             batch_gt_instances, batch_img_metas, layer_index)
        return self._align_losses(cls_scores, bbox_preds, batch_img_metas,
                                  torch.stack(labels_list),
                                  torch.stack(ious_list),
                                  torch.stack(ranks_list),
                                  torch.stack(bbox_targets_list), avg_factor)

    def get_targets(self, cls_scores_list: List[Tensor],
                    bbox_preds_list: List[Tensor],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    layer_index: int) -> Tuple[List[Tensor]]:
        """Align-DETR's targets of one layer's matching queries, image by
        image (:meth:`_get_targets_single`).

        Args:
            cls_scores_list (list[Tensor]): (num_queries, cls_out_channels)
                logits of each image.
            bbox_preds_list (list[Tensor]): (num_queries, 4) normalized
                (cx, cy, w, h) of each image.
            layer_index (int): Index into ``all_layers_num_gt_repeat``.

        Returns:
            tuple[list[Tensor]]: ``labels_list``, ``ious_list``,
            ``ranks_list`` and ``bbox_targets_list``, one entry per image
            (see :meth:`_get_targets_single`).
        """
        return multi_apply(
            self._get_targets_single,
            cls_scores_list,
            bbox_preds_list,
            batch_gt_instances,
            batch_img_metas,
            layer_index=layer_index)

    def _get_targets_single(self, cls_score: Tensor, bbox_pred: Tensor,
                            gt_instances: InstanceData, img_meta: dict,
                            layer_index: int) -> Tuple[Tensor]:
        """Targets of one image's matching queries: k queries per ground
        truth (k of ``layer_index``), ranked by quality (official
        ``MixedMatcher`` and ``get_local_rank``).

        Args:
            cls_score (Tensor): (num_queries, cls_out_channels) logits.
            bbox_pred (Tensor): (num_queries, 4), normalized (cx, cy, w, h).
            gt_instances (InstanceData): ``bboxes`` (G, 4) xyxy pixels and
                ``labels`` (G, ).
            img_meta (dict): ``img_shape`` (h, w).
            layer_index (int): Index into ``all_layers_num_gt_repeat``.

        Returns:
            tuple[Tensor]: ``labels`` (num_queries, ) (``num_classes`` for
            background), ``ious`` (num_queries, ) IoU of each positive with
            its ground truth (0 for background), ``ranks`` (num_queries, )
            rank of each positive among its ground truth's candidates (0 =
            best; 0 for background) and ``bbox_targets`` (num_queries, 4)
            normalized (cx, cy, w, h) (0 for background).
        """
        img_h, img_w = img_meta['img_shape'][:2]
        gt_bboxes = gt_instances.bboxes
        # targets in the ground truth's dtype, whatever the predictions'
        factor = gt_bboxes.new_tensor([img_w, img_h, img_w, img_h])[None]
        pred_instances = InstanceData(
            scores=cls_score, bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
        # the Hungarian assignment runs on the CPU, as in mmdet's DETRs
        assign_result = self.assigner.assign(
            pred_instances,
            gt_instances,
            img_meta,
            k=self.all_layers_num_gt_repeat[layer_index])
        pos_inds = (assign_result.gt_inds > 0).nonzero()[:, 0]
        labels = torch.full(cls_score.shape[:1], self.num_classes,
                            dtype=torch.long, device=cls_score.device)
        labels[pos_inds] = assign_result.labels[pos_inds]
        ious = gt_bboxes.new_zeros(labels.shape)
        ious[pos_inds] = assign_result.max_overlaps[pos_inds].to(ious.dtype)
        ranks = torch.zeros_like(labels)
        ranks[pos_inds] = assign_result.get_extra_property('ranks')[pos_inds]
        bbox_targets = torch.zeros_like(bbox_pred, dtype=gt_bboxes.dtype)
        pos_gt_bboxes = gt_bboxes[assign_result.gt_inds[pos_inds] - 1]
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(pos_gt_bboxes / factor)
        return labels, ious, ranks, bbox_targets

    def _loss_dn_single(self, dn_cls_scores: Tensor, dn_bbox_preds: Tensor,
                        batch_gt_instances: InstanceList,
                        batch_img_metas: List[dict],
                        dn_meta: Dict[str, int]) -> Tuple[Tensor]:
        """Denoising losses of one layer: DINO's targets
        (:meth:`DINOHead.get_dn_targets`), the soft class target at rank 0,
        box weight 1, normalized by the positive denoising queries.

        Args:
            dn_cls_scores (Tensor): (bs, num_denoising_queries,
                cls_out_channels) logits.
            dn_bbox_preds (Tensor): (bs, num_denoising_queries, 4),
                normalized (cx, cy, w, h).
            dn_meta (dict): ``num_denoising_queries`` and
                ``num_denoising_groups``.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``.
        """
        labels_list, _, bbox_targets_list, _, num_total_pos, _ = \
            self.get_dn_targets(batch_gt_instances, batch_img_metas, dn_meta)
        labels = torch.stack(labels_list)
        bbox_targets = torch.stack(bbox_targets_list)
        factors = self._image_factors(batch_img_metas, bbox_targets)
        pos = labels < self.num_classes
        ious = bbox_targets.new_zeros(labels.shape)
        ious[pos] = bbox_overlaps(
            (bbox_cxcywh_to_xyxy(dn_bbox_preds.detach()) * factors)[pos],
            (bbox_cxcywh_to_xyxy(bbox_targets) * factors)[pos],
            is_aligned=True)
        return self._align_losses(
            dn_cls_scores, dn_bbox_preds, batch_img_metas, labels, ious,
            torch.zeros_like(labels), bbox_targets,
            self._mean_over_processes(num_total_pos, dn_cls_scores))

    @staticmethod
    def _mean_over_processes(count: int, like: Tensor) -> float:
        """``count`` averaged over processes (mmdet's ``reduce_mean``), at
        least 1: the official ``num_boxes``."""
        count = reduce_mean(like.new_tensor(float(count)))
        return torch.clamp(count, min=1).item()

    @staticmethod
    def _image_factors(batch_img_metas: List[dict], like: Tensor) -> Tensor:
        """(bs, 1, 4) image sizes (w, h, w, h) in pixels."""
        return like.new_tensor([[[meta['img_shape'][1], meta['img_shape'][0]]
                                 * 2] for meta in batch_img_metas])

    def _align_losses(self, cls_scores: Tensor, bbox_preds: Tensor,
                      batch_img_metas: List[dict], labels: Tensor,
                      ious: Tensor, ranks: Tensor, bbox_targets: Tensor,
                      avg_factor: float) -> Tuple[Tensor]:
        """Class, L1 and GIoU losses from per-query targets (paper Eq. 3-6;
        the box losses of the positives only, weighted by
        :math:`e^{-r/\\tau}`).

        Args:
            cls_scores (Tensor): (bs, n, cls_out_channels) logits.
            bbox_preds (Tensor): (bs, n, 4) normalized (cx, cy, w, h).
            batch_img_metas (list[dict]): ``img_shape`` (h, w) of each image.
            labels (Tensor): (bs, n), ``num_classes`` = background.
            ious (Tensor): (bs, n) IoU with the assigned ground truth.
            ranks (Tensor): (bs, n) rank among the ground truth's candidates.
            bbox_targets (Tensor): (bs, n, 4) normalized (cx, cy, w, h).
            avg_factor (float): Normalizer of all three losses.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou``.
        """
        loss_cls = self.loss_cls(
            cls_scores.reshape(-1, self.cls_out_channels),
            (labels.flatten(), ious.flatten(), ranks.flatten()),
            avg_factor=avg_factor)
        pos = labels < self.num_classes
        weights = self.loss_cls.rank_weight(ranks[pos], bbox_preds.dtype)
        weights = weights[:, None].expand(-1, 4)
        pos_preds, pos_targets = bbox_preds[pos], bbox_targets[pos]
        factors = self._image_factors(batch_img_metas, bbox_preds)
        pos_factors = factors.expand(-1, pos.size(1), -1)[pos]
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(pos_preds) * pos_factors,
            bbox_cxcywh_to_xyxy(pos_targets) * pos_factors,
            weights,
            avg_factor=avg_factor)
        loss_bbox = self.loss_bbox(
            pos_preds, pos_targets, weights, avg_factor=avg_factor)
        return loss_cls, loss_bbox, loss_iou


@MODELS.register_module()
class AlignDETRHead(AlignDETRMixin, DINOHead):
    """Head of Align-DETR on mmdet's DINO: :class:`DINOHead` trained with
    :class:`AlignDETRMixin`'s mixed matching and Align Loss, on the decoder
    layers and the encoder proposals.

    Names and config keys follow mmdet's ``projects/AlignDETR`` port
    (``all_layers_num_gt_repeat``, ``alpha``, ``gamma``, ``tau``).
    Detections are :meth:`SAMDETRHead._predict_by_feat_single`'s (mmdet's,
    with top-k capped at the candidates that exist) without salient points.

    Args:
        inverse_sigmoid_eps (float): The clamp of :func:`inverse_sigmoid` on
            the references the head adds its box offsets to. mmdet's
            :class:`DeformableDETRHead` uses 1e-5; the official Align-DETR
            (detrex's DINO) 1e-3, as mmdet's DINO decoder does when it
            refines the references: the two differ where a reference
            coordinate is below 1e-3 or above 0.999. Defaults to 1e-5.
        Other arguments: :class:`AlignDETRMixin`, :class:`DINOHead`.
    """

    _predict_by_feat_single = SAMDETRHead._predict_by_feat_single

    def __init__(self, *args, inverse_sigmoid_eps: float = 1e-5,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inverse_sigmoid_eps = inverse_sigmoid_eps

    def forward(self, hidden_states: Tensor,
                references: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """:meth:`DeformableDETRHead.forward` of DINO (two-stage, box
        refinement: every reference is a box) with ``inverse_sigmoid_eps``.

        Args:
            hidden_states (Tensor): The decoder layers' outputs,
                (num_decoder_layers, bs, num_queries, dim).
            references (list[Tensor]): The initial reference and the
                decoder's refined ones, each (bs, num_queries, 4), normalised
                cxcywh; the last one is not used.

        Returns:
            tuple[Tensor]: Class logits (num_decoder_layers, bs, num_queries,
            cls_out_channels) and boxes (num_decoder_layers, bs,
            num_queries, 4), normalised cxcywh.
        """
        all_layers_cls_scores, all_layers_bbox_preds = [], []
        for layer_id, hidden_state in enumerate(hidden_states):
            reference = inverse_sigmoid(references[layer_id],
                                        self.inverse_sigmoid_eps)
            all_layers_cls_scores.append(
                self.cls_branches[layer_id](hidden_state))
            all_layers_bbox_preds.append(
                (self.reg_branches[layer_id](hidden_state) +
                 reference).sigmoid())
        return torch.stack(all_layers_cls_scores), torch.stack(
            all_layers_bbox_preds)

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Tensor, enc_outputs_coord: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Dict[str, int]) -> dict:
        """:meth:`DINOHead.loss` after :func:`check_gt_labels`.

        Raises:
            ValueError: A ground-truth label outside ``[0, num_classes)``,
                before any matching.
        """
        check_gt_labels(batch_data_samples, self.num_classes)
        return super().loss(hidden_states, references, enc_outputs_class,
                            enc_outputs_coord, batch_data_samples, dn_meta)
