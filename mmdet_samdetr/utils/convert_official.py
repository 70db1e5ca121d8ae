# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Convert official SAM-DETR checkpoints (ZhangGongjie/SAM-DETR) to ours.

Known layouts: single-scale R50 / R50-DC5 (DC5 has the same keys), with or
without GroupNorm in the input projection (12 / 50 epochs), with or without
SMCA; multi-scale (the official ``--multiscale``, our SAM-DETR++), with or
without SMCA. Any key the mapping does not know is an error: nothing is
dropped silently.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

# The 80 COCO category ids in mmdet's CocoDataset order; official heads have
# 91 logits indexed by raw category id.
COCO80_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42,
    43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90
]

# (multi-scale, with GroupNorm, with SMCA) -> config
CONFIGS = {
    (False, True, False):
    'sam_detr/sam-detr_r50_4xb4-12e_coco.py (or the r50-dc5 12e)',
    (False, False, False):
    'sam_detr/sam-detr_r50_4xb4-50e_coco.py (or the r50-dc5 50e)',
    (False, True, True):
    'sam_detr/sam-detr-smca_r50_4xb4-12e_coco.py (or the r50-dc5 12e)',
    (False, False, True):
    'sam_detr/sam-detr-smca_r50_4xb4-50e_coco.py (or the r50-dc5 50e)',
    (True, True, False):
    'sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py (or the 50e)',
    (True, True, True):
    'sam_detr_pp/sam-detr-pp-smca_r50_8xb2-12e_coco.py (or the 50e)',
}

# Decoder/encoder layer modules: (official module regex, our template).
_DECODER = [
    (r'sa_(qcontent|qpos|kcontent|kpos|v)_proj', r'self_attn.\1_proj'),
    (r'self_attn\.out_proj', 'self_attn.out_proj'),
    (r'ca_(qcontent|kcontent|v)_proj', r'cross_attn.\1_proj'),
    (r'ca_(qpos|kpos)_sine_proj\.layers\.(\d)',
     r'cross_attn.\1_sine_proj.layers.\2'),
    (r'cross_attn\.out_proj', 'cross_attn.out_proj'),
    (r'point1\.0', 'semantics_aligner.reduce_conv'),
    (r'point2\.(\d)', r'semantics_aligner.point_predictor.\1'),
    (r'attn1', 'semantics_aligner.content_gate'),
    (r'attn2', 'semantics_aligner.position_gate'),
    (r'norm1', 'norms.0'),
    (r'norm2', 'norms.1'),
    (r'norm3', 'norms.2'),
    (r'linear1', 'ffn.layers.0.0'),
    (r'linear2', 'ffn.layers.1'),
]
_ENCODER = [
    (r'self_attn', 'self_attn.attn'),  # in_proj_weight / in_proj_bias
    (r'self_attn\.out_proj', 'self_attn.attn.out_proj'),
    # multi-scale: MSDeformAttn -> mmcv's MultiScaleDeformableAttention
    (r'self_attn\.(sampling_offsets|attention_weights|value_proj|'
     r'output_proj)', r'self_attn.\1'),
    (r'norm1', 'norms.0'),
    (r'norm2', 'norms.1'),
    (r'linear1', 'ffn.layers.0.0'),
    (r'linear2', 'ffn.layers.1'),
]


class UnknownLayoutError(ValueError):
    """The checkpoint is not a layout this converter knows."""


def _map_layer(rest: str, rules) -> Optional[str]:
    module, _, param = rest.rpartition('.')
    for pattern, template in rules:
        m = re.fullmatch(pattern, module)
        if m is not None:
            return f'{m.expand(template)}.{param}'
    return None


def map_key(key: str) -> Optional[str]:
    """Our name of an official key; None if it is a known duplicate."""
    if key.startswith('transformer.decoder.bbox_embed.'):
        return None  # the same modules as bbox_embed.* (shared)
    m = re.fullmatch(r'backbone\.0\.body\.(.+)', key)
    if m:
        return 'backbone.' + m.group(1)
    m = re.fullmatch(r'input_proj\.(\d)\.([01])\.(weight|bias)', key)
    if m:
        level, module, param = m.groups()
        return f'neck.convs.{level}.{("conv", "gn")[int(module)]}.{param}'
    if key == 'query_embed.weight':
        return 'query_embedding.weight'
    if key == 'transformer.level_embed':
        return 'level_embed'
    m = re.fullmatch(r'class_embed\.(\d+)\.(weight|bias)', key)
    if m:
        return f'bbox_head.cls_branches.{m.group(1)}.{m.group(2)}'
    m = re.fullmatch(r'bbox_embed\.(\d+)\.layers\.(\d)\.(weight|bias)', key)
    if m:
        # MLP layer j is entry 2j of the head's Sequential (ReLU between)
        layer, fc, param = m.groups()
        return f'bbox_head.reg_branches.{layer}.{2 * int(fc)}.{param}'
    for prefix, rules, ours in (('transformer.encoder.layers.', _ENCODER,
                                 'encoder.layers.'),
                                ('transformer.decoder.layers.', _DECODER,
                                 'decoder.layers.')):
        m = re.fullmatch(re.escape(prefix) + r'(\d+)\.(.+)', key)
        if m:
            mapped = _map_layer(m.group(2), rules)
            if mapped is not None:
                return f'{ours}{m.group(1)}.{mapped}'
    raise UnknownLayoutError(f'unknown key {key!r}')


def detect_layout(
        state_dict: Dict[str, torch.Tensor]) -> Tuple[bool, bool, bool]:
    """(multi-scale, with GroupNorm, with SMCA) of an official state dict.
    """
    levels = sum(f'input_proj.{i}.0.weight' in state_dict for i in range(8))
    multiscale = 'transformer.level_embed' in state_dict
    if multiscale:
        num_levels = state_dict['transformer.level_embed'].shape[0]
        if levels != 3 or num_levels != 3:
            raise UnknownLayoutError(
                f'multi-scale checkpoint with {levels} input projections and '
                f'{num_levels} level embeddings; the official SAM-DETR++ '
                'has 3 of each (C3-C5)')
    elif levels != 1:
        raise UnknownLayoutError(
            f'{levels} input projections without level embeddings: not an '
            'official SAM-DETR layout')
    key = 'transformer.decoder.layers.0.point2.6.weight'
    if key not in state_dict:
        raise UnknownLayoutError(
            f'{key} is missing: not an official SAM-DETR checkpoint')
    num_out = state_dict[key].shape[0]
    if num_out not in (16, 32):
        raise UnknownLayoutError(
            f'{key} has {num_out} outputs; expected 16 (8 points) or 32 '
            '(8 points + SMCA scales)')
    return multiscale, 'input_proj.0.1.weight' in state_dict, num_out == 32


def convert_state_dict(state_dict: Dict[str, torch.Tensor],
                       num_classes: int = 80) -> Tuple[OrderedDict, dict]:
    """Official ``model`` state dict -> ours.

    Args:
        state_dict (dict): The official ``checkpoint['model']``.
        num_classes (int): 80 keeps the 80 COCO classes in mmdet's order
            (rows selected by category id); 91 keeps the raw logits.

    Returns:
        tuple: Our state dict and a description (``multiscale``,
        ``with_gn``, ``with_smca``, ``config``).
    """
    if num_classes not in (80, 91):
        raise ValueError(f'num_classes must be 80 or 91, got {num_classes}')
    layout = detect_layout(state_dict)
    if layout not in CONFIGS:
        raise UnknownLayoutError(
            'multi-scale checkpoint without GroupNorm in the input '
            'projection: the official code always adds it')
    out = OrderedDict()
    unknown: List[str] = []
    for key, value in state_dict.items():
        try:
            new = map_key(key)
        except UnknownLayoutError:
            unknown.append(key)
            continue
        if new is None:
            shared = key[len('transformer.decoder.'):]
            if shared in state_dict and not torch.equal(
                    state_dict[shared], value):
                raise UnknownLayoutError(
                    f'{key} differs from {shared}; the official model shares '
                    'these modules')
            continue
        if new.startswith('bbox_head.cls_branches.') and num_classes == 80:
            value = value[COCO80_CATEGORY_IDS]
        out[new] = value
    if unknown:
        raise UnknownLayoutError(
            f'{len(unknown)} keys of an unknown layout, e.g. {unknown[:5]}')
    # mmdet's BatchNorm has a step counter that FrozenBatchNorm lacks.
    for key in list(out):
        if key.startswith('backbone.') and key.endswith('.running_var'):
            out[key[:-len('running_var')] + 'num_batches_tracked'] = \
                torch.tensor(0, dtype=torch.long)
    multiscale, with_gn, with_smca = layout
    meta = dict(
        multiscale=multiscale,
        with_gn=with_gn,
        with_smca=with_smca,
        num_classes=num_classes,
        config=CONFIGS[layout])
    return out, meta


def convert_checkpoint(checkpoint: dict, num_classes: int = 80) -> dict:
    """Official checkpoint (``{'model': ...}`` or a bare state dict) -> an
    mmengine checkpoint ``{'state_dict': ..., 'meta': ...}``."""
    state_dict = checkpoint.get('model', checkpoint)
    if not isinstance(state_dict, dict) or not state_dict:
        raise UnknownLayoutError('no state dict found (expected the key '
                                 '"model" or a dict of tensors)')
    converted, meta = convert_state_dict(state_dict, num_classes)
    meta['source'] = 'official SAM-DETR'
    if isinstance(checkpoint.get('epoch'), int):
        meta['official_epoch'] = checkpoint['epoch']
    return dict(state_dict=converted, meta=meta)
