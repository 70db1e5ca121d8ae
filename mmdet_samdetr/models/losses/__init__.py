# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .align_loss import AlignLoss, align_quality
from .float32 import force_float32, to_float32

__all__ = ['AlignLoss', 'align_quality', 'force_float32', 'to_float32']
