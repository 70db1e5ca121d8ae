# SAM-DETR w/ SMCA, ResNet-50-DC5, 12 epochs (official: 40.6 AP).
_base_ = './sam-detr_r50-dc5_8xb1-12e_coco.py'

model = dict(decoder=dict(layer_cfg=dict(with_smca=True)))
