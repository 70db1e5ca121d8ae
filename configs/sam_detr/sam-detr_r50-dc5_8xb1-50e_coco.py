# SAM-DETR, ResNet-50-DC5, 50 epochs (official: 43.3 AP).
_base_ = './sam-detr_r50_4xb4-50e_coco.py'

# C5 at stride 16: layer4 dilated, torchvision's dilation rule.
model = dict(
    backbone=dict(
        type='TorchvisionDilatedResNet',
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2)))

# Official: 8 GPUs x 1 image, same learning rate as batch 16.
train_dataloader = dict(batch_size=1)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(base_batch_size=8)
