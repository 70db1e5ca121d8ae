# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .align_detr_head import AlignDETRHead, AlignDETRMixin
from .align_sam_detr_head import AlignSAMDETRHead
from .sam_detr_head import SAMDETRHead

__all__ = [
    'AlignDETRHead', 'AlignDETRMixin', 'AlignSAMDETRHead', 'SAMDETRHead'
]
