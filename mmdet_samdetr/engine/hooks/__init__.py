# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .non_finite_check_hook import NonFiniteCheckHook, NonFiniteTrainingError
from .rng_state_hook import RNGStateHook, get_rng_state, set_rng_state

__all__ = [
    'NonFiniteCheckHook', 'NonFiniteTrainingError', 'RNGStateHook',
    'get_rng_state', 'set_rng_state'
]
