# Align-DETR as released (IA-BCE, k = 2), 24 epochs (AlignDETR-R50-24ep:
# 51.4 AP).
_base_ = './align-detr-4scale_r50_8xb2-24e_coco.py'

model = dict(bbox_head=dict(loss_cls=dict(form='ia_bce')))
