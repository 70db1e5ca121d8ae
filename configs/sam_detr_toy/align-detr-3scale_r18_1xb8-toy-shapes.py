# Align-DETR on the toy DINO (baselines/dino-3scale_r18_1xb8-toy-shapes.py:
# mmdet's DINO at the toy budget): the mixed matching and Align Loss of
# ../align_detr/align-detr-4scale_r50_8xb2-12e_coco.py, nothing else
# changed (the convergence benchmark's Align-DETR vs DINO pair,
# docs/convergence.md).
_base_ = [
    './baselines/dino-3scale_r18_1xb8-toy-shapes.py',
    '../_base_/align_sam_detr.py'
]

model = dict(
    type='AlignDETR',
    bbox_head=dict(
        type='AlignDETRHead',
        # k of decoder layers 1-3, then of the encoder proposals (the
        # released 2 everywhere but the last decoder layer)
        all_layers_num_gt_repeat=[2, 2, 1, 2],
        loss_cls=_base_.align_bbox_head.loss_cls),
    train_cfg=dict(assigner=_base_.align_assigner))
