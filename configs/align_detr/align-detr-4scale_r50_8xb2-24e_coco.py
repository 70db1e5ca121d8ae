# Align-DETR with the Align Loss, 24 epochs (the released AlignDETR-R50-24ep*
# checkpoint: 51.7 AP): detrex's 24-epoch COCO schedule, the learning rate
# dropped after epoch 20, as mmdet's dino-4scale_r50_8xb2-24e.
_base_ = './align-detr-4scale_r50_8xb2-12e_coco.py'

max_epochs = 24
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[20],
        gamma=0.1)
]
