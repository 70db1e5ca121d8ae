# The 12-epoch model trained for 50 epochs (lr drop after epoch 40); the
# multi-scale input projection keeps its GroupNorm (as the official code).
_base_ = './sam-detr-pp-smca-dn_r50_8xb2-12e_coco.py'

train_cfg = dict(max_epochs=50)
param_scheduler = [dict(type='MultiStepLR', end=50, milestones=[40])]
