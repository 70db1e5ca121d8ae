# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The versions of torch and the OpenMMLab stack that mmdet_samdetr runs on.

:func:`check_stack` runs first when the package is imported and raises
``ImportError`` at once, naming the package, the version found (and where)
and the range needed, instead of a failure deep inside a training run: torch
below the floor, mmcv outside its range (mmcv 2.2 is refused by mmdet 3.3)
or built without its compiled ops (``mmcv-lite``, or a source build without
``MMCV_WITH_OPS=1``), compiled ops that do not load with the installed torch,
mmengine or mmdet outside their ranges.

:data:`SUPPORTED` is the one list of these ranges; ``setup.cfg``'s
``install_requires`` states the same (a test keeps the two equal), and both
ends are tested (``make test-stacks``).
"""
import importlib
import importlib.util
import os.path as osp
import re
from typing import Dict, Optional, Tuple

# distribution -> (lowest supported version, first unsupported version)
SUPPORTED: Dict[str, Tuple[str, Optional[str]]] = {
    # 2.1.0a0: NVIDIA's containers ship pre-release builds (2.1.0a0+...),
    # which pip would not count as >=2.1
    'torch': ('2.1.0a0', None),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmcv': ('2.1.0', '2.2.0'),
    'mmdet': ('3.3.0', '3.4.0'),
}


def version_tuple(version: str) -> Tuple[int, int, int]:
    """``'2.1.2+cu121'`` -> ``(2, 1, 2)``: the release numbers of a version
    string (a pre-release such as ``2.2.0rc1`` counts as its release).
    Not mmengine's ``digit_version``: mmengine is itself being checked.

    Raises:
        ValueError: ``version`` does not start with ``major.minor``.
    """
    match = re.match(r'(\d+)\.(\d+)(?:\.(\d+))?', str(version))
    if match is None:
        raise ValueError(f'cannot read a version from {version!r}')
    return tuple(int(part or 0) for part in match.groups())


def specifier(name: str) -> str:
    """``'mmcv'`` -> ``'mmcv>=2.1.0,<2.2.0'``: the requirement of
    :data:`SUPPORTED` as pip writes it."""
    low, high = SUPPORTED[name]
    return f'{name}>={low}' + (f',<{high}' if high else '')


def check_version(name: str, found: str, where: str = '') -> None:
    """Raise ``ImportError`` unless ``found`` is inside ``SUPPORTED[name]``.

    Args:
        name: a key of :data:`SUPPORTED`.
        found: the installed version, e.g. ``mmcv.__version__``.
        where: the installed package's folder, named in the message.
    """
    low, high = SUPPORTED[name]
    version = version_tuple(found)
    if version < version_tuple(low) or (high
                                        and version >= version_tuple(high)):
        at = f' at {where}' if where else ''
        raise ImportError(
            f'mmdet_samdetr needs {specifier(name)}; found {name} '
            f'{found}{at}. Install a version in that range.')


def _folder(module) -> str:
    file = getattr(module, '__file__', None)
    return osp.dirname(file) if file else ''


def check_stack() -> None:
    """Check the installed torch, mmengine, mmcv (with its ops) and mmdet.

    Imports them in that order (mmcv imports mmengine; mmdet 3.3 asserts
    on its own mmcv range at import) and reads, never changes, anything.

    Raises:
        ImportError: a package is missing, outside its range of
            :data:`SUPPORTED`, or mmcv has no compiled ops that load; the
            message names the package, the version found and the range.
    """
    import torch
    check_version('torch', torch.__version__, _folder(torch))
    import mmengine
    check_version('mmengine', mmengine.__version__, _folder(mmengine))
    try:
        import mmcv
    except ImportError as error:
        raise ImportError(f'mmdet_samdetr needs {specifier("mmcv")} with '
                          f'its compiled ops: {error}') from error
    check_version('mmcv', mmcv.__version__, _folder(mmcv))
    if importlib.util.find_spec('mmcv._ext') is None:
        raise ImportError(
            f'mmdet_samdetr needs {specifier("mmcv")} built with its '
            f'compiled ops (mmcv._ext); mmcv {mmcv.__version__} at '
            f'{_folder(mmcv)} has none (mmcv-lite, or a source build without '
            'MMCV_WITH_OPS=1). Install OpenMMLab\'s wheel for your torch and '
            f'CUDA (mim install "{specifier("mmcv")}") or build it '
            f'(MMCV_WITH_OPS=1 pip install --no-binary mmcv '
            f'"{specifier("mmcv")}").')
    try:
        importlib.import_module('mmcv._ext')
    except (ImportError, OSError) as error:
        raise ImportError(
            f'the compiled ops of mmcv {mmcv.__version__} at {_folder(mmcv)} '
            f'do not load with torch {torch.__version__}: {error}. mmcv must '
            'be built for the installed torch (and CUDA).') from error
    try:
        import mmdet
    except AssertionError as error:  # mmdet's own check of mmcv / mmengine
        raise ImportError(f'mmdet refuses this stack: {error}') from error
    check_version('mmdet', mmdet.__version__, _folder(mmdet))
