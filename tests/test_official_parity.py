# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Counts and initial values equal the official implementation's."""
import math

import pytest
import torch
from mmdet.registry import MODELS

from conftest import load_model_cfg

# Trainable parameters printed by the official logs (spec §9), 91 logits.
OFFICIAL_TRAINABLE = {
    'sam_detr/sam-detr_r50_4xb4-12e_coco.py': 58_074_058,
    'sam_detr/sam-detr_r50_4xb4-50e_coco.py': 58_073_546,
    'sam_detr/sam-detr-smca_r50_4xb4-12e_coco.py': 58_123_306,
    'sam_detr/sam-detr-smca_r50_4xb4-50e_coco.py': 58_122_794,
    'sam_detr/sam-detr_r50-dc5_8xb1-12e_coco.py': 58_074_058,
    'sam_detr/sam-detr-smca_r50-dc5_8xb1-50e_coco.py': 58_122_794,
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
        assert fc_reg.layers[-1].weight.abs().max() == 0
        assert fc_reg.layers[-1].bias.abs().max() == 0
        # identical initial values across layers (official deep copies)
        torch.testing.assert_close(fc_cls.weight, head.cls_branches[0].weight)
    for layer in model.decoder.layers:
        last = layer.semantics_aligner.point2[-1]
        assert last.bias.abs().max() == 0
        # xavier-uniform overrides the official zero weight (trap 1)
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
