# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Detection head of SAM-DETR: one class and one box branch per layer."""
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.dense_heads import DINOHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import InstanceList
from mmengine.model import bias_init_with_prob, constant_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..losses import force_float32
from ..utils import check_gt_labels


@MODELS.register_module()
class SAMDETRHead(DINOHead):
    """Head of SAM-DETR and SAM-DETR++.

    mmdet's :class:`DeformableDETRHead` with unshared per-layer branches
    (the official ``class_embed`` / ``bbox_embed``: deep copies with equal
    initial values) and box refinement from the full 4-d reference; the
    denoising (DN) losses are :class:`DINOHead`'s (``split_outputs``,
    ``loss_dn``, ``get_dn_targets``). There is no encoder (two-stage)
    output. ``forward(hidden_states, references)`` is
    :meth:`DeformableDETRHead.forward` with ``references`` the reference
    boxes each decoder layer read, (num_layers, bs, num_queries, 4) sigmoid
    (cx, cy, w, h). Predictions (:meth:`predict`, :meth:`predict_by_feat`)
    carry each detection's salient points.
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

    def loss(self,
             hidden_states: Tensor,
             references: Tensor,
             batch_data_samples: SampleList,
             dn_meta: Optional[Dict[str, int]] = None) -> dict:
        """:meth:`DINOHead.loss` without encoder outputs.

        Args:
            hidden_states (Tensor): (num_decoder_layers, bs,
                num_queries_total, dim).
            references (Tensor): The reference boxes each layer read,
                sigmoid (cx, cy, w, h), (num_decoder_layers, bs,
                num_queries_total, 4).
            batch_data_samples (list[DetDataSample]): ``gt_instances`` and
                the meta information of every image.
            dn_meta (dict, optional): ``num_denoising_queries`` and
                ``num_denoising_groups`` (the first
                ``num_denoising_queries`` queries are denoising queries);
                None: none.

        Returns:
            dict: ``loss_cls``, ``loss_bbox``, ``loss_iou`` and ``d{i}.*``
            for the earlier layers; with DN also ``dn_loss_*`` and
            ``d{i}.dn_loss_*``.

        Raises:
            ValueError: A ground-truth label outside ``[0, num_classes)``
                (:func:`check_gt_labels`), before any matching.
        """
        check_gt_labels(batch_data_samples, self.num_classes)
        return super().loss(hidden_states, references, None, None,
                            batch_data_samples, dn_meta)

    # matching and losses in float32: mmdet's focal loss overflows in float16
    @force_float32
    def loss_by_feat(self, *args, **kwargs) -> Dict[str, Tensor]:
        """:meth:`DINOHead.loss_by_feat` (same arguments and losses), in
        float32 also under mixed precision (:func:`force_float32`)."""
        return super().loss_by_feat(*args, **kwargs)

    @staticmethod
    def split_outputs(all_layers_cls_scores: Tensor,
                      all_layers_bbox_preds: Tensor,
                      dn_meta: Optional[Dict[str, int]]) -> Tuple[Tensor]:
        """:meth:`DINOHead.split_outputs`, also without denoising queries
        (``dn_meta`` None: the denoising parts are None).

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
        """:meth:`DeformableDETRHead.predict`, with salient points.

        Args:
            hidden_states (Tensor): (num_decoder_layers, bs, num_queries,
                dim).
            references (Tensor): (num_decoder_layers, bs, num_queries, 4).
            batch_data_samples (list[DetDataSample]): Their meta
                information: ``img_shape``, and ``scale_factor`` with
                ``rescale``.
            salient_points (Tensor, optional): (num_decoder_layers, bs,
                num_queries, M, 2), normalized (x, y).
            rescale (bool): Boxes and points in the original image's pixels
                (else the input image's). Defaults to True.

        Returns:
            list[InstanceData]: See :meth:`predict_by_feat`.
        """
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        layer_cls_scores, layer_bbox_preds = self(hidden_states, references)
        return self.predict_by_feat(
            layer_cls_scores,
            layer_bbox_preds,
            batch_img_metas,
            rescale=rescale,
            layer_salient_points=salient_points)

    def predict_by_feat(self,
                        layer_cls_scores: Tensor,
                        layer_bbox_preds: Tensor,
                        batch_img_metas: List[dict],
                        rescale: bool = True,
                        layer_salient_points: Optional[Tensor] = None
                        ) -> InstanceList:
        """Detections of the last decoder layer, as mmdet's
        :meth:`DETRHead.predict_by_feat`, with their salient points.

        Args:
            layer_cls_scores (Tensor): (num_decoder_layers, bs, num_queries,
                cls_out_channels) logits; only the last layer is used.
            layer_bbox_preds (Tensor): (num_decoder_layers, bs, num_queries,
                4), normalized (cx, cy, w, h).
            batch_img_metas (list[dict]): ``img_shape`` (h, w) of each image
                (Python ints, or 0-d tensors / symbolic sizes while tracing
                for export) and, with ``rescale``, ``scale_factor`` (w, h).
            rescale (bool): Divide boxes and points by ``scale_factor`` (the
                original image's pixels). Defaults to True.
            layer_salient_points (Tensor, optional): (num_decoder_layers,
                bs, num_queries, M, 2), normalized (x, y).

        Returns:
            list[InstanceData]: One per image, ``test_cfg.max_per_img``
            detections (fewer where fewer candidates exist), best first:
            ``bboxes`` (k, 4) xyxy pixels clipped to the image, ``scores``
            (k, ), ``labels`` (k, ) and, with ``layer_salient_points``,
            ``salient_points`` (k, M, 2) (x, y) in the boxes' pixel frame.
        """
        cls_scores, bbox_preds = layer_cls_scores[-1], layer_bbox_preds[-1]
        salient_points = (None if layer_salient_points is None else
                          layer_salient_points[-1])
        return [
            self._predict_by_feat_single(
                cls_scores[img_id], bbox_preds[img_id], img_meta, rescale,
                None if salient_points is None else salient_points[img_id])
            for img_id, img_meta in enumerate(batch_img_metas)
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
        points of the selected queries. Top-k takes ``max_per_img``, or all
        candidates where fewer exist (sigmoid: num_queries x num_classes;
        softmax: num_queries), where mmdet's version fails.

        Args:
            cls_score (Tensor): (num_queries, cls_out_channels) logits.
            bbox_pred (Tensor): (num_queries, 4), normalized (cx, cy, w, h).
            img_meta (dict): ``img_shape`` (h, w): ints, or 0-d tensors /
                symbolic sizes (the scale is built from them by
                multiplication, so that a traced graph keeps them symbolic);
                ``scale_factor`` (w, h) with ``rescale``.
            rescale (bool): Divide by ``scale_factor``. Defaults to True.
            salient_points (Tensor, optional): (num_queries, M, 2),
                normalized (x, y).

        Returns:
            InstanceData: ``bboxes``, ``scores``, ``labels`` and, with
            ``salient_points``, ``salient_points`` (see
            :meth:`predict_by_feat`).
        """
        max_per_img = self.test_cfg.get('max_per_img', len(cls_score))
        if self.loss_cls.use_sigmoid:
            # at most the query-class pairs that exist
            scores, indexes = cls_score.sigmoid().view(-1).topk(
                min(max_per_img, cls_score.numel()))
            labels = indexes % self.num_classes
            query_index = indexes // self.num_classes
        else:
            scores, labels = cls_score.softmax(-1)[..., :-1].max(-1)
            scores, query_index = scores.topk(
                min(max_per_img, len(cls_score)))
            labels = labels[query_index]
        img_h, img_w = img_meta['img_shape'][:2]
        one = bbox_pred.new_ones(())
        size = torch.stack([one * img_w, one * img_h])  # (w, h)
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
