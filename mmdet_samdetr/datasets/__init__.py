# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .toy_shapes import CLASSES as TOY_CLASSES
from .toy_shapes import generate_toy_dataset

__all__ = ['TOY_CLASSES', 'generate_toy_dataset']
