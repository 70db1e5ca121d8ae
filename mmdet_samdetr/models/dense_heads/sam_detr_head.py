# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Detection head of SAM-DETR: one class and one box branch per layer."""
import copy
from typing import Optional, Tuple

import torch
from mmcv.cnn import Linear
from mmdet.models.dense_heads import DABDETRHead
from mmdet.models.layers import MLP, inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import InstanceList
from mmengine.model import bias_init_with_prob, constant_init
from torch import Tensor, nn


@MODELS.register_module()
class SAMDETRHead(DABDETRHead):
    """Head of SAM-DETR.

    Differs from :class:`DABDETRHead` in having separate (not shared) class
    and box branches for each decoder layer (official ``class_embed`` and
    ``bbox_embed``, deep copies with equal initial values), boxes refined
    from the full 4-d reference with ``inverse_sigmoid(eps=1e-5)``, and
    predictions that carry each detection's salient points.

    Args:
        num_pred_layer (int): Number of decoder layers. Defaults to 6.
    """

    def __init__(self, *args, num_pred_layer: int = 6, **kwargs) -> None:
        self.num_pred_layer = num_pred_layer
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        fc_cls = Linear(self.embed_dims, self.cls_out_channels)
        fc_reg = MLP(self.embed_dims, self.embed_dims, 4, self.num_reg_fcs + 1)
        self.cls_branches = nn.ModuleList(
            copy.deepcopy(fc_cls) for _ in range(self.num_pred_layer))
        self.reg_branches = nn.ModuleList(
            copy.deepcopy(fc_reg) for _ in range(self.num_pred_layer))

    def init_weights(self) -> None:
        """Class bias at prior 0.01, last box layer zero; same across
        layers (the official deep copies)."""
        bias_init = bias_init_with_prob(0.01)
        for layer_id, (fc_cls, fc_reg) in enumerate(
                zip(self.cls_branches, self.reg_branches)):
            if layer_id == 0:
                if self.loss_cls.use_sigmoid:
                    nn.init.constant_(fc_cls.bias, bias_init)
                constant_init(fc_reg.layers[-1], 0., bias=0.)
            else:
                fc_cls.load_state_dict(self.cls_branches[0].state_dict())
                fc_reg.load_state_dict(self.reg_branches[0].state_dict())

    def forward(self,
                hidden_states: Tensor,
                references: Tensor,
                salient_points: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor]:
        """Class scores and boxes of the last ``L`` decoder layers.

        Args:
            hidden_states (Tensor): (L, bs, nq, d); the last ``L`` layers of
                the decoder (``L`` may be 1 for prediction).
            references (Tensor): Reference boxes those layers read (sigmoid
                cxcywh), (L, bs, nq, 4).
            salient_points (Tensor, optional): Unused here.

        Returns:
            tuple[Tensor]: scores (L, bs, nq, cls_out_channels) and boxes
            (L, bs, nq, 4) as normalized (cx, cy, w, h).
        """
        num_layers = hidden_states.size(0)
        first = self.num_pred_layer - num_layers
        if first < 0:
            raise ValueError(f'{num_layers} decoder layers for a head built '
                             f'with num_pred_layer={self.num_pred_layer}')
        scores, boxes = [], []
        for i in range(num_layers):
            scores.append(self.cls_branches[first + i](hidden_states[i]))
            delta = self.reg_branches[first + i](hidden_states[i])
            boxes.append((delta + inverse_sigmoid(references[i])).sigmoid())
        return torch.stack(scores), torch.stack(boxes)

    def loss(self,
             hidden_states: Tensor,
             references: Tensor,
             batch_data_samples: SampleList,
             salient_points: Optional[Tensor] = None) -> dict:
        """See :meth:`DETRHead.loss`; ``salient_points`` is unused."""
        return super().loss(hidden_states, references, batch_data_samples)

    def loss_and_predict(self,
                         hidden_states: Tensor,
                         references: Tensor,
                         batch_data_samples: SampleList,
                         salient_points: Optional[Tensor] = None):
        return super().loss_and_predict(hidden_states, references,
                                        batch_data_samples)

    def predict(self,
                hidden_states: Tensor,
                references: Tensor,
                batch_data_samples: SampleList,
                salient_points: Optional[Tensor] = None,
                rescale: bool = True) -> InstanceList:
        """Predict from the last layer; attach salient points.

        Returns:
            list[InstanceData]: ``bboxes``, ``scores``, ``labels`` and, when
            ``salient_points`` (L, bs, nq, M, 2) is given,
            ``salient_points`` (k, M, 2) in the same pixel frame as the
            boxes (input image, or original image with ``rescale``).
        """
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        cls_scores, bbox_preds = self(hidden_states[-1:], references[-1:])
        results = self.predict_by_feat(
            cls_scores, bbox_preds, batch_img_metas, rescale=rescale)
        if salient_points is None:
            return results
        for img_id, (result, meta) in enumerate(zip(results,
                                                    batch_img_metas)):
            query_index = self._query_index(cls_scores[-1, img_id])
            points = salient_points[-1, img_id, query_index]
            img_h, img_w = meta['img_shape']
            points = points * points.new_tensor([img_w, img_h])
            if rescale:
                points = points / points.new_tensor(meta['scale_factor'])
            result.salient_points = points
        return results

    def _query_index(self, cls_score: Tensor) -> Tensor:
        """Query of each detection, in the order of
        ``_predict_by_feat_single`` (same top-k)."""
        max_per_img = self.test_cfg.get('max_per_img', len(cls_score))
        if self.loss_cls.use_sigmoid:
            _, index = cls_score.sigmoid().view(-1).topk(max_per_img)
            return torch.div(
                index, self.num_classes, rounding_mode='floor')
        _, index = cls_score.softmax(-1)[..., :-1].max(-1)[0].topk(
            max_per_img)
        return index
