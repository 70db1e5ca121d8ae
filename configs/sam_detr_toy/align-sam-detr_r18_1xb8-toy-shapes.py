# Toy SAM-DETR trained with Align-DETR's mixed matching and Align Loss,
# with the budget of sam-detr_r18_1xb8-toy-shapes.py
# (the toy comparison in docs/methods/align_detr.md).
_base_ = [
    './sam-detr_r18_1xb8-toy-shapes.py',
    '../_base_/align_sam_detr.py'
]
model = dict(
    bbox_head=_base_.align_bbox_head,
    train_cfg=dict(assigner=_base_.align_assigner))
