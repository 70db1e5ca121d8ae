# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .attention_maps import collect_attention
from .sam_detr_inferencer import SAMDETRInferencer

__all__ = ['SAMDETRInferencer', 'collect_attention']
