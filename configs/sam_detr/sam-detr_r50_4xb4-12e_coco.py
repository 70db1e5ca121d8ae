# SAM-DETR, ResNet-50, 12 epochs (official r50_e12: 33.1 AP).
_base_ = './sam-detr_r50_4xb4-50e_coco.py'

# The official code adds GroupNorm to the input projection when
# --epochs < 25 (its comment: added "by accident").
model = dict(
    neck=dict(norm_cfg=dict(_delete_=True, type='GN', num_groups=32)))

train_cfg = dict(max_epochs=12)
param_scheduler = [dict(type='MultiStepLR', end=12, milestones=[10])]
