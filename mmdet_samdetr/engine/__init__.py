# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .checkpoint import load_trusted_local_checkpoint
from .runner import CPUDDPRunner

__all__ = ['CPUDDPRunner', 'load_trusted_local_checkpoint']
