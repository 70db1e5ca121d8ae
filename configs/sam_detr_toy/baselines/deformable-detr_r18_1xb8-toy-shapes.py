# mmdet's Deformable DETR (single-stage, no box refinement) at the toy budget
# of SAM-DETR++ (../sam-detr-pp_r18_1xb8-toy-shapes.py): the same data,
# backbone at three levels (24x24, 12x12, 6x6 maps), schedule, optimizer,
# 30 queries, 128-d, 2 encoder (FFN 256) / 3 decoder (FFN 512) layers, no
# dropout. Only sizes change; mmdet's architecture stays.
# A baseline of the convergence benchmark (docs/convergence.md).
_base_ = [
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    '../../_base_/default_runtime.py', '../../_base_/toy_shapes.py'
]
runner_type = 'CPUDDPRunner'

embed_dims = 128
model = dict(
    num_queries=30,
    num_feature_levels=3,
    backbone=_base_.toy_backbone_3_levels,
    neck=dict(in_channels=[32, 64, 128], out_channels=embed_dims, num_outs=3),
    positional_encoding=dict(num_feats=embed_dims // 2),
    encoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=3, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims, feedforward_channels=256,
                ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, dropout=0.0),
            cross_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=3, dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims, feedforward_channels=512,
                ffn_drop=0.0))),
    bbox_head=dict(
        num_classes=len(_base_.toy_classes), embed_dims=embed_dims),
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
