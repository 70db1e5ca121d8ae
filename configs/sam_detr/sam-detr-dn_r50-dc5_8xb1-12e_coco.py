# SAM-DETR w/ DN, ResNet-50-DC5, 12 epochs (SAM-DETR++ journal: 42.3 AP).
# The journal trains without dropout ("identical to its CVPR'2022 version,
# except that we remove dropout"); encoder and decoder here.
_base_ = './sam-detr_r50-dc5_8xb1-12e_coco.py'

model = dict(
    # mmdet's CdnQueryGenerator, with mmdet DINO's settings
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    encoder=dict(
        layer_cfg=dict(
            self_attn_cfg=dict(dropout=0.0), ffn_cfg=dict(ffn_drop=0.0))),
    decoder=dict(
        layer_cfg=dict(
            self_attn_cfg=dict(attn_drop=0.0, proj_drop=0.0),
            cross_attn_cfg=dict(attn_drop=0.0),
            ffn_cfg=dict(ffn_drop=0.0),
            dropout=0.0)))
