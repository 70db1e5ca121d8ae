# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .sam_detr import SAMDETR

__all__ = ['SAMDETR']
