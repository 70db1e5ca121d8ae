# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Detection head of SAM-DETR: one class and one box branch per layer."""
from typing import Dict, Optional, Tuple

import torch
from mmdet.models.dense_heads import DINOHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import InstanceList
from mmengine.model import bias_init_with_prob, constant_init
from mmengine.structures import InstanceData
from torch import Tensor, nn


@MODELS.register_module()
class SAMDETRHead(DINOHead):
    """Head of SAM-DETR and SAM-DETR++.

    mmdet's :class:`DeformableDETRHead` with unshared per-layer branches
    (the official ``class_embed`` / ``bbox_embed``: deep copies with equal
    initial values) and box refinement from the full 4-d reference; the
    denoising (DN) losses are :class:`DINOHead`'s (``split_outputs``,
    ``loss_dn``, ``get_dn_targets``). There is no encoder (two-stage)
    output. Predictions carry each detection's salient points.

    Per-layer target hooks for subclasses: :meth:`loss_by_feat_single`
    (matching queries of one layer) and :meth:`_loss_dn_single` (denoising
    queries of one layer), as in mmdet.
    """

    def init_weights(self) -> None:
        """Class bias at prior 0.01, last box layer zero, on every layer.

        The official code initializes once and deep-copies, so every layer
        starts from equal values (as the branches built by
        ``DeformableDETRHead._init_layers``); unlike Deformable DETR, the
        box bias stays 0 (no -2 on w, h).
        """
        bias_init = bias_init_with_prob(0.01)
        for fc_cls, reg_branch in zip(self.cls_branches, self.reg_branches):
            if self.loss_cls.use_sigmoid:
                nn.init.constant_(fc_cls.bias, bias_init)
            constant_init(reg_branch[-1], 0., bias=0.)

    def forward(self,
                hidden_states: Tensor,
                references: Tensor,
                salient_points: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor]:
        """Class scores and boxes of every decoder layer.

        Args:
            hidden_states (Tensor): (L, bs, nq, d).
            references (Tensor): The reference boxes each layer read
                (sigmoid cxcywh), (L, bs, nq, 4).
            salient_points (Tensor, optional): Unused here.

        Returns:
            tuple[Tensor]: scores (L, bs, nq, cls_out_channels) and boxes
            (L, bs, nq, 4) as normalized (cx, cy, w, h).
        """
        return super().forward(hidden_states, references)

    def loss(self,
             hidden_states: Tensor,
             references: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Optional[Dict[str, int]] = None,
             salient_points: Optional[Tensor] = None) -> dict:
        """Matching losses of every layer, and denoising losses when
        ``dn_meta`` is given (the first ``num_denoising_queries`` queries are
        then denoising queries).

        Returns:
            dict: ``loss_cls``, ``loss_bbox``, ``loss_iou`` and ``d{i}.*``
            for the earlier layers; with DN also ``dn_loss_*`` and
            ``d{i}.dn_loss_*``.
        """
        batch_gt_instances = [s.gt_instances for s in batch_data_samples]
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        cls_scores, bbox_preds = self(hidden_states, references)
        return self.loss_by_feat(cls_scores, bbox_preds, None, None,
                                 batch_gt_instances, batch_img_metas, dn_meta)

    @staticmethod
    def split_outputs(all_layers_cls_scores: Tensor,
                      all_layers_bbox_preds: Tensor,
                      dn_meta: Optional[Dict[str, int]]) -> Tuple[Tensor]:
        """:meth:`DINOHead.split_outputs`, also without denoising queries.

        mmdet 3.3's version reads ``dn_meta['num_denoising_queries']``
        before it checks ``dn_meta`` for None, so it fails for a model
        trained without DN.
        """
        if dn_meta is None:
            return all_layers_cls_scores, all_layers_bbox_preds, None, None
        return DINOHead.split_outputs(all_layers_cls_scores,
                                      all_layers_bbox_preds, dn_meta)

    def predict(self,
                hidden_states: Tensor,
                references: Tensor,
                batch_data_samples: SampleList,
                salient_points: Optional[Tensor] = None,
                rescale: bool = True) -> InstanceList:
        """Detections of the last layer, with their salient points.

        Args:
            salient_points (Tensor, optional): (L, bs, nq, M, 2), normalized
                (x, y).

        Returns:
            list[InstanceData]: ``bboxes``, ``scores``, ``labels`` and, when
            ``salient_points`` is given, ``salient_points`` (k, M, 2) in the
            same pixel frame as the boxes (input image, or original image
            with ``rescale``).
        """
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        cls_scores, bbox_preds = self(hidden_states, references)
        return [
            self._predict_by_feat_single(
                cls_scores[-1, i], bbox_preds[-1, i], meta, rescale,
                None if salient_points is None else salient_points[-1, i])
            for i, meta in enumerate(batch_img_metas)
        ]

    def _predict_by_feat_single(self,
                                cls_score: Tensor,
                                bbox_pred: Tensor,
                                img_meta: dict,
                                rescale: bool = True,
                                salient_points: Optional[Tensor] = None
                                ) -> InstanceData:
        """:meth:`DETRHead._predict_by_feat_single` (top-k over queries x
        classes, boxes clipped to the image), also gathering the salient
        points (nq, M, 2) of the selected queries.
        """
        max_per_img = self.test_cfg.get('max_per_img', len(cls_score))
        if self.loss_cls.use_sigmoid:
            scores, indexes = cls_score.sigmoid().view(-1).topk(max_per_img)
            labels = indexes % self.num_classes
            query_index = indexes // self.num_classes
        else:
            scores, labels = cls_score.softmax(-1)[..., :-1].max(-1)
            scores, query_index = scores.topk(max_per_img)
            labels = labels[query_index]
        img_h, img_w = img_meta['img_shape']
        size = bbox_pred.new_tensor([img_w, img_h])
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred[query_index]) * size.repeat(2)
        bboxes = torch.minimum(bboxes.clamp(min=0), size.repeat(2))
        results = InstanceData(bboxes=bboxes, scores=scores, labels=labels)
        if salient_points is not None:
            results.salient_points = salient_points[query_index] * size
        if rescale:
            assert img_meta.get('scale_factor') is not None
            scale = bbox_pred.new_tensor(img_meta['scale_factor'])
            results.bboxes = results.bboxes / scale.repeat(2)
            if salient_points is not None:
                results.salient_points = results.salient_points / scale
        return results
