# Toy SAM-DETR++ with denoising training (mmdet's CdnQueryGenerator; as many
# denoising as matching queries).
_base_ = './sam-detr-pp_r18_1xb8-toy-shapes.py'

model = dict(
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=30)))
