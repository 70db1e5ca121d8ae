# Template: SAM-DETR++ (ResNet-50, 12 epochs) on your own COCO-format data.
# Copy it, edit the lines marked EDIT, then train as with any mmdet config:
#   python tools/train.py configs/custom_dataset/<your copy>.py
# Check the annotations first with mmdet's browse_dataset.py
# (docs/custom_data.md).
#
# Layout expected under data_root (the paths below are relative to it):
#   annotations/train.json, annotations/val.json   COCO json, boxes in xywh
#   train/*.jpg, val/*.jpg                         file_name in the json
# `classes` selects and orders the categories by their json names; their
# ids need not be contiguous.
_base_ = '../sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py'

data_root = 'data/my_dataset/'  # EDIT
classes = ('class_a', 'class_b')  # EDIT: category names, as in the json
batch_size = 2  # EDIT: images per GPU (total batch 16 for the official lr)
# EDIT (optional): start from a converted official COCO checkpoint; its
# class rows do not fit other classes, so they are reinitialized
load_from = None

metainfo = dict(classes=classes)
model = dict(bbox_head=dict(num_classes=len(classes)))
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
