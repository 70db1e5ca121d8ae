# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Convert official SAM-DETR checkpoints (ZhangGongjie/SAM-DETR) to ours.

Known layouts: single-scale R50 / R50-DC5 (DC5 has the same keys), with or
without GroupNorm in the input projection (12 / 50 epochs), with or without
SMCA. Multi-scale (``--multiscale``) checkpoints are refused until
SAM-DETR++ lands. Any key the mapping does not know is an error: nothing
is dropped silently.
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

CONFIGS = {
    (True, False): 'sam-detr_r50_4xb4-12e_coco.py (or the r50-dc5 12e)',
    (False, False): 'sam-detr_r50_4xb4-50e_coco.py (or the r50-dc5 50e)',
    (True, True): 'sam-detr-smca_r50_4xb4-12e_coco.py (or the r50-dc5 12e)',
    (False, True): 'sam-detr-smca_r50_4xb4-50e_coco.py (or the r50-dc5 50e)',
}

# Decoder/encoder layer modules: (official module regex, our template).
_DECODER = [
    (r'sa_(qcontent|qpos|kcontent|kpos|v)_proj', r'self_attn.\1_proj'),
    (r'self_attn\.out_proj', 'self_attn.out_proj'),
    (r'ca_(qcontent|kcontent|v)_proj', r'cross_attn.\1_proj'),
    (r'ca_(qpos|kpos)_sine_proj\.layers\.(\d)',
     r'cross_attn.\1_sine_proj.layers.\2'),
    (r'cross_attn\.out_proj', 'cross_attn.out_proj'),
    (r'point1\.0', 'semantics_aligner.point1.0'),
    (r'point2\.(\d)', r'semantics_aligner.point2.\1'),
    (r'attn([12])', r'semantics_aligner.attn\1'),
    (r'norm1', 'norms.0'),
    (r'norm2', 'norms.1'),
    (r'norm3', 'norms.2'),
    (r'linear1', 'ffn.layers.0.0'),
    (r'linear2', 'ffn.layers.1'),
]
_ENCODER = [
    (r'self_attn', 'self_attn.attn'),  # in_proj_weight / in_proj_bias
    (r'self_attn\.out_proj', 'self_attn.attn.out_proj'),
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
    m = re.fullmatch(r'input_proj\.0\.0\.(weight|bias)', key)
    if m:
        return 'neck.convs.0.conv.' + m.group(1)
    m = re.fullmatch(r'input_proj\.0\.1\.(weight|bias)', key)
    if m:
        return 'neck.convs.0.gn.' + m.group(1)
    if key == 'query_embed.weight':
        return 'query_embedding.weight'
    m = re.fullmatch(r'class_embed\.(\d+)\.(weight|bias)', key)
    if m:
        return f'bbox_head.cls_branches.{m.group(1)}.{m.group(2)}'
    m = re.fullmatch(r'bbox_embed\.(\d+)\.layers\.(\d)\.(weight|bias)', key)
    if m:
        return 'bbox_head.reg_branches.{}.layers.{}.{}'.format(*m.groups())
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


def detect_layout(state_dict: Dict[str, torch.Tensor]) -> Tuple[bool, bool]:
    """(with GroupNorm, with SMCA) of a single-scale official state dict."""
    if 'transformer.level_embed' in state_dict or any(
            k.startswith('input_proj.1.') for k in state_dict):
        raise UnknownLayoutError(
            'this is a multi-scale (SAM-DETR++ / --multiscale) checkpoint; '
            'only single-scale R50 / R50-DC5 checkpoints are supported')
    key = 'transformer.decoder.layers.0.point2.6.weight'
    if key not in state_dict:
        raise UnknownLayoutError(
            f'{key} is missing: not an official SAM-DETR checkpoint')
    num_out = state_dict[key].shape[0]
    if num_out not in (16, 32):
        raise UnknownLayoutError(
            f'{key} has {num_out} outputs; expected 16 (8 points) or 32 '
            '(8 points + SMCA scales)')
    return 'input_proj.0.1.weight' in state_dict, num_out == 32


def convert_state_dict(state_dict: Dict[str, torch.Tensor],
                       num_classes: int = 80) -> Tuple[OrderedDict, dict]:
    """Official ``model`` state dict -> ours.

    Args:
        state_dict (dict): The official ``checkpoint['model']``.
        num_classes (int): 80 keeps the 80 COCO classes in mmdet's order
            (rows selected by category id); 91 keeps the raw logits.

    Returns:
        tuple: Our state dict and a description (``with_gn``, ``with_smca``,
        ``config``).
    """
    if num_classes not in (80, 91):
        raise ValueError(f'num_classes must be 80 or 91, got {num_classes}')
    with_gn, with_smca = detect_layout(state_dict)
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
    meta = dict(
        with_gn=with_gn,
        with_smca=with_smca,
        num_classes=num_classes,
        config=CONFIGS[(with_gn, with_smca)])
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
