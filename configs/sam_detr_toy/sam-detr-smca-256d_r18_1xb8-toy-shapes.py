# The toy SAM-DETR with SMCA at 256-d, the width mmdet's toy Conditional
# DETR is forced to: its equal-width pair in the convergence benchmark
# (docs/convergence.md). Only the transformer width changes.
_base_ = './sam-detr-smca_r18_1xb8-toy-shapes.py'

model = _base_.toy_width_256
