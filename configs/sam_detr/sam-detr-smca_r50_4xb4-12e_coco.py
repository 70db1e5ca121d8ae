# SAM-DETR w/ SMCA, ResNet-50, 12 epochs (official: 36.0 AP).
_base_ = './sam-detr_r50_4xb4-12e_coco.py'

model = dict(decoder=dict(layer_cfg=dict(with_smca=True)))
