# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR family for MMDetection 3.x.

Importing this package registers its modules and nothing else: the
detectors, decoder layers, heads, losses, assigners and backbone in mmdet's
registries, and the runners, hooks and train loop of
:mod:`mmdet_samdetr.engine` in mmengine's. The configs switch those on
(``configs/_base_/default_runtime.py``); nothing process-wide changes on
import.

It first checks the installed torch, mmcv (with its compiled ops), mmengine
and mmdet against the supported ranges (:mod:`mmdet_samdetr.stack`) and
raises ``ImportError`` naming the package, the version found and the range
needed.
"""
from .stack import check_stack

check_stack()

from . import engine, models  # noqa: E402,F401

__version__ = '0.1.0'
