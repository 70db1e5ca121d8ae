# mmdet's DINO at the toy budget of SAM-DETR++ with denoising
# (../sam-detr-pp-dn_r18_1xb8-toy-shapes.py): the same data, backbone at
# three levels (24x24, 12x12, 6x6 maps), schedule, optimizer, 30 matching
# and 30 denoising queries, 2 encoder (FFN 256) / 3 decoder (FFN 512) layers,
# no dropout; 256-d instead of 128 (forced: see embed_dims). Only sizes
# change; mmdet's architecture (two-stage query selection, box refinement,
# contrastive denoising) stays.
# A baseline of the convergence benchmark (docs/convergence.md).
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    '../../_base_/default_runtime.py', '../../_base_/toy_shapes.py'
]
runner_type = 'CPUDDPRunner'

# 256-d, not 128: mmdet's DINO decoder encodes the reference points with a
# fixed 256-d sine encoding (coordinate_to_encoding's default num_feats=128)
embed_dims = 256
model = dict(
    num_queries=30,
    num_feature_levels=3,
    backbone=_base_.toy_backbone_3_levels,
    neck=dict(in_channels=[32, 64, 128], out_channels=embed_dims, num_outs=3),
    positional_encoding=dict(num_feats=embed_dims // 2),
    encoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_levels=3),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=256))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims),
            cross_attn_cfg=dict(embed_dims=embed_dims, num_levels=3),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512))),
    bbox_head=dict(
        num_classes=len(_base_.toy_classes), embed_dims=embed_dims),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=30)),
    test_cfg=dict(max_per_img=30))

train_dataloader = _base_.toy_train_dataloader
val_dataloader = _base_.toy_val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.toy_val_evaluator
test_evaluator = val_evaluator
train_cfg = _base_.toy_train_cfg
param_scheduler = _base_.toy_param_scheduler
optim_wrapper = _base_.toy_optim_wrapper
default_hooks = _base_.toy_default_hooks
auto_scale_lr = _base_.toy_auto_scale_lr
