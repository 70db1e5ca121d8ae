# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The sine positional encoding of the SAM-DETR configs: the official
order of operations, also on rows and columns that are entirely padding."""
import math

import pytest
import torch
from mmdet.models.layers import SinePositionalEncoding
from mmdet.registry import MODELS

from conftest import load_model_cfg
from mmdet_samdetr.models.layers import OfficialSinePositionalEncoding

NUM_FEATS = 16


def official_encoding(mask, num_feats=NUM_FEATS, temperature=10000):
    """``PositionEmbeddingSine.forward`` of the official code
    (``models/position_encoding.py``, normalize=True), written out."""
    not_mask = ~mask
    y_embed = not_mask.cumsum(1, dtype=torch.float32) - 0.5
    x_embed = not_mask.cumsum(2, dtype=torch.float32) - 0.5
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps + 0.5) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps + 0.5) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32)
    dim_t = temperature**(2 * (dim_t // 2) / num_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(),
                         pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(),
                         pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def padded_mask():
    """Two images padded to 9x11: 9x11 (none) and 5x7 (4 full padding rows,
    4 full padding columns)."""
    mask = torch.zeros(2, 9, 11, dtype=torch.bool)
    mask[1, 5:] = True
    mask[1, :, 7:] = True
    return mask


def encodings(mask):
    ours = OfficialSinePositionalEncoding(NUM_FEATS, normalize=True,
                                          offset=-0.5)
    mmdet = SinePositionalEncoding(NUM_FEATS, normalize=True, offset=-0.5)
    return ours(mask), mmdet(mask)


def test_equals_the_official_formula_on_padded_batches():
    mask = padded_mask()
    ours, _ = encodings(mask)
    assert ours.shape == (2, 2 * NUM_FEATS, 9, 11)
    assert torch.equal(ours, official_encoding(mask))


def test_full_padding_rows_use_the_official_divisor():
    """On a row that is all padding the official float32 divisor is
    ((0 - 0.5) + 1e-6) + 0.5 = 1.0133e-6 (mmdet's: 1e-6)."""
    divisor = (torch.tensor(0.) - 0.5 + 1e-6) + 0.5
    assert divisor.item() == pytest.approx(1.0133e-6, rel=1e-4)
    mask = padded_mask()
    ours, mmdet = encodings(mask)
    # first y channel (sin, dim_t = 1) of image 1 in column 8, which is
    # all padding: its count of valid rows is 0 everywhere (y = -0.5)
    expected = torch.sin(torch.tensor(-0.5) / divisor * (2 * math.pi))
    assert ours[1, 0, 0, 8] == expected
    assert not torch.allclose(ours[1, 0, 0, 8], mmdet[1, 0, 0, 8],
                              atol=1e-2)


def test_valid_rows_and_columns_equal_mmdets_to_the_last_bit():
    """Rows and columns with a valid pixel: bit-equal to mmdet's
    SinePositionalEncoding(offset=-0.5); only all-padding ones differ."""
    mask = padded_mask()
    ours, mmdet = encodings(mask)
    y_ours, x_ours = ours.split(NUM_FEATS, dim=1)
    y_mmdet, x_mmdet = mmdet.split(NUM_FEATS, dim=1)
    assert torch.equal(ours[0], mmdet[0])
    # image 1: y of columns 0-6 (a valid pixel per column), x of rows 0-4
    assert torch.equal(y_ours[1, :, :, :7], y_mmdet[1, :, :, :7])
    assert torch.equal(x_ours[1, :, :5], x_mmdet[1, :, :5])
    assert not torch.equal(y_ours[1, :, :, 7:], y_mmdet[1, :, :, 7:])


def test_without_a_mask_as_with_an_empty_one():
    mask = torch.zeros(2, 9, 11, dtype=torch.bool)
    encoding = OfficialSinePositionalEncoding(NUM_FEATS, normalize=True,
                                              offset=-0.5)
    assert torch.equal(encoding(None, input=torch.zeros(2, 3, 9, 11)),
                       encoding(mask))


@pytest.mark.parametrize('name', [
    'sam_detr/sam-detr_r50_4xb4-12e_coco.py',
    'sam_detr/sam-detr-smca_r50-dc5_8xb1-50e_coco.py',
    'sam_detr_pp/sam-detr-pp-smca-dn_r50_8xb2-12e_coco.py',
    'align_sam_detr/align-sam-detr-pp_r50_8xb2-12e_coco.py',
])
def test_sam_detr_configs_use_the_official_order(name):
    cfg = load_model_cfg(name)
    assert cfg.positional_encoding.type == 'OfficialSinePositionalEncoding'
    model = MODELS.build(cfg)
    assert type(model.positional_encoding) is OfficialSinePositionalEncoding
