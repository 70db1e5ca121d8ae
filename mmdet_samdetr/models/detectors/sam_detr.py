# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR: Accelerating DETR Convergence via Semantic-Aligned Matching."""
from typing import Dict, Tuple

from mmdet.models.detectors import DETR, DeformableDETR
from mmdet.models.layers import DetrTransformerEncoder
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList
from torch import Tensor

from .sam_detr_mixin import SAMDETRMixin


@MODELS.register_module()
class SAMDETR(SAMDETRMixin, DETR):
    r"""`SAM-DETR <https://arxiv.org/abs/2203.06883>`_ (CVPR 2022).

    DETR's encoder; learnable reference boxes (``query_embedding``, stored
    before sigmoid, N(0, 1) init) refined after every decoder layer by the
    head's regression branch of that layer; a Semantics Aligner in front of
    every cross-attention. Optional SMCA (``decoder.layer_cfg.with_smca``)
    and denoising training (``dn_cfg``, the SAM-DETR++ journal's "w/ DN").
    The decoder side is :class:`SAMDETRMixin`'s.

    Args:
        dn_cfg (dict, optional): Denoising queries, see
            :class:`SAMDETRMixin`. None (the default): no denoising.
    """

    def __init__(self, *args, decoder: dict, bbox_head: dict,
                 **kwargs) -> None:
        # one box branch per decoder layer (DeformableDETR sets this for
        # SAM-DETR++)
        bbox_head = dict(bbox_head, num_pred_layer=decoder['num_layers'])
        super().__init__(*args, decoder=decoder, bbox_head=bbox_head,
                         **kwargs)

    def _init_layers(self) -> None:
        # mmdet's SinePositionalEncoding unless the config names a type
        self.positional_encoding = MODELS.build(
            dict(dict(type='SinePositionalEncoding'),
                 **self.positional_encoding))
        self.encoder = DetrTransformerEncoder(**self.encoder)
        self._init_decoder_layers()

    def pre_transformer(
            self,
            img_feats: Tuple[Tensor],
            batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """:meth:`DETR.pre_transformer`; the decoder also gets the level's
        size, ``spatial_shapes`` [(H, W)] as integers, and mmdet's
        ``valid_ratios`` (bs, 1, 2) (:meth:`DeformableDETR.get_valid_ratio`
        of the padding mask, all 1 without padding)."""
        encoder_inputs_dict, decoder_inputs_dict = super().pre_transformer(
            img_feats, batch_data_samples)
        feat = img_feats[-1]
        batch_size, _, height, width = feat.shape
        mask = decoder_inputs_dict['memory_mask']  # (bs, H * W) or None
        if mask is None:
            valid_ratios = feat.new_ones((batch_size, 1, 2))
        else:
            valid_ratios = DeformableDETR.get_valid_ratio(
                mask.view(batch_size, height, width))[:, None].to(feat.dtype)
        decoder_inputs_dict.update(
            spatial_shapes=[(height, width)], valid_ratios=valid_ratios)
        return encoder_inputs_dict, decoder_inputs_dict
