# SAM-DETR, ResNet-50, 50 epochs (official r50_e50: 39.8 AP on COCO val).
# States only what differs from mmdet's Conditional DETR (FocalLoss 2,
# Hungarian costs 2/5/2, 300 queries, AdamW 1e-4 with backbone x0.1,
# wd 1e-4, grad clip 0.1, 50 epochs with a drop at 40).
_base_ = [
    'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    '../_base_/default_runtime.py'
]

# resume inside an epoch exactly where a checkpoint was written
train_cfg = dict(type='ResumableEpochBasedTrainLoop')

model = dict(
    type='SAMDETR',
    num_queries=300,
    # The 50-epoch official runs project C5 with a plain 1x1 conv (no GN).
    neck=dict(bias=True, init_cfg=None),
    # (cumsum - 0.5) / valid_len * 2pi, as the official sine encoding.
    # the official order of operations: padded cells as the official code
    positional_encoding=dict(
        type='OfficialSinePositionalEncoding',
        num_feats=128,
        normalize=True,
        offset=-0.5),
    decoder=dict(
        _delete_=True,
        num_layers=6,
        post_norm_cfg=None,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=256, num_heads=8, attn_drop=0.1, proj_drop=0.1),
            cross_attn_cfg=dict(embed_dims=256, num_heads=8, attn_drop=0.1),
            aligner_cfg=dict(
                num_points=8,
                roi_size=7,
                reduced_dims=64,
                mlp_dims=(256, 512, 512)),
            ffn_cfg=dict(
                embed_dims=256,
                feedforward_channels=2048,
                num_fcs=2,
                ffn_drop=0.1,
                act_cfg=dict(type='ReLU', inplace=True)),
            dropout=0.1,
            with_smca=False)),
    # The official criterion divides every loss by the ground truths of the
    # whole batch (all-reduced), the class loss included.
    bbox_head=dict(
        type='SAMDETRHead', num_reg_fcs=2, sync_cls_avg_factor=True),
    train_cfg=dict(
        assigner=dict(
            match_costs=[
                dict(type='FocalLossCost', weight=2.0, eps=1e-8),
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=100))

# The official training set keeps images without annotations.
train_dataloader = dict(
    batch_size=4,
    dataset=dict(filter_cfg=dict(filter_empty_gt=False, min_size=32)))

# Official: 4 GPUs x 4 images.
auto_scale_lr = dict(enable=False, base_batch_size=16)
