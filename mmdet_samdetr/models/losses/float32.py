# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Losses, matching and targets in float32 under mixed precision."""
import functools
from typing import Any, Callable

import torch
from mmengine.structures import BaseDataElement
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def to_float32(data: Any) -> Any:
    """``data`` with every float16 / bfloat16 tensor cast to float32.

    Casts inside lists, tuples, dicts and data elements
    (:class:`InstanceData`) too. The cast is differentiable: gradients flow
    back in the tensor's own dtype. Everything else (float32, float64 and
    integer tensors, other objects) is returned as it is, the same object,
    so float32 inputs give exactly float32's results.
    """
    if isinstance(data, Tensor):
        return data.float() if data.dtype in LOW_PRECISION else data
    if isinstance(data, BaseDataElement):
        cast = {key: to_float32(value) for key, value in data.items()}
        if all(cast[key] is value for key, value in data.items()):
            return data
        return data.new(**cast)
    if type(data) in (list, tuple):
        return type(data)(to_float32(item) for item in data)
    if type(data) is dict:
        return {key: to_float32(value) for key, value in data.items()}
    return data


def force_float32(func: Callable) -> Callable:
    """Decorator: ``func`` runs in float32 under mixed precision.

    Its float16 / bfloat16 tensor arguments are cast to float32
    (:func:`to_float32`) and CPU and CUDA autocast are disabled inside, so
    every op in it, matrix products included, computes in float32. For the
    losses, matching costs and targets of DETR heads: in float16, sigmoid
    focal terms overflow (:math:`\\log(1-p)` of a logit above ~8 is
    :math:`\\log 0`; mmcv's CUDA focal loss clamps at ``FLT_MIN``, which is 0
    in float16), the IoU of small boxes loses its digits, and targets
    computed from float32 ground truth cannot be written into low-precision
    tensors. Gradients reach the low-precision predictions through the
    cast. Outside autocast and with float32 inputs it changes nothing (the
    role of mmcv 1.x's ``force_fp32``, which mmcv 2 no longer has).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with torch.autocast('cpu', enabled=False), \
                torch.autocast('cuda', enabled=False):
            return func(*to_float32(args), **to_float32(kwargs))

    return wrapper
