# mmdet's DAB-DETR at the toy budget of SAM-DETR
# (../sam-detr_r18_1xb8-toy-shapes.py): the same data, backbone (stride-8
# level, 12x12 maps), schedule, optimizer, 30 queries, 128-d, 2 encoder /
# 3 decoder layers, FFN 512, no dropout. Only sizes change; mmdet's
# architecture (anchor-box queries, PReLU FFNs, neck without GN) stays.
# A baseline of the convergence benchmark (docs/convergence.md).
_base_ = [
    'mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    '../../_base_/default_runtime.py', '../../_base_/toy_shapes.py'
]
runner_type = 'CPUDDPRunner'

embed_dims = 128
model = dict(
    num_queries=30,
    backbone=_base_.toy_backbone,
    neck=dict(in_channels=[128], out_channels=embed_dims),
    positional_encoding=dict(num_feats=embed_dims // 2),
    encoder=dict(
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims),
            cross_attn_cfg=dict(embed_dims=embed_dims),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512))),
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
