# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Convert official checkpoints to ours.

Known layouts:

- SAM-DETR (ZhangGongjie/SAM-DETR): single-scale R50 / R50-DC5 (DC5 has the
  same keys), with or without GroupNorm in the input projection (12 / 50
  epochs), with or without SMCA; multi-scale (the official ``--multiscale``,
  our SAM-DETR++), with or without SMCA.
- Align-DETR (FelixCaae/AlignDETR, on detrex and detectron2): DINO-4scale
  R50, the released checkpoints of ``aligndetr_k=2_r50_4scale_{12,24}ep`` and
  the Align Loss ones; our ``configs/align_detr`` (mmdet's DINO modules).

Any key the mapping does not know is an error naming it: nothing is dropped
silently. The only keys left out are the official duplicates of shared
modules, after checking that they are equal.
"""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple, Union

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


def _rename_all(state_dict: Dict[str, torch.Tensor],
                map_fn: Callable[[str], Optional[str]],
                shared_prefix: str) -> Tuple[OrderedDict, List[str]]:
    """Rename every entry with ``map_fn``; entries it maps to None are the
    official duplicates of shared modules (``shared_prefix`` + the key of
    the module they duplicate), dropped once checked equal.

    Returns:
        tuple: The renamed state dict and the keys ``map_fn`` does not know
        (it raised :class:`UnknownLayoutError`), in state-dict order.

    Raises:
        UnknownLayoutError: A duplicate differs from its module or has no
            module.
    """
    out = OrderedDict()
    unknown: List[str] = []
    for key, value in state_dict.items():
        try:
            new = map_fn(key)
        except UnknownLayoutError:
            unknown.append(key)
            continue
        if new is None:
            shared = key[len(shared_prefix):]
            if shared not in state_dict:
                raise UnknownLayoutError(
                    f'{key} is there but {shared} is missing; the official '
                    'model stores these shared modules under both names')
            if not torch.equal(state_dict[shared], value):
                raise UnknownLayoutError(
                    f'{key} differs from {shared}; the official model shares '
                    'these modules')
            continue
        out[new] = value
    return out, unknown


def _refuse_unknown(unknown: List[str], layout: str) -> None:
    if unknown:
        raise UnknownLayoutError(
            f'{len(unknown)} keys unknown to the official {layout} layout, '
            f'the first: {unknown[0]!r} (e.g. {unknown[:5]})')


def _add_num_batches_tracked(state_dict: OrderedDict) -> None:
    """mmdet's BatchNorm has a step counter that FrozenBatchNorm lacks."""
    for key in list(state_dict):
        if key.startswith('backbone.') and key.endswith('.running_var'):
            state_dict[key[:-len('running_var')] + 'num_batches_tracked'] = \
                torch.tensor(0, dtype=torch.long)


def convert_state_dict(state_dict: Dict[str, torch.Tensor],
                       num_classes: int = 80) -> Tuple[OrderedDict, dict]:
    """Official SAM-DETR ``model`` state dict -> ours.

    Args:
        state_dict (dict): The official ``checkpoint['model']``.
        num_classes (int): 80 keeps the 80 COCO classes in mmdet's order
            (rows selected by category id); 91 keeps the raw logits.

    Returns:
        tuple: Our state dict and a description (``multiscale``,
        ``with_gn``, ``with_smca``, ``num_classes``, ``config``,
        ``summary``).

    Raises:
        UnknownLayoutError: Not one of the official SAM-DETR layouts.
    """
    if num_classes not in (80, 91):
        raise ValueError(f'num_classes must be 80 or 91, got {num_classes}')
    layout = detect_layout(state_dict)
    if layout not in CONFIGS:
        raise UnknownLayoutError(
            'multi-scale checkpoint without GroupNorm in the input '
            'projection: the official code always adds it')
    out, unknown = _rename_all(state_dict, map_key, 'transformer.decoder.')
    _refuse_unknown(unknown, 'SAM-DETR')
    if num_classes == 80:
        for key in out:
            if key.startswith('bbox_head.cls_branches.'):
                out[key] = out[key][COCO80_CATEGORY_IDS]
    _add_num_batches_tracked(out)
    multiscale, with_gn, with_smca = layout
    meta = dict(
        multiscale=multiscale,
        with_gn=with_gn,
        with_smca=with_smca,
        num_classes=num_classes,
        config=CONFIGS[layout],
        summary=f'SAM-DETR{"++" if multiscale else ""}, '
        f'GroupNorm={with_gn}, SMCA={with_smca}, {num_classes} classes')
    return out, meta


# ---------------------------------------------------------------------------
# Align-DETR: detrex's DINO (FelixCaae/AlignDETR ``projects/aligndetr``,
# detectron2 ResNet and checkpoints) -> mmdet's DINO modules. The four
# released checkpoints share one network; their loss differs.

# detectron2 iterations (batch 16) of the released schedules
ALIGN_DETR_SCHEDULES = {90000: 12, 180000: 24}
ALIGN_DETR_NUM_LEVELS = 4
ALIGN_DETR_NUM_QUERIES = 900
_RESNET50_BLOCKS = (3, 4, 6, 3)  # res2..res5
_NUM_LAYERS = 6  # encoder and decoder


def align_detr_official_keys() -> List[str]:
    """Every key of the official Align-DETR state dict (detrex's DINO-4scale
    R50: 6 encoder and 6 decoder layers, 7 prediction heads), without the
    decoder's copies of the heads; state-dict order."""
    wb = ('weight', 'bias')
    bn = ('weight', 'bias', 'running_mean', 'running_var')
    attn = [f'{m}.{p}' for m in ('sampling_offsets', 'attention_weights',
                                 'value_proj', 'output_proj') for p in wb]
    ffn = [f'ffns.0.layers.{i}.{p}' for i in ('0.0', '1') for p in wb]
    keys = ['backbone.stem.conv1.weight'
            ] + [f'backbone.stem.conv1.norm.{p}' for p in bn]
    for stage, blocks in enumerate(_RESNET50_BLOCKS, start=2):
        for block in range(blocks):
            prefix = f'backbone.res{stage}.{block}.'
            convs = (['shortcut'] if block == 0 else []) + [
                'conv1', 'conv2', 'conv3'
            ]
            for conv in convs:
                keys += [prefix + conv + '.weight'
                         ] + [f'{prefix}{conv}.norm.{p}' for p in bn]
    for conv in ('convs.0', 'convs.1', 'convs.2', 'extra_convs.0'):
        keys += [f'neck.{conv}.{m}.{p}' for m in ('conv', 'norm') for p in wb]
    keys.append('transformer.level_embeds')
    for i in range(_NUM_LAYERS):
        prefix = f'transformer.encoder.layers.{i}.'
        keys += [prefix + 'attentions.0.' + k for k in attn]
        keys += [prefix + k for k in ffn]
        keys += [f'{prefix}norms.{j}.{p}' for j in range(2) for p in wb]
    for i in range(_NUM_LAYERS):
        prefix = f'transformer.decoder.layers.{i}.'
        keys += [
            prefix + 'attentions.0.attn.' + k
            for k in ('in_proj_weight', 'in_proj_bias', 'out_proj.weight',
                      'out_proj.bias')
        ]
        keys += [prefix + 'attentions.1.' + k for k in attn]
        keys += [prefix + k for k in ffn]
        keys += [f'{prefix}norms.{j}.{p}' for j in range(3) for p in wb]
    keys += [
        f'transformer.decoder.{m}.{p}'
        for m in ('ref_point_head.layers.0', 'ref_point_head.layers.1',
                  'norm') for p in wb
    ]
    keys += ['transformer.tgt_embed.weight'] + [
        f'transformer.{m}.{p}' for m in ('enc_output', 'enc_output_norm')
        for p in wb
    ]
    keys += [f'class_embed.{i}.{p}' for i in range(7) for p in wb]
    keys += [
        f'bbox_embed.{i}.layers.{j}.{p}' for i in range(7) for j in range(3)
        for p in wb
    ]
    keys.append('label_enc.weight')
    return keys


_Template = Union[str, Callable[[re.Match], str]]
_DEFORM_ATTN = r'(sampling_offsets|attention_weights|value_proj|output_proj)'
_NORM = r'(weight|bias|running_mean|running_var)'
# (official key regex, our key): detectron2's ResNet stage ``res{s}`` is
# mmdet's ``layer{s-1}``; detrex's MLP layer j is entry 2j of mmdet's
# Sequential (ReLUs between).
_ALIGN_DETR_RULES: List[Tuple[str, _Template]] = [
    (r'backbone\.stem\.conv1\.weight', 'backbone.conv1.weight'),
    (r'backbone\.stem\.conv1\.norm\.' + _NORM, r'backbone.bn1.\1'),
    (r'backbone\.res([2-5])\.(\d+)\.conv([1-3])\.weight',
     lambda m: f'backbone.layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}.weight'),
    (r'backbone\.res([2-5])\.(\d+)\.conv([1-3])\.norm\.' + _NORM,
     lambda m: f'backbone.layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}.{m[4]}'),
    (r'backbone\.res([2-5])\.0\.shortcut\.weight',
     lambda m: f'backbone.layer{int(m[1]) - 1}.0.downsample.0.weight'),
    (r'backbone\.res([2-5])\.0\.shortcut\.norm\.' + _NORM,
     lambda m: f'backbone.layer{int(m[1]) - 1}.0.downsample.1.{m[2]}'),
    (r'neck\.(convs\.\d+|extra_convs\.0)\.conv\.(weight|bias)',
     r'neck.\1.conv.\2'),
    (r'neck\.(convs\.\d+|extra_convs\.0)\.norm\.(weight|bias)',
     r'neck.\1.gn.\2'),
    (r'transformer\.level_embeds', 'level_embed'),
    (r'transformer\.encoder\.layers\.(\d+)\.attentions\.0\.' + _DEFORM_ATTN +
     r'\.(weight|bias)', r'encoder.layers.\1.self_attn.\2.\3'),
    (r'transformer\.decoder\.layers\.(\d+)\.attentions\.0\.attn\.'
     r'(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)',
     r'decoder.layers.\1.self_attn.attn.\2'),
    (r'transformer\.decoder\.layers\.(\d+)\.attentions\.1\.' + _DEFORM_ATTN +
     r'\.(weight|bias)', r'decoder.layers.\1.cross_attn.\2.\3'),
    (r'transformer\.(en|de)coder\.layers\.(\d+)\.ffns\.0\.layers\.(0\.0|1)\.'
     r'(weight|bias)', r'\1coder.layers.\2.ffn.layers.\3.\4'),
    (r'transformer\.(en|de)coder\.layers\.(\d+)\.norms\.([0-2])\.'
     r'(weight|bias)', r'\1coder.layers.\2.norms.\3.\4'),
    (r'transformer\.decoder\.(ref_point_head\.layers\.[01]|norm)\.'
     r'(weight|bias)', r'decoder.\1.\2'),
    (r'transformer\.tgt_embed\.weight', 'query_embedding.weight'),
    (r'transformer\.enc_output\.(weight|bias)', r'memory_trans_fc.\1'),
    (r'transformer\.enc_output_norm\.(weight|bias)', r'memory_trans_norm.\1'),
    (r'class_embed\.(\d+)\.(weight|bias)', r'bbox_head.cls_branches.\1.\2'),
    (r'bbox_embed\.(\d+)\.layers\.([0-2])\.(weight|bias)',
     lambda m: f'bbox_head.reg_branches.{m[1]}.{2 * int(m[2])}.{m[3]}'),
    (r'label_enc\.weight', 'dn_query_generator.label_embedding.weight'),
]


_ALIGN_DETR_KEYS = frozenset(align_detr_official_keys())


def map_align_detr_key(key: str) -> Optional[str]:
    """Our name of an official Align-DETR key; None for the decoder's copies
    of the prediction heads (``transformer.decoder.{class,bbox}_embed.*``,
    the same modules as ``{class,bbox}_embed.*``).

    Raises:
        UnknownLayoutError: The key is not in the official layout.
    """
    if re.match(r'transformer\.decoder\.(class|bbox)_embed\.', key):
        return None
    if key not in _ALIGN_DETR_KEYS:
        raise UnknownLayoutError(f'unknown key {key!r}')
    for pattern, template in _ALIGN_DETR_RULES:
        m = re.fullmatch(pattern, key)
        if m is not None:
            return template(m) if callable(template) else m.expand(template)
    raise UnknownLayoutError(f'unknown key {key!r}')


def convert_align_detr_state_dict(
        state_dict: Dict[str, torch.Tensor],
        iteration: Optional[int] = None) -> Tuple[OrderedDict, dict]:
    """Official Align-DETR ``model`` state dict -> ours.

    The class rows stay as they are: detectron2's contiguous COCO ids
    (sorted category ids) are mmdet's ``CocoDataset`` order. detrex's own
    DINO-4scale R50 checkpoints have the same layout.

    Args:
        state_dict (dict): The official ``checkpoint['model']`` (detrex's
            DINO: ``backbone.stem``/``res2``-``res5``, ``neck``,
            ``transformer``, ``class_embed``, ``bbox_embed``,
            ``label_enc``; :func:`align_detr_official_keys`), with or
            without the decoder's copies of the heads.
        iteration (int, optional): detectron2's iteration of the
            checkpoint; picks the 12- or 24-epoch config.

    Returns:
        tuple: Our state dict (mmdet's DINO keys, for
        ``configs/align_detr``) and a description (``num_classes``,
        ``config``, ``alternatives``, ``summary``).

    Raises:
        UnknownLayoutError: A key outside the official layout or one of it
            missing (the first of either is named), a head copy that
            differs from its head or has no head, or a level or query count
            other than the configs' (4, 900).
    """
    out, unknown = _rename_all(state_dict, map_align_detr_key,
                               'transformer.decoder.')
    _refuse_unknown(unknown, 'Align-DETR (detrex DINO-4scale R50)')
    missing = [k for k in align_detr_official_keys() if k not in state_dict]
    if missing:
        raise UnknownLayoutError(
            f'{len(missing)} keys of the official Align-DETR (detrex '
            f'DINO-4scale R50) layout are missing, the first: '
            f'{missing[0]!r}')
    for key, size, what in (('level_embed', ALIGN_DETR_NUM_LEVELS,
                             'feature levels'),
                            ('query_embedding.weight',
                             ALIGN_DETR_NUM_QUERIES, 'queries')):
        if out[key].shape[0] != size:
            raise UnknownLayoutError(
                f'{what}: the checkpoint has {out[key].shape[0]} '
                f'({key} {tuple(out[key].shape)}), the Align-DETR configs '
                f'{size}')
    _add_num_batches_tracked(out)
    num_classes = out['bbox_head.cls_branches.0.weight'].shape[0]
    epochs = ALIGN_DETR_SCHEDULES.get(
        iteration + 1 if isinstance(iteration, int) else None)
    schedules = [epochs] if epochs else sorted(ALIGN_DETR_SCHEDULES.values())
    configs = [
        f'align_detr/align-detr{loss}-4scale_r50_8xb2-{e}e_coco.py'
        for loss in ('-ia-bce', '') for e in schedules
    ]
    meta = dict(
        num_classes=num_classes,
        config=configs[0],
        alternatives=configs[1:],
        summary=f'Align-DETR (detrex DINO-4scale R50), {num_classes} '
        'classes' + (f', {epochs} epochs' if epochs else ''),
        config_note='the -ia-bce configs train with the released IA-BCE '
        'loss, the others with the Align Loss (* in the official README); '
        'any of them evaluates the checkpoint (the same network)')
    return out, meta


def convert_checkpoint(checkpoint: dict,
                       num_classes: Optional[int] = None) -> dict:
    """Official checkpoint -> an mmengine checkpoint ``{'state_dict': ...,
    'meta': ...}``; with 80 classes, ``meta['dataset_meta']`` names them
    (mmdet's COCO classes) for mmdet's ``init_detector`` and
    ``DetInferencer``.

    Args:
        checkpoint (dict): The loaded official file: ``{'model': ...}`` (the
            SAM-DETR files and detectron2's checkpoints) or a bare state
            dict. The layout (SAM-DETR or Align-DETR) is recognised from the
            keys.
        num_classes (int, optional): SAM-DETR only: 80 (the default) or 91,
            see :func:`convert_state_dict`. The Align-DETR checkpoints have
            the 80 COCO classes in mmdet's order already.

    Raises:
        UnknownLayoutError: No state dict (naming the first entry that is
            not a tensor), a file converted already, or a layout this
            converter does not know (naming the first unknown key).
        ValueError: ``num_classes`` other than 80 for an Align-DETR
            checkpoint.
    """
    if not isinstance(checkpoint, dict):
        raise UnknownLayoutError(
            'expected a checkpoint dict or a state dict, got '
            f'{type(checkpoint).__name__}')
    if 'state_dict' in checkpoint and 'model' not in checkpoint:
        raise UnknownLayoutError(
            'an mmengine checkpoint ("state_dict"): converted already? '
            'Give it to the config as it is')
    state_dict = checkpoint.get('model', checkpoint)
    if not isinstance(state_dict, dict) or not state_dict:
        raise UnknownLayoutError('no state dict found (expected the key '
                                 '"model" or a dict of tensors)')
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise UnknownLayoutError(
                f'{key!r} is a {type(value).__module__}.'
                f'{type(value).__name__}, not a tensor: not a state dict '
                'that torch.save wrote (the model zoos publish .pth files)')
    if 'backbone.stem.conv1.weight' in state_dict:
        if num_classes not in (None, 80):
            raise ValueError(
                f'num_classes={num_classes}: the official Align-DETR '
                'checkpoints have 80 classes, in mmdet\'s COCO order')
        iteration = checkpoint.get('iteration')
        converted, meta = convert_align_detr_state_dict(
            state_dict, iteration if isinstance(iteration, int) else None)
        meta['source'] = 'official Align-DETR (detrex)'
        if isinstance(iteration, int):
            meta['official_iteration'] = iteration
    elif any(key.startswith('backbone.0.body.') for key in state_dict):
        converted, meta = convert_state_dict(state_dict, num_classes or 80)
        meta['source'] = 'official SAM-DETR'
    else:
        raise UnknownLayoutError(
            'not an official SAM-DETR (backbone.0.body.*) or Align-DETR '
            '(backbone.stem.*) checkpoint: the first key is '
            f'{next(iter(state_dict))!r}')
    if isinstance(checkpoint.get('epoch'), int):
        meta['official_epoch'] = checkpoint['epoch']
    if meta['num_classes'] == 80:
        # the class names mmdet's init_detector / DetInferencer read
        from mmdet.datasets import CocoDataset
        meta['dataset_meta'] = dict(
            classes=tuple(CocoDataset.METAINFO['classes']))
    return dict(state_dict=converted, meta=meta)
