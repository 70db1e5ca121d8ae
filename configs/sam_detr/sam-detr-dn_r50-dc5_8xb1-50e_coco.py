# The 12-epoch model trained for 50 epochs (lr drop after epoch 40).
_base_ = './sam-detr-dn_r50-dc5_8xb1-12e_coco.py'

# The official code adds GroupNorm to the input projection only when
# --epochs < 25.
model = dict(neck=dict(norm_cfg=None))

train_cfg = dict(max_epochs=50)
param_scheduler = [dict(type='MultiStepLR', end=50, milestones=[40])]
