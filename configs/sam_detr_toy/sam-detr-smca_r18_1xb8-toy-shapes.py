# Toy SAM-DETR with SMCA (the Gaussian-weighted cross-attention of the
# official "SAM-DETR w/ SMCA" models), with the budget of
# sam-detr_r18_1xb8-toy-shapes.py (the convergence benchmark,
# docs/convergence.md).
_base_ = './sam-detr_r18_1xb8-toy-shapes.py'

model = dict(decoder=dict(layer_cfg=dict(with_smca=True)))
