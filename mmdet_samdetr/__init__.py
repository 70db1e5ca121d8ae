# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR family for MMDetection 3.x.

Importing this package registers its detector, decoder layers, head and
backbone in mmdet's ``MODELS`` registry, the ``CPUDDPRunner`` in mmengine's
``RUNNERS``, and a checkpoint loader that reads Runner checkpoints under
torch >= 2.6.
"""
from . import datasets, engine, models  # noqa: F401

__version__ = '0.1.0'
