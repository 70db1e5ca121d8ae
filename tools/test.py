#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""mmdet's own `tools/test.py` (from the installed mmdet), for users without
an mmdetection checkout. Same arguments; see `--help`."""
import os.path as osp
import runpy
import sys

import mmdet

if __name__ == '__main__':
    # make `mmdet_samdetr` importable from a source checkout as well
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')
    sys.argv[0] = tool
    runpy.run_path(tool, run_name='__main__')
