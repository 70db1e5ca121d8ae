# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .align_loss import AlignLoss

__all__ = ['AlignLoss']
