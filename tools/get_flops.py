#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""mmdet's own `tools/analysis_tools/get_flops.py` (from the installed
mmdet), for users without an mmdetection checkout. Same arguments; see
`--help`. `benchmarks/model_zoo_stats.py` runs it at 800x1333
without COCO."""
from mmdet_tool import run

if __name__ == '__main__':
    run('analysis_tools/get_flops.py')
