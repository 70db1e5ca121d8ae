# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align-DETR on mmdet's DINO, with the ground-truth labels checked."""
from typing import Dict

from mmdet.models.detectors import DINO
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor

from ..utils import check_gt_labels


@MODELS.register_module()
class AlignDETR(DINO):
    """mmdet's :class:`DINO` (same arguments, modules and state-dict keys)
    with the ground-truth labels checked (:func:`check_gt_labels`) before
    mmdet's denoising queries index their label embedding with them; the
    Align-DETR training targets are the head's
    (:class:`AlignDETRHead`).
    """

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """:meth:`DINO.loss` after :func:`check_gt_labels`.

        Raises:
            ValueError: A ground-truth label outside ``[0, num_classes)``,
                naming the image, the bad values and ``num_classes``.
        """
        check_gt_labels(batch_data_samples, self.bbox_head.num_classes)
        return super().loss(batch_inputs, batch_data_samples)
