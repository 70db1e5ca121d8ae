# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Counts and initial values equal the official implementation's."""
import math

import pytest
import torch
from mmdet.registry import MODELS

from conftest import load_model_cfg

# Trainable parameters printed by the official training logs, 91 logits.
OFFICIAL_TRAINABLE = {
    'sam_detr/sam-detr_r50_4xb4-12e_coco.py': 58_074_058,
    'sam_detr/sam-detr_r50_4xb4-50e_coco.py': 58_073_546,
    'sam_detr/sam-detr-smca_r50_4xb4-12e_coco.py': 58_123_306,
    'sam_detr/sam-detr-smca_r50_4xb4-50e_coco.py': 58_122_794,
    'sam_detr/sam-detr_r50-dc5_8xb1-12e_coco.py': 58_074_058,
    'sam_detr/sam-detr-smca_r50-dc5_8xb1-50e_coco.py': 58_122_794,
    'sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py': 54_972_298,
    'sam_detr_pp/sam-detr-pp_r50_8xb2-50e_coco.py': 54_972_298,
    'sam_detr_pp/sam-detr-pp-smca_r50_8xb2-12e_coco.py': 55_021_546,
}
# Denoising adds mmdet's label embedding (num_classes x 256); the official
# code has no DN.
DN_CONFIGS = {
    'sam_detr/sam-detr-dn_r50-dc5_8xb1-12e_coco.py': 58_074_058,
    'sam_detr/sam-detr-smca-dn_r50-dc5_8xb1-50e_coco.py': 58_122_794,
    'sam_detr_pp/sam-detr-pp-smca-dn_r50_8xb2-12e_coco.py': 55_021_546,
}


def _build(name, num_classes=91):
    cfg = load_model_cfg(name)
    cfg.bbox_head.num_classes = num_classes
    return MODELS.build(cfg)


@pytest.mark.parametrize('name,count', OFFICIAL_TRAINABLE.items())
def test_trainable_parameters_equal_official(name, count):
    model = _build(name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == count


@pytest.mark.parametrize('name,count', DN_CONFIGS.items())
def test_denoising_adds_only_the_label_embedding(name, count):
    model = _build(name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert model.dn_query_generator.label_embedding.weight.shape == (91, 256)
    assert trainable == count + 91 * 256


def test_eighty_classes_remove_16962():
    model = _build('sam_detr/sam-detr_r50_4xb4-50e_coco.py', 80)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 58_073_546 - 16_962


def test_decoder_layer_and_aligner_counts():
    """Spec §9: 4,248,144 per layer, of which 2,274,640 Semantics Aligner."""
    model = _build('sam_detr/sam-detr_r50_4xb4-50e_coco.py')
    layer = model.decoder.layers[0]
    assert sum(p.numel() for p in layer.parameters()) == 4_248_144
    assert sum(p.numel()
               for p in layer.semantics_aligner.parameters()) == 2_274_640


def test_dc5_dilation_follows_torchvision():
    model = _build('sam_detr/sam-detr_r50-dc5_8xb1-12e_coco.py')
    layer4 = model.backbone.layer4
    assert layer4[0].conv2.dilation == (1, 1)
    assert layer4[0].conv2.stride == (1, 1)
    assert [b.conv2.dilation for b in list(layer4)[1:]] == [(2, 2), (2, 2)]
    model.eval()
    with torch.no_grad():
        out = model.backbone(torch.zeros(1, 3, 64, 96))
    assert out[-1].shape[-2:] == (4, 6)  # stride 16


def test_effective_initialization():
    torch.manual_seed(0)
    model = _build('sam_detr/sam-detr_r50_4xb4-12e_coco.py')
    model.init_weights()
    head = model.bbox_head
    prior = -math.log((1 - 0.01) / 0.01)
    for fc_cls, fc_reg in zip(head.cls_branches, head.reg_branches):
        torch.testing.assert_close(fc_cls.bias,
                                   torch.full_like(fc_cls.bias, prior))
        assert fc_reg[-1].weight.abs().max() == 0
        assert fc_reg[-1].bias.abs().max() == 0
        # identical initial values across layers (official deep copies)
        torch.testing.assert_close(fc_cls.weight, head.cls_branches[0].weight)
    for layer in model.decoder.layers:
        last = layer.semantics_aligner.point_predictor[-1]
        assert last.bias.abs().max() == 0
        # xavier-uniform overrides the official zero weight (the official
        # Transformer._reset_parameters runs after the layer sets it)
        bound = math.sqrt(6 / sum(last.weight.shape))
        assert 0.5 * bound < last.weight.abs().max() <= bound
        assert layer.cross_attn.out_proj.bias.abs().max() == 0
        assert layer.self_attn.out_proj.bias.abs().max() == 0
    # reference boxes ~ N(0, 1)
    ref = model.query_embedding.weight
    assert ref.shape == (300, 4)
    assert 0.8 < ref.std() < 1.2
    # GroupNorm in the 12-epoch input projection, with conv bias
    conv = model.neck.convs[0]
    assert conv.with_norm and conv.conv.bias is not None


def test_multiscale_initialization_and_levels():
    """SAM-DETR++: deformable attention reset after the xavier pass
    (sampling offsets on the direction grid, zero attention weights),
    N(0, 1) level embeddings, GroupNorm on every projection, no dropout,
    the official coarse-to-fine schedule and FFN 1024 in the encoder."""
    torch.manual_seed(0)
    model = _build('sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py')
    model.init_weights()
    attn = model.encoder.layers[0].self_attn
    assert attn.sampling_offsets.weight.abs().max() == 0
    assert attn.attention_weights.weight.abs().max() == 0
    # head h's first point points along angle 2 pi h / 8, scaled to max 1
    offsets = attn.sampling_offsets.bias.view(8, 3, 4, 2)
    torch.testing.assert_close(offsets[0, 0, 0], torch.tensor([1., 0.]))
    torch.testing.assert_close(offsets[2, 0, 1], torch.tensor([0., 2.]))
    assert model.level_embed.shape == (3, 256)
    assert 0.8 < model.level_embed.std() < 1.2
    assert [conv.with_norm for conv in model.neck.convs] == [True] * 3
    assert model.encoder.layers[0].ffn.layers[0][0].out_features == 1024
    assert model.decoder.layer_levels == (2, 2, 1, 1, 0, 0)
    assert _dropout_rates(model) == {0.0}
    # the encoder's value projection is xavier (not mmcv's default)
    bound = math.sqrt(6 / 512)
    weight = attn.value_proj.weight
    assert 0.9 * bound < weight.abs().max() <= bound


def _dropout_rates(model):
    """Every dropout rate of the model, torch MHA's attention dropout
    included; the encoder's mmcv ``proj_drop`` is left out (mmcv's default
    0: the official DETR layer has no such dropout, its residual dropout is
    mmcv's ``dropout_layer``)."""
    rates = {
        m.p
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Dropout) and not (
            name.startswith('encoder.') and name.endswith('.proj_drop'))
    }
    return rates | {
        m.dropout
        for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)
    }


def test_cvpr_configs_keep_dropout_journal_configs_drop_it():
    for name in ('sam_detr/sam-detr_r50_4xb4-12e_coco.py',
                 'sam_detr/sam-detr-smca_r50-dc5_8xb1-50e_coco.py'):
        assert _dropout_rates(_build(name)) == {0.1}, name
    for name in ('sam_detr/sam-detr-dn_r50-dc5_8xb1-12e_coco.py',
                 'sam_detr/sam-detr-smca-dn_r50-dc5_8xb1-50e_coco.py',
                 'sam_detr_pp/sam-detr-pp-smca-dn_r50_8xb2-50e_coco.py'):
        assert _dropout_rates(_build(name)) == {0.0}, name


def test_multiscale_learning_rates_are_the_official_ones():
    """Official: backbone at 1e-5, everything else at 1e-4, the deformable
    sampling offsets included (no 0.1x as in Deformable DETR)."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from conftest import config_path
    cfg = Config.fromfile(
        config_path('sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py'))
    model = _build('sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    lrs = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            lrs[names[id(p)]] = group['lr']
    assert lrs['encoder.layers.0.self_attn.sampling_offsets.weight'] == 1e-4
    assert lrs['decoder.layers.5.semantics_aligner.reduce_conv.weight'] == \
        1e-4
    assert lrs['level_embed'] == 1e-4
    assert lrs['backbone.layer4.0.conv1.weight'] == pytest.approx(1e-5)
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    assert wrapper.optimizer.defaults['weight_decay'] == 1e-4
