# SAM-DETR w/ SMCA, ResNet-50, 50 epochs (official: 41.8 AP).
_base_ = './sam-detr_r50_4xb4-50e_coco.py'

model = dict(decoder=dict(layer_cfg=dict(with_smca=True)))
