# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Load Runner checkpoints with ``torch.load(weights_only=True)``.

A checkpoint written by mmengine's Runner pickles its ``message_hub``
(``HistoryBuffer`` objects holding numpy arrays and references to their
statistics methods), which ``torch.load`` refuses by default since torch
2.6, so ``--resume``, ``load_from``, ``tools/test.py`` and mmdet's
``DetInferencer`` fail with ``UnpicklingError``.
:func:`load_from_local_safely` keeps ``weights_only=True`` and allows
exactly the extra globals such a checkpoint contains
(:data:`RUNNER_CHECKPOINT_GLOBALS`), only while it loads. Anything else is
refused before it runs, with a message naming the file and what it asked
for.

Importing the package changes nothing in mmengine: the context manager
:func:`safe_checkpoint_loading` makes :func:`load_from_local_safely`
mmengine's loader of local files while it runs, and puts the previous
loader back afterwards. :class:`~mmdet_samdetr.engine.SafeLoadingRunner`
(the ``runner_type`` of ``configs/_base_/default_runtime.py``),
:class:`~mmdet_samdetr.apis.SAMDETRInferencer` and the tools that load
checkpoints (``tools/infer.py``, ``tools/export_onnx.py``,
``tools/visualize_salient_points.py``) load inside it.

torch < 2.5 cannot allow extra globals in a ``weights_only`` load
(``torch.serialization.safe_globals`` is missing): there, a file that does
not load with ``weights_only=True`` (a Runner checkpoint) loads as that
torch and mmengine load it by default, as a full pickle, with a warning
naming the file; plain weight files still load with ``weights_only=True``.
Use torch >= 2.5 to have files that ask for more refused.

A checkpoint that needs more (a full pickle) loads only if you opt in for
that file, by listing its path in the environment variable
``MMDET_SAMDETR_TRUSTED_CHECKPOINTS`` (paths separated by ``os.pathsep``).
A full pickle can run any code when it is loaded: opt in only for files you
trust.
"""
import contextlib
import logging
import os
import os.path as osp
import pickle
from typing import Iterable

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader

TRUSTED_ENV = 'MMDET_SAMDETR_TRUSTED_CHECKPOINTS'
_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(owner, name: str):
    """Stands in for ``builtins.getattr`` while a checkpoint unpickles.

    ``HistoryBuffer`` pickles its statistics methods as
    ``getattr(HistoryBuffer, 'min')`` and so on; this allows those four
    lookups and nothing else.
    """
    if owner is HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not a HistoryBuffer statistic')


def _numpy_reconstructors():
    """numpy's array and scalar reconstructors under the names numpy 2
    (``numpy._core``) and numpy 1 (``numpy.core``) pickle them with."""
    from numpy._core import multiarray
    return [(fn, f'{package}.multiarray.{fn.__name__}')
            for fn in (multiarray._reconstruct, multiarray.scalar)
            for package in ('numpy._core', 'numpy.core')]


#: numpy's dtype classes of booleans and numbers (an array's or scalar's
#: dtype is rebuilt with one of them)
NUMPY_DTYPE_CLASSES = sorted({
    type(np.dtype(code))
    for code in '?bhilqBHILQefdgFDG'
}, key=lambda cls: cls.__name__)

#: The globals of a Runner checkpoint beyond torch's default allow-list.
RUNNER_CHECKPOINT_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_statistic, 'builtins.getattr'),
    np.ndarray,
    np.dtype,
    *NUMPY_DTYPE_CLASSES,
    *_numpy_reconstructors(),
]


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint asks for objects outside the allow-list."""


# torch >= 2.5: extra globals allowed in weights_only loads inside a block
HAS_SAFE_GLOBALS = hasattr(torch.serialization, 'safe_globals')


def allowed_globals(extra: Iterable):
    """Context manager: ``extra`` globals allowed in ``weights_only`` loads
    inside the block (``torch.serialization.safe_globals``); on torch < 2.5,
    which cannot allow any, it allows nothing."""
    if HAS_SAFE_GLOBALS:
        return torch.serialization.safe_globals(list(extra))
    return contextlib.nullcontext()


def _trusted(filename: str) -> bool:
    listed = os.environ.get(TRUSTED_ENV, '')
    real = osp.realpath(filename)
    return any(
        osp.realpath(osp.expanduser(path)) == real
        for path in listed.split(os.pathsep) if path)


def _unpickler_reason(err: Exception) -> str:
    """What torch's weights-only unpickler refused, without its boilerplate
    (the first line, about torch 2.6, and the last, a documentation link)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    boilerplate = ('Weights only load failed', 'Check the documentation',
                   'Please file an issue')
    kept = [line for line in lines if not line.startswith(boilerplate)]
    return ' '.join(kept) or type(err).__name__


def load_from_local_safely(filename: str, map_location=None):
    """mmengine's local-file loader, with ``weights_only=True`` and the
    Runner's globals allowed.

    Args:
        filename (str): Path of the checkpoint (``~`` is expanded).
        map_location: Same as :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        UntrustedCheckpointError: The file needs globals outside
            :data:`RUNNER_CHECKPOINT_GLOBALS` (nothing of it has run).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    if _trusted(filename):
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    with allowed_globals(RUNNER_CHECKPOINT_GLOBALS):
        try:
            return torch.load(
                filename, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            reason = _unpickler_reason(err)
    if not HAS_SAFE_GLOBALS:
        print_log(
            f'{filename} does not load with weights_only=True on torch '
            f'{torch.__version__}, which cannot allow the globals of a '
            f'Runner checkpoint ({reason}); loading it as a full pickle, as '
            'this torch and mmengine do by default. With torch >= 2.5 a '
            'file that asks for more than a Runner checkpoint is refused.',
            logger='current', level=logging.WARNING)
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    raise UntrustedCheckpointError(
        f'refused to load {filename}: it asks for objects that a model '
        f'checkpoint does not contain ({reason}). Loading it fully could '
        'run arbitrary code; if you trust this file, list it in the '
        f'environment variable {TRUSTED_ENV}.')


@contextlib.contextmanager
def safe_checkpoint_loading():
    """Load local checkpoints with :func:`load_from_local_safely` inside
    the ``with`` block.

    mmengine's ``CheckpointLoader`` picks a loader by the path's prefix;
    local files have the prefix ``''``. On entry this registers
    :func:`load_from_local_safely` for it, on exit (also on an error) the
    loader registered before, so nesting and other packages' loaders are
    left as they were. Every mmengine call that reads a local checkpoint
    (``Runner.load_checkpoint`` and ``resume``, ``load_checkpoint``,
    mmdet's ``init_detector`` and ``DetInferencer``) goes through it; URLs
    (``torchvision://``, ``http://``, ...) keep their own loaders.

    Example:
        >>> from mmdet.apis import init_detector
        >>> with safe_checkpoint_loading():
        ...     model = init_detector(CONFIG, 'work_dirs/epoch_12.pth')
    """
    previous = CheckpointLoader._schemes.get('')
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safely, force=True)
    try:
        yield
    finally:
        if previous is None:
            CheckpointLoader._schemes.pop('', None)
        else:
            CheckpointLoader.register_scheme(
                prefixes='', loader=previous, force=True)
