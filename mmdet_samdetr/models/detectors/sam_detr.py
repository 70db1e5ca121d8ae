# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR: Accelerating DETR Convergence via Semantic-Aligned Matching."""
import logging
from typing import Dict, Tuple

import torch
from mmdet.models.detectors import DETR
from mmdet.models.layers import DetrTransformerEncoder, SinePositionalEncoding
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.structures.bbox import get_box_tensor
from mmengine.logging import print_log
from torch import Tensor, nn

from ..layers import SAMDETRTransformerDecoder


@MODELS.register_module()
class SAMDETR(DETR):
    r"""`SAM-DETR <https://arxiv.org/abs/2203.06883>`_ (CVPR 2022).

    DETR's encoder; learnable reference boxes (``query_embedding``, stored
    before sigmoid, N(0, 1) init) refined after every decoder layer by the
    head's regression branch of that layer; a Semantics Aligner in front of
    every cross-attention. Optional SMCA (``decoder.layer_cfg.with_smca``).

    The decoder needs the 2-D memory, so ``pre_transformer`` also passes the
    feature size(s) as ``spatial_shapes``.
    """

    def __init__(self, *args, decoder: dict, bbox_head: dict,
                 **kwargs) -> None:
        bbox_head = dict(bbox_head)
        bbox_head['num_pred_layer'] = decoder['num_layers']
        super().__init__(*args, decoder=decoder, bbox_head=bbox_head,
                         **kwargs)

    def _init_layers(self) -> None:
        self.positional_encoding = SinePositionalEncoding(
            **self.positional_encoding)
        self.encoder = DetrTransformerEncoder(**self.encoder)
        self.decoder = SAMDETRTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, 4)
        if self.positional_encoding.num_feats * 2 != self.embed_dims:
            raise ValueError(
                'positional_encoding.num_feats must be embed_dims / 2, got '
                f'{self.positional_encoding.num_feats} and {self.embed_dims}')

    def init_weights(self) -> None:
        """Official effective initialization (spec §8).

        xavier on every matrix of the encoder and decoder (DETR's rule, which
        also overrides the salient-point MLP's zero weight, as in the
        official code); PyTorch's default init for the input projection
        convs; N(0, 1) for the reference boxes (``nn.Embedding`` default).
        """
        super().init_weights()
        if self.with_neck and getattr(self.neck, 'init_cfg', None) is None:
            for m in self.neck.modules():
                if isinstance(m, nn.Conv2d):
                    m.reset_parameters()

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """DETR's loss, after :meth:`sanitize_gt` on every sample."""
        for sample in batch_data_samples:
            self.sanitize_gt(sample)
        return super().loss(batch_inputs, batch_data_samples)

    @staticmethod
    def sanitize_gt(sample) -> None:
        """Clip ground-truth boxes to the image and drop empty ones.

        Boxes that leave the image are clipped; boxes with no area inside it
        (degenerate, or outside) are dropped with a warning naming the image;
        non-finite coordinates raise ``ValueError`` naming the image.
        """
        gt = sample.gt_instances
        boxes = get_box_tensor(gt.bboxes)
        if boxes.numel() == 0:
            return
        name = sample.metainfo.get('img_path',
                                   sample.metainfo.get('img_id', '?'))
        if not torch.isfinite(boxes).all():
            bad = (~torch.isfinite(boxes)).any(1).nonzero()[:, 0].tolist()
            raise ValueError(f'image {name}: ground-truth boxes {bad} have '
                             f'non-finite coordinates: {boxes[bad].tolist()}')
        height, width = sample.metainfo['img_shape'][:2]
        limit = boxes.new_tensor([width, height, width, height])
        clipped = torch.minimum(boxes.clamp(min=0), limit)
        keep = ((clipped[:, 2] > clipped[:, 0]) &
                (clipped[:, 3] > clipped[:, 1]))
        if isinstance(gt.bboxes, Tensor):
            gt.bboxes = clipped
        else:
            gt.bboxes.tensor = clipped
        if not keep.all():
            dropped = (~keep).nonzero()[:, 0].tolist()
            print_log(
                f'image {name}: dropped ground-truth boxes {dropped} with '
                f'no area inside the {width}x{height} image: '
                f'{boxes[~keep].tolist()}',
                logger='current',
                level=logging.WARNING)
            sample.gt_instances = gt[keep]

    def pre_transformer(
            self,
            img_feats: Tuple[Tensor],
            batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """DETR's inputs plus ``spatial_shapes`` [(H, W)] for the decoder."""
        encoder_inputs_dict, decoder_inputs_dict = super().pre_transformer(
            img_feats, batch_data_samples)
        decoder_inputs_dict['spatial_shapes'] = [
            tuple(img_feats[-1].shape[-2:])
        ]
        return encoder_inputs_dict, decoder_inputs_dict

    def pre_decoder(self, memory: Tensor) -> Tuple[Dict, Dict]:
        """Zero content queries and the learnable reference boxes.

        Returns:
            tuple[dict, dict]: ``query`` (bs, nq, d), ``reference_unsigmoid``
            (bs, nq, 4) and ``memory`` for the decoder; nothing for the
            head.
        """
        batch_size = memory.size(0)
        reference_unsigmoid = self.query_embedding.weight[None].expand(
            batch_size, -1, -1)
        query = memory.new_zeros(batch_size, self.num_queries,
                                 self.embed_dims)
        decoder_inputs_dict = dict(
            query=query, reference_unsigmoid=reference_unsigmoid,
            memory=memory)
        return decoder_inputs_dict, dict()

    def forward_decoder(self, query: Tensor, reference_unsigmoid: Tensor,
                        memory: Tensor, memory_mask: Tensor,
                        memory_pos: Tensor, spatial_shapes: list) -> Dict:
        """Run the decoder.

        Returns:
            dict: ``hidden_states`` (L, bs, nq, d), ``references``
            (L, bs, nq, 4) (the boxes each layer read) and
            ``salient_points`` (L, bs, nq, M, 2).
        """
        hidden_states, references, salient_points = self.decoder(
            query=query,
            memory=memory,
            memory_pos=memory_pos,
            reference_unsigmoid=reference_unsigmoid,
            spatial_shapes=spatial_shapes,
            reg_branches=self.bbox_head.reg_branches,
            key_padding_mask=memory_mask)
        return dict(
            hidden_states=hidden_states,
            references=references,
            salient_points=salient_points)
