# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Run one of the installed mmdet's own tools (``mmdet/.mim/tools``)."""
import os.path as osp
import runpy
import sys

import mmdet


def run(name: str) -> None:
    """Execute ``mmdet/.mim/tools/<name>`` as ``__main__`` with our argv,
    with this checkout importable (``custom_imports`` of our configs)."""
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', name)
    sys.argv[0] = tool
    runpy.run_path(tool, run_name='__main__')
