# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .sam_detr_head import SAMDETRHead

__all__ = ['SAMDETRHead']
