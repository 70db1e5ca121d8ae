# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align-DETR's training targets on the SAM-DETR head."""
from mmdet.registry import MODELS

from .align_detr_head import AlignDETRMixin
from .sam_detr_head import SAMDETRHead


@MODELS.register_module()
class AlignSAMDETRHead(AlignDETRMixin, SAMDETRHead):
    """:class:`SAMDETRHead` trained with Align-DETR's mixed matching and
    Align Loss (:class:`AlignDETRMixin`).

    SAM-DETR has no encoder output, so ``all_layers_num_gt_repeat`` has one
    k per decoder layer (default ``[2, ..., 2, 1]``); the denoising queries
    (the detector's ``dn_cfg``) get the soft target without rank weights.
    Forward and prediction (with salient points) are
    :class:`SAMDETRHead`'s.
    """
