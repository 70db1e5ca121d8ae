# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .sam_detr_inferencer import SAMDETRInferencer

__all__ = ['SAMDETRInferencer']
