# SAM-DETR w/ SMCA + DN, ResNet-50-DC5, 12 epochs (journal: 43.7 AP).
_base_ = './sam-detr-dn_r50-dc5_8xb1-12e_coco.py'

model = dict(decoder=dict(layer_cfg=dict(with_smca=True)))
