# Copyright (c) mmdet_samdetr contributors. All rights reserved.
import os.path as osp

import torch
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData

import mmdet_samdetr  # noqa: F401  (registers the modules)

register_all_modules()
torch.set_num_threads(2)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config_path(name: str) -> str:
    """Path of a config under ``configs/``."""
    return osp.join(REPO, 'configs', name)


def load_model_cfg(name: str = 'sam_detr/sam-detr_r50_4xb4-50e_coco.py'):
    """Model config of one of our configs, with no pretrained download."""
    cfg = Config.fromfile(config_path(name))
    cfg.model.backbone.init_cfg = None
    return cfg.model


def _tiny_decoder_and_head(cfg, with_smca, num_classes, num_queries,
                           embed_dims):
    layer = cfg.decoder.layer_cfg
    layer.self_attn_cfg.embed_dims = embed_dims
    layer.cross_attn_cfg.embed_dims = embed_dims
    layer.aligner_cfg.update(reduced_dims=8, mlp_dims=(32, 32, 32))
    layer.ffn_cfg.update(embed_dims=embed_dims, feedforward_channels=64)
    layer.with_smca = with_smca
    cfg.bbox_head.update(num_classes=num_classes, embed_dims=embed_dims)
    cfg.test_cfg.max_per_img = num_queries


def det_sample(size=(96, 112), boxes=None, labels=None):
    """A data sample of an unpadded ``size`` image with these boxes."""
    h, w = size
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.),
            pad_shape=(h, w), batch_input_shape=(h, w)))
    sample.gt_instances = InstanceData(
        bboxes=torch.empty(0, 4) if boxes is None else torch.tensor(boxes),
        labels=torch.empty(0, dtype=torch.long)
        if labels is None else torch.tensor(labels))
    return sample


DN_CFG = dict(
    label_noise_scale=0.5,
    box_noise_scale=1.0,
    group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=6))


def tiny_model_cfg(with_smca: bool = False,
                   num_classes: int = 4,
                   num_queries: int = 10,
                   embed_dims: int = 32,
                   num_dec_layers: int = 2,
                   with_dn: bool = False,
                   config: str = 'sam_detr/sam-detr_r50_4xb4-50e_coco.py'):
    """The real model path at tiny width: ResNet-18 stage 1-3, 1 encoder and
    2 decoder layers, 8 heads, 32-d."""
    cfg = load_model_cfg(config)
    if with_dn:
        cfg.dn_cfg = DN_CFG
    cfg.num_queries = num_queries
    cfg.backbone.update(
        depth=18, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
        out_indices=(2, ), frozen_stages=-1)
    cfg.neck.update(in_channels=[256], out_channels=embed_dims)
    cfg.positional_encoding.num_feats = embed_dims // 2
    cfg.encoder.num_layers = 1
    cfg.encoder.layer_cfg.self_attn_cfg.embed_dims = embed_dims
    cfg.encoder.layer_cfg.ffn_cfg.update(
        embed_dims=embed_dims, feedforward_channels=64)
    cfg.decoder.num_layers = num_dec_layers
    _tiny_decoder_and_head(cfg, with_smca, num_classes, num_queries,
                           embed_dims)
    return cfg


def tiny_multiscale_cfg(with_smca: bool = False,
                        with_dn: bool = False,
                        num_classes: int = 4,
                        num_queries: int = 10,
                        embed_dims: int = 32,
                        layer_levels=(2, 1, 0),
                        config='sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py'):
    """SAM-DETR++ at tiny width: ResNet-18 stages 1-3 (strides 4, 8, 16) as
    three levels, 1 deformable encoder layer, one decoder layer per entry
    of ``layer_levels``."""
    cfg = load_model_cfg(config)
    if with_dn:
        cfg.dn_cfg = DN_CFG
    cfg.num_queries = num_queries
    cfg.backbone.update(
        depth=18, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
        out_indices=(0, 1, 2), frozen_stages=-1)
    cfg.neck.update(in_channels=[64, 128, 256], out_channels=embed_dims,
                    norm_cfg=dict(type='GN', num_groups=8))
    cfg.positional_encoding.num_feats = embed_dims // 2
    cfg.encoder.num_layers = 1
    cfg.encoder.layer_cfg.self_attn_cfg.embed_dims = embed_dims
    cfg.encoder.layer_cfg.ffn_cfg.update(
        embed_dims=embed_dims, feedforward_channels=64)
    cfg.decoder.num_layers = len(layer_levels)
    cfg.decoder.layer_levels = tuple(layer_levels)
    _tiny_decoder_and_head(cfg, with_smca, num_classes, num_queries,
                           embed_dims)
    return cfg
