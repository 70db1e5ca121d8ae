#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""mmdet's own `tools/test.py` (from the installed mmdet), for users without
an mmdetection checkout. Same arguments; see `--help`."""
from mmdet_tool import run

if __name__ == '__main__':
    run('test.py')
