# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The SAM-DETR decoder side shared by SAM-DETR and SAM-DETR++."""
import logging
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.layers import CdnQueryGenerator
from mmdet.structures import OptSampleList, SampleList
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import OptConfigType
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..layers import SAMDETRTransformerDecoder
from ..utils import check_gt_labels, image_name


# torch.compiler.is_exporting is missing before torch 2.5; such a torch
# cannot run the ONNX export (torch >= 2.6), so nothing is being exported
_is_exporting = getattr(torch.compiler, 'is_exporting', lambda: False)


class SAMDETRMixin:
    """SAM-DETR's queries, decoder and training rules, for a detector of
    mmdet's DETR family (``SAMDETR(SAMDETRMixin, DETR)``,
    ``SAMDETRPlusPlus(SAMDETRMixin, DeformableDETR)``).

    The parent detector keeps its ``pre_transformer`` and
    ``forward_encoder``; its ``pre_transformer`` must hand the decoder
    ``spatial_shapes`` as (H, W) integer pairs read from the feature maps
    (the decoder splits and reshapes the memory by them, so no sizes are
    read back from a device tensor), mmdet's ``valid_ratios`` (bs, L, 2)
    and ``memory_pos``. This mixin gives:

    - the queries (:meth:`pre_decoder`): zero content queries and learnable
      reference boxes ``query_embedding`` (num_queries, 4), stored before
      sigmoid, N(0, 1) init; in training with ``dn_cfg``, denoising queries
      of mmdet's :class:`CdnQueryGenerator` in front of them;
    - the decoder (:class:`SAMDETRTransformerDecoder`, refined by the head's
      regression branches) and :meth:`forward_decoder`;
    - :meth:`forward_transformer` passing the data samples to
      :meth:`pre_decoder` (as mmdet's DINO);
    - :meth:`loss` after :func:`check_gt_labels` and :meth:`sanitize_gt`;
      the salient points go to the head's ``predict`` only (not to
      ``loss`` nor, in tensor mode, ``forward``);
    - the official initialization (:meth:`init_weights`).

    Args:
        dn_cfg (dict, optional): Denoising queries, the arguments of mmdet's
            :class:`CdnQueryGenerator` except ``num_classes``, ``embed_dims``
            and ``num_matching_queries`` (set from the model). None (the
            default): no denoising.
    """

    def __init__(self, *args, dn_cfg: OptConfigType = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dn_query_generator = None
        if dn_cfg is not None:
            for key in ('num_classes', 'embed_dims', 'num_matching_queries'):
                if key in dn_cfg:
                    raise ValueError(f'dn_cfg.{key} is set by the detector; '
                                     'remove it from the config')
            self.dn_query_generator = CdnQueryGenerator(
                **dn_cfg,
                num_classes=self.bbox_head.num_classes,
                embed_dims=self.embed_dims,
                num_matching_queries=self.num_queries)

    def _init_decoder_layers(self) -> None:
        """The decoder and the reference boxes; called by ``_init_layers``
        after the encoder is built."""
        self.decoder = SAMDETRTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, 4)
        if self.positional_encoding.num_feats * 2 != self.embed_dims:
            raise ValueError(
                'positional_encoding.num_feats must be embed_dims / 2, got '
                f'{self.positional_encoding.num_feats} and {self.embed_dims}')

    def init_weights(self) -> None:
        """Official effective initialization.

        The children's own rules (mmengine's :meth:`BaseModule.init_weights`;
        the parent detector's rules are replaced, Deformable DETR's would
        initialize layers SAM-DETR++ does not have), then xavier on every
        matrix of the encoder and decoder (DETR's rule and the official
        ``Transformer._reset_parameters``, which also overrides the
        salient-point MLP's zero weight) and PyTorch's default init for the
        input projection convs (the official ``input_proj``). The reference
        boxes keep N(0, 1) (``nn.Embedding`` default).
        """
        BaseModule.init_weights(self)
        for coder in self.encoder, self.decoder:
            for p in coder.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        if self.with_neck and getattr(self.neck, 'init_cfg', None) is None:
            for m in self.neck.modules():
                if isinstance(m, nn.Conv2d):
                    m.reset_parameters()

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """:meth:`DetectionTransformer.loss`, after :func:`check_gt_labels`
        (before the denoising queries embed the labels) and
        :meth:`sanitize_gt` on every sample; the salient points are for
        predictions only.

        Raises:
            ValueError: A ground-truth label outside ``[0, num_classes)`` or
                a non-finite box, naming the image.
        """
        check_gt_labels(batch_data_samples, self.bbox_head.num_classes)
        for sample in batch_data_samples:
            self.sanitize_gt(sample)
        head_inputs_dict = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        del head_inputs_dict['salient_points']
        return self.bbox_head.loss(
            **head_inputs_dict, batch_data_samples=batch_data_samples)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None
                 ) -> Tuple[Tensor, Tensor]:
        """Tensor mode: the head's forward outputs, class scores
        (num_layers, bs, nq, cls_out_channels) and normalized boxes
        (num_layers, bs, nq, 4) of every decoder layer."""
        head_inputs_dict = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head(head_inputs_dict['hidden_states'],
                              head_inputs_dict['references'])

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
        name = image_name(sample.metainfo)
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

    def forward_transformer(self,
                            img_feats: Tuple[Tensor],
                            batch_data_samples: OptSampleList = None
                            ) -> Dict:
        """:meth:`DetectionTransformer.forward_transformer`, with the data
        samples also passed to :meth:`pre_decoder` (for the denoising
        queries), as in mmdet's DINO.

        While ``torch.export`` traces the model (ONNX export), the encoder
        gets the decoder's integer ``spatial_shapes`` too: ``torch.export``
        cannot read sizes back out of mmdet's tensor.
        """
        encoder_inputs_dict, decoder_inputs_dict = self.pre_transformer(
            img_feats, batch_data_samples)
        if _is_exporting() and \
                'spatial_shapes' in encoder_inputs_dict:
            encoder_inputs_dict['spatial_shapes'] = \
                decoder_inputs_dict['spatial_shapes']
        encoder_outputs_dict = self.forward_encoder(**encoder_inputs_dict)
        decoder_inputs, head_inputs_dict = self.pre_decoder(
            **encoder_outputs_dict, batch_data_samples=batch_data_samples)
        decoder_inputs_dict.update(decoder_inputs)
        head_inputs_dict.update(self.forward_decoder(**decoder_inputs_dict))
        return head_inputs_dict

    def pre_decoder(self,
                    memory: Tensor,
                    batch_data_samples: OptSampleList = None,
                    **kwargs) -> Tuple[Dict, Dict]:
        """Zero content queries and the learnable reference boxes; in
        training with ``dn_cfg``, denoising queries in front of them.

        Denoising queries (mmdet's :class:`CdnQueryGenerator`) take the label
        embedding of a noised ground-truth class as content and the noised
        ground-truth box as reference box; the Semantics Aligner treats them
        exactly as matching queries (SAM-DETR++ journal, Sec. 4.5.2: DN is
        complementary "without any adaptation").

        Returns:
            tuple[dict, dict]: ``query`` (bs, nq_total, d),
            ``reference_points_unact`` (bs, nq_total, 4) (boxes before
            sigmoid), ``memory`` and ``dn_mask`` (nq_total, nq_total) or None
            for the decoder; ``dn_meta`` (or nothing) for the head.
        """
        batch_size = memory.size(0)
        reference_points_unact = self.query_embedding.weight[None].expand(
            batch_size, -1, -1)
        query = memory.new_zeros(batch_size, self.num_queries,
                                 self.embed_dims)
        decoder_inputs_dict = dict(memory=memory, dn_mask=None)
        head_inputs_dict = dict()
        if self.training and self.dn_query_generator is not None:
            dn_query, dn_reference_unact, dn_mask, dn_meta = \
                self.dn_query_generator(batch_data_samples)
            query = torch.cat([dn_query, query], dim=1)
            reference_points_unact = torch.cat(
                [dn_reference_unact, reference_points_unact], dim=1)
            decoder_inputs_dict['dn_mask'] = dn_mask
            head_inputs_dict['dn_meta'] = dn_meta
        decoder_inputs_dict.update(
            query=query, reference_points_unact=reference_points_unact)
        return decoder_inputs_dict, head_inputs_dict

    def forward_decoder(self,
                        query: Tensor,
                        reference_points_unact: Tensor,
                        memory: Tensor,
                        memory_mask: Optional[Tensor],
                        memory_pos: Tensor,
                        spatial_shapes: List[Tuple[int, int]],
                        valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None,
                        **kwargs) -> Dict:
        """Run the decoder.

        Args:
            spatial_shapes (list[tuple[int, int]]): (H, W) of each level
                (the decoder splits the memory into levels by these
                sizes).
            valid_ratios (Tensor): Unpadded fraction (w, h) of each level
                per image, (bs, L, 2).
            dn_mask (Tensor, optional): Self-attention mask of the
                denoising groups, (nq_total, nq_total), True = masked.

        Returns:
            dict: ``hidden_states`` (num_layers, bs, nq, d), ``references``
            (num_layers, bs, nq, 4) (the boxes each layer read) and
            ``salient_points`` (num_layers, bs, nq, M, 2).
        """
        hidden_states, references, salient_points = self.decoder(
            query=query,
            memory=memory,
            memory_pos=memory_pos,
            reference_points_unact=reference_points_unact,
            spatial_shapes=spatial_shapes,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches,
            key_padding_mask=memory_mask,
            self_attn_mask=dn_mask)
        return dict(
            hidden_states=hidden_states,
            references=references,
            salient_points=salient_points)
