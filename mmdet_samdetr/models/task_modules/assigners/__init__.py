# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .mixed_hungarian_assigner import MixedHungarianAssigner

__all__ = ['MixedHungarianAssigner']
