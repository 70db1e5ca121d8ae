# SAM-DETR++ w/ SMCA, ResNet-50, 12 epochs (journal: 43.2 AP; official
# `--multiscale --smca` with dropout 0.1: 42.8 AP).
_base_ = './sam-detr-pp_r50_8xb2-12e_coco.py'

model = dict(decoder=dict(layer_cfg=dict(with_smca=True)))
