# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Align-DETR's losses on the SAM-DETR head."""
from mmdet.registry import MODELS

from .align_detr_head import AlignDETRHead
from .sam_detr_head import SAMDETRHead


@MODELS.register_module()
class AlignSAMDETRHead(AlignDETRHead, SAMDETRHead):
    """:class:`SAMDETRHead` trained with Align-DETR's mixed matching and
    Align Loss (see :class:`AlignDETRHead`).

    SAM-DETR has no encoder output, so ``all_layers_num_gt_repeat`` has one
    k per decoder layer (default ``[2, ..., 2, 1]``); the denoising branch
    (``dn_cfg``) gets the soft target without rank weights. Forward and
    prediction (with salient points) are :class:`SAMDETRHead`'s.
    """
