# SAM-DETR on the embedded toy-shapes dataset (96x96 images, 5 classes):
# trains on 2 CPU cores in about 15 minutes (`make demo`). Same code path as
# the COCO models, scaled down: a half-width ResNet-18 (3 stages, layer3
# dilated: stride 8), 128-d transformer, 2 encoder / 3 decoder layers, 30
# queries, no dropout (as SAM-DETR++).
# The data, backbone and schedule are configs/_base_/toy_shapes.py's, shared
# with mmdet's DETRs in configs/sam_detr_toy/baselines/.
#
# Like the COCO models start from ImageNet, the backbone starts from a local
# checkpoint pretrained for about a minute as a classifier of object crops of
# the training split (no download): `python demo/make_toy_dataset.py` writes
# both the data and `backbone_crops.pth`. From scratch, DETR-style training
# does not get off the ground in 15 minutes.
_base_ = [
    '../sam_detr/sam-detr_r50_4xb4-50e_coco.py', '../_base_/toy_shapes.py'
]

# SafeLoadingRunner plus distributed training on CPU-only machines (gloo);
# on GPUs it is SafeLoadingRunner (NCCL)
runner_type = 'CPUDDPRunner'

data_root = _base_.toy_data_root
classes = _base_.toy_classes
embed_dims = 128

model = dict(
    num_queries=30,
    data_preprocessor=dict(pad_size_divisor=1),
    backbone=_base_.toy_backbone,
    neck=dict(
        in_channels=[128],
        out_channels=embed_dims,
        norm_cfg=dict(_delete_=True, type='GN', num_groups=32)),
    positional_encoding=dict(num_feats=embed_dims // 2),
    encoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims, feedforward_channels=512,
                ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, attn_drop=0.0, proj_drop=0.0),
            cross_attn_cfg=dict(embed_dims=embed_dims, attn_drop=0.0),
            aligner_cfg=dict(reduced_dims=32, mlp_dims=(256, 256, 256)),
            ffn_cfg=dict(
                embed_dims=embed_dims, feedforward_channels=512,
                ffn_drop=0.0),
            dropout=0.0)),
    bbox_head=dict(num_classes=len(classes), embed_dims=embed_dims),
    test_cfg=dict(max_per_img=30))

train_pipeline = _base_.toy_train_pipeline
test_pipeline = _base_.toy_test_pipeline
train_dataloader = _base_.toy_train_dataloader
val_dataloader = _base_.toy_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.toy_val_evaluator
test_evaluator = val_evaluator
max_epochs = _base_.toy_max_epochs
train_cfg = _base_.toy_train_cfg
param_scheduler = _base_.toy_param_scheduler
optim_wrapper = _base_.toy_optim_wrapper
default_hooks = _base_.toy_default_hooks
auto_scale_lr = _base_.toy_auto_scale_lr
