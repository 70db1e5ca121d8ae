# SAM-DETR on the embedded toy-shapes dataset (96x96 images, 5 classes):
# trains on 2 CPU cores in about 15 minutes (`make demo`). Same code path as
# the COCO models, scaled down: a half-width ResNet-18 (3 stages, layer3
# dilated: stride 8), 128-d transformer, 2 encoder / 3 decoder layers, 30
# queries, no dropout (as SAM-DETR++).
#
# Like the COCO models start from ImageNet, the backbone starts from a local
# checkpoint pretrained for about a minute as a classifier of object crops of
# the training split (no download): `python demo/make_toy_dataset.py` writes
# both the data and `backbone_crops.pth`. From scratch, DETR-style training
# does not get off the ground in 15 minutes.
_base_ = '../sam_detr/sam-detr_r50_4xb4-50e_coco.py'

# SafeLoadingRunner plus distributed training on CPU-only machines (gloo);
# on GPUs it is SafeLoadingRunner (NCCL)
runner_type = 'CPUDDPRunner'

data_root = 'data/toy_shapes/'
classes = ('rectangle', 'ellipse', 'triangle', 'ring', 'cross')
embed_dims = 128

model = dict(
    num_queries=30,
    data_preprocessor=dict(pad_size_divisor=1),
    backbone=dict(
        depth=18,
        base_channels=32,
        num_stages=3,
        strides=(1, 2, 1),
        dilations=(1, 1, 2),
        out_indices=(2, ),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(
            _delete_=True,
            type='Pretrained',
            checkpoint=data_root + 'backbone_crops.pth')),
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

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
loader = dict(batch_size=8, num_workers=1, persistent_workers=True)
dataset = dict(
    _delete_=True,
    type='CocoDataset',
    data_root=data_root,
    metainfo=dict(classes=classes))
train_dataloader = dict(
    **loader,
    dataset=dict(
        **dataset,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    **loader,
    dataset=dict(
        **dataset,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

max_epochs = 14
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
param_scheduler = [
    dict(type='MultiStepLR', end=max_epochs, milestones=[12], by_epoch=True)
]
# The briefly pretrained backbone trains at the full learning rate.
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=2, max_keep_ckpts=2))
auto_scale_lr = dict(enable=False, base_batch_size=8)
