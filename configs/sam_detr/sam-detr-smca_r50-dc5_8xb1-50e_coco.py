# SAM-DETR w/ SMCA, ResNet-50-DC5, 50 epochs (official: 45.0 AP).
_base_ = './sam-detr_r50-dc5_8xb1-50e_coco.py'

model = dict(decoder=dict(layer_cfg=dict(with_smca=True)))
