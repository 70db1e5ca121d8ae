# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .align_detr import AlignDETR
from .sam_detr import SAMDETR
from .sam_detr_mixin import SAMDETRMixin
from .sam_detr_plus_plus import SAMDETRPlusPlus

__all__ = ['AlignDETR', 'SAMDETR', 'SAMDETRMixin', 'SAMDETRPlusPlus']
