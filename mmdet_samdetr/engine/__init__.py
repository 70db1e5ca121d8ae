# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Runners, hooks and a train loop for mmengine, switched on by the configs
(``configs/_base_/default_runtime.py``), and safe checkpoint loading."""
from .checkpoint import (RUNNER_CHECKPOINT_GLOBALS, NotACheckpointError,
                         UntrustedCheckpointError, allowed_globals,
                         load_from_local_safely, safe_checkpoint_loading)
from .hooks import NonFiniteCheckHook, NonFiniteTrainingError, RNGStateHook
from .loops import ResumableEpochBasedTrainLoop
from .runner import CPUDDPRunner, SafeLoadingRunner

__all__ = [
    'CPUDDPRunner', 'SafeLoadingRunner', 'NonFiniteCheckHook',
    'NonFiniteTrainingError', 'RNGStateHook', 'ResumableEpochBasedTrainLoop',
    'RUNNER_CHECKPOINT_GLOBALS', 'NotACheckpointError',
    'UntrustedCheckpointError',
    'allowed_globals', 'load_from_local_safely', 'safe_checkpoint_loading'
]
