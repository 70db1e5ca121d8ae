# The toy Align-SAM-DETR++ at 256-d, the width mmdet's toy DINO is
# forced to: its equal-width pair in the convergence benchmark
# (docs/convergence.md). Only the transformer width changes.
_base_ = './align-sam-detr-pp_r18_1xb8-toy-shapes.py'

model = _base_.toy_width_256
