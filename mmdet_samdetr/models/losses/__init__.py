# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .align_loss import AlignLoss, align_quality

__all__ = ['AlignLoss', 'align_quality']
