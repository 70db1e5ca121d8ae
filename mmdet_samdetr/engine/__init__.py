# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .checkpoint import (RUNNER_CHECKPOINT_GLOBALS, UntrustedCheckpointError,
                         load_from_local_safely)
from .hooks import NonFiniteCheckHook, NonFiniteTrainingError, RNGStateHook
from .loops import ResumableEpochBasedTrainLoop
from .runner import CPUDDPRunner

__all__ = [
    'CPUDDPRunner', 'NonFiniteCheckHook', 'NonFiniteTrainingError',
    'RNGStateHook', 'ResumableEpochBasedTrainLoop',
    'RUNNER_CHECKPOINT_GLOBALS', 'UntrustedCheckpointError',
    'load_from_local_safely'
]
