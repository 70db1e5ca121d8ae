# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .non_finite_check_hook import NonFiniteCheckHook, NonFiniteTrainingError

__all__ = ['NonFiniteCheckHook', 'NonFiniteTrainingError']
