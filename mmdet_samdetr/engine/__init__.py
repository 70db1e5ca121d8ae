# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .checkpoint import (RUNNER_CHECKPOINT_GLOBALS, UntrustedCheckpointError,
                         load_from_local_safely)
from .runner import CPUDDPRunner

__all__ = [
    'CPUDDPRunner', 'RUNNER_CHECKPOINT_GLOBALS', 'UntrustedCheckpointError',
    'load_from_local_safely'
]
