# SAM-DETR++ w/ SMCA + DN, ResNet-50, 12 epochs (journal: 44.8 AP).
_base_ = './sam-detr-pp-smca_r50_8xb2-12e_coco.py'

model = dict(
    # mmdet's CdnQueryGenerator, with mmdet DINO's settings
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)))
