# mmdet's toy DAB-DETR (./dab-detr_r18_1xb8-toy-shapes.py) at 256-d, the
# width of the toy Conditional DETR: tells the width's share in DAB-DETR's
# toy result. Only the transformer width changes.
# A baseline of the convergence benchmark (docs/convergence.md).
_base_ = './dab-detr_r18_1xb8-toy-shapes.py'

model = _base_.toy_width_256
