# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .checkpoint import (RUNNER_CHECKPOINT_GLOBALS, UntrustedCheckpointError,
                         load_from_local_safely)
from .hooks import NonFiniteCheckHook, NonFiniteTrainingError
from .runner import CPUDDPRunner

__all__ = [
    'CPUDDPRunner', 'NonFiniteCheckHook', 'NonFiniteTrainingError',
    'RUNNER_CHECKPOINT_GLOBALS', 'UntrustedCheckpointError',
    'load_from_local_safely'
]
