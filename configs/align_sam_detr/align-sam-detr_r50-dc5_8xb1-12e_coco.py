# SAM-DETR (ResNet-50-DC5, 12 epochs),
# trained with Align-DETR's mixed matching and Align Loss.
_base_ = [
    '../sam_detr/sam-detr_r50-dc5_8xb1-12e_coco.py',
    '../_base_/align_sam_detr.py'
]
model = dict(
    bbox_head=_base_.align_bbox_head,
    train_cfg=dict(assigner=_base_.align_assigner))
