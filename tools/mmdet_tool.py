# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Run one of the installed mmdet's own tools (``mmdet/.mim/tools``)."""
import os.path as osp
import runpy
import sys

import mmdet


def run(name: str) -> None:
    """Execute ``mmdet/.mim/tools/<name>`` as ``__main__`` with our argv.

    The configs import ``mmdet_samdetr`` themselves (``custom_imports``),
    so the package must be installed (``pip install -e .``)."""
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', name)
    sys.argv[0] = tool
    runpy.run_path(tool, run_name='__main__')
