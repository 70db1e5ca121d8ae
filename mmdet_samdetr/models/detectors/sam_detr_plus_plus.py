# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR++: multi-scale SAM-DETR (the official ``--multiscale`` model)."""
from typing import Dict, Tuple

import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.detectors import DeformableDETR
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList
from torch import Tensor, nn
from torch.nn.init import normal_

from ..layers import TraceableDeformableDetrTransformerEncoder
from .sam_detr_mixin import SAMDETRMixin


@MODELS.register_module()
class SAMDETRPlusPlus(SAMDETRMixin, DeformableDETR):
    """SAM-DETR++ (the SAM-DETR++ journal; ``--multiscale`` in the official
    code, ZhangGongjie/SAM-DETR).

    C3-C5 projected to ``d`` channels (the neck), Deformable DETR's encoder
    (:class:`DeformableDETR`'s ``pre_transformer`` and ``forward_encoder``:
    level embeddings, per-level masks, valid ratios and sine encodings;
    mmdet's encoder as :class:`TraceableDeformableDetrTransformerEncoder`,
    which can also be exported), and
    the SAM-DETR decoder (:class:`SAMDETRMixin`) reading one level per
    layer, coarse to fine (``decoder.layer_levels``, officially C5, C5, C4,
    C4, C3, C3): inside a layer, RoIAlign, keys, values, padding mask, valid
    size, key positional encoding (sine + level embedding) and the SMCA grid
    all come from that level. Multi-scale information enters only through
    the encoder and this schedule. Reference boxes are always refined, with
    one box branch per layer (``with_box_refine=True``); there is no
    two-stage variant.

    Args:
        num_feature_levels (int): Feature levels. Defaults to 3.
        dn_cfg (dict, optional): Denoising queries, see
            :class:`SAMDETRMixin`.
    """

    def __init__(self,
                 *args,
                 bbox_head: dict,
                 num_feature_levels: int = 3,
                 **kwargs) -> None:
        # DeformableDETR writes the head's layer arguments into this dict
        super().__init__(
            *args,
            bbox_head=dict(bbox_head),
            with_box_refine=True,
            as_two_stage=False,
            num_feature_levels=num_feature_levels,
            **kwargs)

    def _init_layers(self) -> None:
        # mmdet's SinePositionalEncoding unless the config names a type
        self.positional_encoding = MODELS.build(
            dict(dict(type='SinePositionalEncoding'),
                 **self.positional_encoding))
        self.encoder = TraceableDeformableDetrTransformerEncoder(
            **self.encoder)
        self._init_decoder_layers()
        self.level_embed = nn.Parameter(
            torch.Tensor(self.num_feature_levels, self.embed_dims))
        levels = self.decoder.layer_levels
        if levels is not None and not all(
                -self.num_feature_levels <= level < self.num_feature_levels
                for level in levels):
            raise ValueError(
                f'decoder.layer_levels {list(levels)} index '
                f'{self.num_feature_levels} feature levels')

    def init_weights(self) -> None:
        """Official initialization: :meth:`SAMDETRMixin.init_weights`, then
        the deformable attention's own reset (sampling offsets on the
        direction grid, zero attention weights) and N(0, 1) level
        embeddings, as the official ``Transformer._reset_parameters`` of the
        multi-scale model."""
        super().init_weights()
        for m in self.encoder.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        normal_(self.level_embed)

    def pre_transformer(
            self,
            mlvl_feats: Tuple[Tensor],
            batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """:meth:`DeformableDETR.pre_transformer`; the decoder also gets the
        key positional encoding (sine + level embedding) of every level as
        ``memory_pos``, and the level sizes as integers read from the
        feature maps (``spatial_shapes`` [(H, W), ...]; the encoder keeps
        mmdet's tensor)."""
        if len(mlvl_feats) != self.num_feature_levels:
            raise ValueError(
                f'the neck gives {len(mlvl_feats)} feature levels for '
                f'num_feature_levels={self.num_feature_levels}')
        encoder_inputs_dict, decoder_inputs_dict = super().pre_transformer(
            mlvl_feats, batch_data_samples)
        decoder_inputs_dict.update(
            memory_pos=encoder_inputs_dict['feat_pos'],
            spatial_shapes=[tuple(feat.shape[-2:]) for feat in mlvl_feats])
        return encoder_inputs_dict, decoder_inputs_dict
