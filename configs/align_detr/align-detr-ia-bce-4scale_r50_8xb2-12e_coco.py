# Align-DETR as released (IA-BCE instead of the paper's Align Loss): the
# official 12-epoch result is 50.3 AP, as mmdet's projects/AlignDETR port.
_base_ = './align-detr-4scale_r50_8xb2-12e_coco.py'

model = dict(bbox_head=dict(loss_cls=dict(form='ia_bce')))
