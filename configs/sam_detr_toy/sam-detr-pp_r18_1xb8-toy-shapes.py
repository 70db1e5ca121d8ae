# SAM-DETR++ on the toy-shapes dataset: the toy SAM-DETR with three levels
# (strides 4, 8, 16: 24x24, 12x12 and 6x6 maps of a 96x96 image) instead of
# one stride-8 level, a 2-layer deformable encoder (FFN half the decoder's,
# as the official model) and the decoder reading the levels coarse to fine.
_base_ = './sam-detr_r18_1xb8-toy-shapes.py'

embed_dims = 128
model = dict(
    type='SAMDETRPlusPlus',
    num_feature_levels=3,
    backbone=_base_.toy_backbone_3_levels,
    neck=dict(in_channels=[32, 64, 128], num_outs=3),
    encoder=dict(
        _delete_=True,
        num_layers=2,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=3, batch_first=True,
                dropout=0.0),
            ffn_cfg=dict(
                embed_dims=embed_dims, feedforward_channels=256,
                ffn_drop=0.0))),
    decoder=dict(layer_levels=(2, 1, 0)))
