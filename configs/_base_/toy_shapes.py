# The toy-shapes budget shared by every toy config (ours in
# configs/sam_detr_toy/ and mmdet's DETRs in configs/sam_detr_toy/baselines/):
# data, backbone, schedule and optimizer, as variables
# (`train_dataloader = _base_.toy_train_dataloader`; mmengine refuses a key
# that two bases set, and mmdet's bases set these).
#
# 96x96 images, 5 classes (`python demo/make_toy_dataset.py` writes the data
# and `backbone_crops.pth`); a half-width ResNet-18 (3 stages, layer3
# dilated: stride 8) that starts from the checkpoint pretrained for about a
# minute as a classifier of object crops of the training split; batch 8,
# 14 epochs (drop at 12), COCO bbox mAP every 2 epochs.
toy_data_root = 'data/toy_shapes/'
toy_classes = ('rectangle', 'ellipse', 'triangle', 'ring', 'cross')

toy_backbone = dict(
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
        checkpoint=toy_data_root + 'backbone_crops.pth'))
# the same backbone read at three levels, strides 4, 8 and 16 (24x24, 12x12
# and 6x6 maps of a 96x96 image): SAM-DETR++, Deformable DETR, DINO
toy_backbone_3_levels = dict(
    toy_backbone,
    strides=(1, 2, 2),
    dilations=(1, 1, 1),
    out_indices=(0, 1, 2))

toy_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
toy_test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
toy_dataset = dict(
    _delete_=True,
    type='CocoDataset',
    data_root=toy_data_root,
    metainfo=dict(classes=toy_classes))
toy_loader = dict(batch_size=8, num_workers=1, persistent_workers=True)
toy_train_dataloader = dict(
    **toy_loader,
    dataset=dict(
        toy_dataset,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=toy_train_pipeline))
toy_val_dataloader = dict(
    **toy_loader,
    dataset=dict(
        toy_dataset,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=toy_test_pipeline))
toy_val_evaluator = dict(ann_file=toy_data_root + 'annotations/val.json')

toy_max_epochs = 14
toy_train_cfg = dict(
    type='ResumableEpochBasedTrainLoop',
    max_epochs=toy_max_epochs,
    val_interval=2)
toy_param_scheduler = [
    dict(
        type='MultiStepLR',
        end=toy_max_epochs,
        milestones=[12],
        by_epoch=True)
]
# The briefly pretrained backbone trains at the full learning rate.
toy_optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))))
toy_default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=2, max_keep_ckpts=2))
toy_auto_scale_lr = dict(enable=False, base_batch_size=8)

# The width of mmdet's Conditional DETR and DINO at the toy budget (256-d,
# forced: see configs/sam_detr_toy/baselines/), for the toy models of ours
# compared with them at equal width (`model = _base_.toy_width_256`); the
# Semantics Aligner's own sizes stay the toy's.
toy_width = 256
toy_width_256 = dict(
    neck=dict(out_channels=toy_width),
    positional_encoding=dict(num_feats=toy_width // 2),
    encoder=dict(
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=toy_width),
            ffn_cfg=dict(embed_dims=toy_width))),
    decoder=dict(
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=toy_width),
            cross_attn_cfg=dict(embed_dims=toy_width),
            ffn_cfg=dict(embed_dims=toy_width))),
    bbox_head=dict(embed_dims=toy_width))
