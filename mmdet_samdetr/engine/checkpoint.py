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
(``torch.serialization.safe_globals`` is missing). There the file is read
by a restricted unpickler instead (Python's restricted-``find_class``
recipe, given to ``torch.load`` as its ``pickle_module``), which finds
exactly torch's own weights-only globals and
:data:`RUNNER_CHECKPOINT_GLOBALS` and refuses anything else in the same
way.

A checkpoint that needs more (a full pickle) loads only if you opt in for
that file, by listing its path in the environment variable
``MMDET_SAMDETR_TRUSTED_CHECKPOINTS`` (paths separated by ``os.pathsep``).
A full pickle can run any code when it is loaded: opt in only for files you
trust.
"""
import _compat_pickle
import codecs
import collections
import contextlib
import os
import os.path as osp
import pickle
import types
import zipfile
from typing import Dict, Iterable

import numpy as np
import torch
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


class NotACheckpointError(ValueError):
    """The file is not one that ``torch.save`` writes (a web page, a
    truncated download, another format)."""


def check_is_torch_file(filename: str) -> None:
    """Refuse a file that ``torch.save`` did not write, before unpickling.

    ``torch.save`` writes a zip archive (or, in its legacy format, a pickle,
    which starts with the byte 0x80).

    Raises:
        NotACheckpointError: Naming the file and what it looks like: an HTML
            page (a download link's page saved instead of the file), an
            incomplete zip archive (a truncated download), an empty file, or
            its first bytes.
    """
    if zipfile.is_zipfile(filename):
        return
    with open(filename, 'rb') as f:
        head = f.read(32)
    if head[:1] == b'\x80':
        return
    if head.lstrip().lower().startswith((b'<!doctype html', b'<html')):
        what = ('an HTML page (the page of a download link, not the file: '
                'download the file itself)')
    elif head[:2] == b'PK':
        what = 'an incomplete zip archive (a truncated download?)'
    elif not head:
        what = 'empty'
    else:
        what = f'it starts with {head[:16]!r}'
    raise NotACheckpointError(
        f'{filename} is not a checkpoint written by torch.save: {what}')


# torch >= 2.5: extra globals allowed in weights_only loads inside a block
HAS_SAFE_GLOBALS = hasattr(torch.serialization, 'safe_globals')


# what allowed_globals allows on torch < 2.5 (read by the restricted
# unpickler)
_EXTRA_GLOBALS: list = []


@contextlib.contextmanager
def allowed_globals(extra: Iterable):
    """Context manager: ``extra`` globals (objects, or ``(object,
    'module.name')``) allowed in the checkpoint loads inside the block:
    ``torch.serialization.safe_globals`` on torch >= 2.5, the restricted
    unpickler's allow-list (:func:`restricted_pickle_module`) before."""
    extra = list(extra)
    if HAS_SAFE_GLOBALS:
        with torch.serialization.safe_globals(extra):
            yield
        return
    _EXTRA_GLOBALS.append(extra)
    try:
        yield
    finally:
        _EXTRA_GLOBALS.remove(extra)


def _trusted(filename: str) -> bool:
    listed = os.environ.get(TRUSTED_ENV, '')
    real = osp.realpath(filename)
    return any(
        osp.realpath(osp.expanduser(path)) == real
        for path in listed.split(os.pathsep) if path)


def _unpickler_reason(err: Exception) -> str:
    """What torch's weights-only unpickler refused, without its advice (to
    load with ``weights_only=False`` or to allow the global for the whole
    process, which this loader does not offer) and documentation links."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    boilerplate = ('Weights only load failed', 'Check the documentation',
                   'Please file an issue', '(1)', '(2)')
    kept = [
        line.replace('WeightsUnpickler error: ', '').split(
            ' Please use `torch.serialization')[0] for line in lines
        if not line.startswith(boilerplate)
    ]
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
        NotACheckpointError: The file is not one ``torch.save`` writes
            (:func:`check_is_torch_file`).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    check_is_torch_file(filename)
    if _trusted(filename):
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    if HAS_SAFE_GLOBALS:
        context = allowed_globals(RUNNER_CHECKPOINT_GLOBALS)
        options = dict(weights_only=True)
    else:  # torch < 2.5
        context = contextlib.nullcontext()
        options = dict(weights_only=False,
                       pickle_module=restricted_pickle_module())
    with context:
        try:
            return torch.load(filename, map_location=map_location, **options)
        except pickle.UnpicklingError as err:
            reason = _unpickler_reason(err)
    raise UntrustedCheckpointError(
        f'refused to load {filename}: it asks for objects that a model '
        f'checkpoint does not contain ({reason}). Loading it fully could '
        'run arbitrary code; if you trust this file, list it in the '
        f'environment variable {TRUSTED_ENV}.')


def _global_names(entries: Iterable) -> Dict[str, object]:
    """``{'module.qualname': object}`` of entries given as torch's
    ``safe_globals`` takes them: objects, or ``(object, 'module.name')``."""
    names = {}
    for entry in entries:
        obj, name = entry if isinstance(entry, tuple) else (
            entry, f'{entry.__module__}.{entry.__qualname__}')
        names[name] = obj
    return names


def restricted_pickle_module() -> types.SimpleNamespace:
    """A ``pickle_module`` for ``torch.load`` whose unpickler finds only
    torch's weights-only globals and :data:`RUNNER_CHECKPOINT_GLOBALS`.

    For torch < 2.5, which has no ``safe_globals``: ``torch.load(...,
    weights_only=False, pickle_module=restricted_pickle_module())`` reads a
    Runner checkpoint and refuses, with ``pickle.UnpicklingError`` and
    before calling it, any other global (``os.system``, ``getattr`` of
    anything but a ``HistoryBuffer`` statistic, ...). Every callable a
    pickle can call comes from ``find_class``, so restricting it restricts
    the whole file.
    """
    from torch._weights_only_unpickler import _get_allowed_globals
    allowed = dict(_get_allowed_globals())
    # what newer torch allows by default and torch 2.1's list lacks: bytes
    # in protocol-2 pickles (numpy arrays), plain containers (mmengine's
    # checkpoints hold a Counter), every dtype
    allowed.update({
        '_codecs.encode': codecs.encode,
        'collections.Counter': collections.Counter,
        'builtins.set': set,
        'builtins.frozenset': frozenset,
        'builtins.complex': complex,
        'builtins.bytearray': bytearray,
    })
    allowed.update({
        str(dtype): dtype
        for dtype in vars(torch).values() if isinstance(dtype, torch.dtype)
    })
    allowed.update(_global_names(RUNNER_CHECKPOINT_GLOBALS))
    for extra in _EXTRA_GLOBALS:
        allowed.update(_global_names(extra))

    class RestrictedUnpickler(pickle.Unpickler):

        def find_class(self, module: str, name: str):
            # torch.save's protocol 2 names Python 2's modules (__builtin__)
            module, name = _compat_pickle.NAME_MAPPING.get(
                (module, name), (_compat_pickle.IMPORT_MAPPING.get(
                    module, module), name))
            full_name = f'{module}.{name}'
            if full_name not in allowed:
                raise pickle.UnpicklingError(
                    f'Unsupported global: GLOBAL {full_name}')
            return allowed[full_name]

    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()

    return types.SimpleNamespace(
        __name__='restricted_pickle', Unpickler=RestrictedUnpickler,
        load=load)


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
