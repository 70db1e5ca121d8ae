# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""ONNX export of SAM-DETR inference (``tools/export_onnx.py``).

The graph takes one image as the test pipeline leaves it (resized, before
normalization) and returns the detections of mmdet's ``predict`` with
``rescale=False``. torch's ``torch.export``-based exporter
(``dynamo=True``) keeps the image height and width symbolic, so one file
serves any image size. It runs on onnxruntime's CPU provider with the
standard opset alone: the CPU path of our RoIAlign and of the salient-point
sampling is matrix products (the official code's torchvision RoIAlign and
CUDA-only parts cannot be exported).

Exportable: SAM-DETR and SAM-DETR++, with or without SMCA, R50 or DC5,
with any head (Align-DETR's losses change training only). Denoising queries
are training-only and never part of inference. For SAM-DETR++, the
deformable encoder runs through :meth:`SAMDETRForExport.deformable_encoder`,
which computes mmdet's ``DeformableDetrTransformerEncoder`` with the level
sizes as Python integers: mmdet's ``pre_transformer`` and mmcv's
``MultiScaleDeformableAttention.forward`` read them back out of a tensor
(``torch._shape_as_tensor``, an ``assert`` on its values), which
``torch.export`` cannot trace. It uses their modules' parameters and
mmcv's ``multi_scale_deformable_attn_pytorch``; the test checks it against
mmdet's ``predict``.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch
from mmdet.structures import DetDataSample
from mmengine.utils import digit_version
from torch import Tensor, nn

from ..models.detectors import SAMDETR, SAMDETRPlusPlus

OUTPUT_NAMES = ('boxes', 'scores', 'labels', 'salient_points')


class _ExportMeta:
    """The two fields of a data sample that ``pre_transformer`` reads.

    A :class:`DetDataSample` deep-copies its metainfo, which fails on the
    symbolic sizes that ``torch.export`` traces with; the image is one
    unpadded input, so both shapes are the input's.
    """

    def __init__(self, height, width) -> None:
        self.img_shape = self.batch_input_shape = (height, width)


class SAMDETRForExport(nn.Module):
    """A SAM-DETR-family detector as one tensor-in, tensors-out module.

    Args:
        detector (SAMDETR): A :class:`SAMDETR` or :class:`SAMDETRPlusPlus`
            (with or without SMCA, R50 or DC5, any head); set to eval mode.
            Denoising queries are training-only and never enter the graph.

    Inputs:
        image (Tensor): (1, 3, H, W) float32 pixel values in the channel
            order of the data loader (BGR for mmcv's ``LoadImageFromFile``),
            already resized as the test pipeline does; normalization and the
            channel swap of the model's data preprocessor happen inside.

    Returns:
        tuple[Tensor]: ``boxes`` (k, 4) xyxy in input-image pixels,
        ``scores`` (k, ), ``labels`` (k, ) int64 and ``salient_points``
        (k, M, 2) (x, y) in input-image pixels, k = ``test_cfg.max_per_img``,
        best first, as ``detector.predict(..., rescale=False)``.
    """

    def __init__(self, detector: SAMDETR) -> None:
        super().__init__()
        if not isinstance(detector, SAMDETR):
            raise TypeError('SAMDETRForExport exports SAM-DETR-family '
                            f'detectors, got {type(detector).__name__}')
        divisor = getattr(detector.data_preprocessor, 'pad_size_divisor', 1)
        if divisor != 1:
            raise ValueError(
                'the exported graph takes one unpadded image, but '
                f'model.data_preprocessor.pad_size_divisor is {divisor}: '
                'set it to 1 (as every SAM-DETR config does)')
        self.detector = detector
        self.eval()

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        det = self.detector
        pre = det.data_preprocessor
        x = image
        if pre._channel_conversion:
            x = x.flip(1)
        if pre._enable_normalize:
            x = (x - pre.mean) / pre.std
        height, width = x.shape[-2:]
        feats = det.extract_feat(x)
        if isinstance(det, SAMDETRPlusPlus):
            outs = self.multiscale_transformer(feats)
        else:
            outs = det.forward_transformer(feats,
                                           [_ExportMeta(height, width)])
        cls_scores, bbox_preds = det.bbox_head(outs['hidden_states'],
                                               outs['references'])
        # mmdet's post-processing in units of the image size, then scaled
        # by a size tensor: the head builds its scale with ``new_tensor``,
        # which would freeze the traced size into the graph
        results = det.bbox_head._predict_by_feat_single(
            cls_scores[-1, 0],
            bbox_preds[-1, 0],
            dict(img_shape=(1, 1)),
            rescale=False,
            salient_points=outs['salient_points'][-1, 0])
        one = x.new_ones(())
        size = torch.stack([one * width, one * height])
        return (results.bboxes * size.repeat(2), results.scores,
                results.labels, results.salient_points * size)

    def multiscale_transformer(self, feats: Tuple[Tensor]) -> Dict:
        """:meth:`SAMDETR.forward_transformer` of SAM-DETR++ for one
        unpadded image: :meth:`DeformableDETR.pre_transformer` without
        masks (all valid ratios 1), :meth:`deformable_encoder`, and our
        ``pre_decoder`` / ``forward_decoder`` with the level sizes as a
        list."""
        det = self.detector
        shapes = [tuple(feat.shape[-2:]) for feat in feats]
        memory = torch.cat([feat.flatten(2).transpose(1, 2) for feat in feats],
                           1)
        pos = torch.cat([
            det.positional_encoding(None, input=feat).flatten(2).transpose(
                1, 2) + det.level_embed[level]
            for level, feat in enumerate(feats)
        ], 1)
        memory = self.deformable_encoder(memory, pos, shapes)
        decoder_inputs, head_inputs = det.pre_decoder(memory)
        head_inputs.update(
            det.forward_decoder(
                memory_mask=None,
                memory_pos=pos,
                spatial_shapes=shapes,
                **decoder_inputs))
        return head_inputs

    def deformable_encoder(self, query: Tensor, query_pos: Tensor,
                           shapes: List[Tuple[int, int]]) -> Tensor:
        """mmdet's ``DeformableDetrTransformerEncoder.forward`` (layers of
        mmcv's ``MultiScaleDeformableAttention``, eval mode, no padding),
        with ``shapes`` the (H, W) of each level as integers; the sampling
        itself is mmcv's ``multi_scale_deformable_attn_pytorch``.

        Args:
            query (Tensor): Flattened levels, (bs, sum H*W, d).
            query_pos (Tensor): Their sine + level embeddings.

        Returns:
            Tensor: The memory, (bs, sum H*W, d).
        """
        encoder = self.detector.encoder
        # mmdet's get_encoder_reference_points with all valid ratios 1: the
        # cell centres in [0, 1], (bs, sum H*W, num_levels, 2). Written with
        # arange: exported, its linspace + meshgrid gave the smallest level
        # the traced length at other sizes (a broadcast error in
        # onnxruntime).
        centres = []
        for height, width in shapes:
            ys = (torch.arange(height, device=query.device) + 0.5) / height
            xs = (torch.arange(width, device=query.device) + 0.5) / width
            centres.append(
                torch.stack([xs[None].expand(height, -1),
                             ys[:, None].expand(-1, width)], -1).view(-1, 2))
        reference_points = torch.cat(centres).to(query.dtype)[None, :, None]
        reference_points = reference_points.expand(query.size(0), -1,
                                                   len(shapes), -1)
        one = query.new_ones(())
        normalizer = torch.stack(
            [torch.stack([one * width, one * height])
             for height, width in shapes])  # (num_levels, 2) as (W, H)
        for layer in encoder.layers:
            attn = layer.self_attn
            bs, num_query, _ = query.shape
            value = attn.value_proj(query).view(bs, num_query,
                                                attn.num_heads, -1)
            shape = (bs, num_query, attn.num_heads, attn.num_levels,
                     attn.num_points)
            with_pos = query + query_pos
            offsets = attn.sampling_offsets(with_pos).view(*shape, 2)
            weights = attn.attention_weights(with_pos).view(
                bs, num_query, attn.num_heads, -1).softmax(-1).view(shape)
            locations = (reference_points[:, :, None, :, None, :] +
                         offsets / normalizer[:, None, :])
            out = multi_scale_deformable_attn_pytorch(value, shapes,
                                                      locations, weights)
            query = attn.output_proj(out) + query
            query = layer.norms[1](layer.ffn(layer.norms[0](query)))
        return query


def export_onnx(detector: SAMDETR,
                path: str,
                example_shape: Tuple[int, int] = (800, 1333),
                opset_version: int = 18,
                dynamic: bool = True,
                optimize: bool = True,
                verbose: Optional[bool] = False) -> None:
    """Write ``detector``'s inference to an ONNX file.

    Args:
        detector (SAMDETR): The detector (moved to the CPU).
        path (str): The ``.onnx`` file to write.
        example_shape (tuple[int, int]): (H, W) of the example image traced.
            Equivalent code paths chosen by shape (the aligner's point
            sampling, the side RoIAlign contracts first, the attention
            logits' folding) are fixed at this size: all give the same
            numbers, at different cost; use the size you will run at.
        dynamic (bool): Symbolic height and width (any image size).
            Defaults to True.
        optimize (bool): onnxscript's graph optimization. Defaults to True.
    """
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        raise RuntimeError('ONNX export needs torch >= 2.6 (the '
                           f'torch.export exporter), got {torch.__version__}')
    module = SAMDETRForExport(detector).cpu()
    example = torch.rand(1, 3, *example_shape) * 255
    dynamic_shapes = None
    if dynamic:
        auto = torch.export.Dim.AUTO
        dynamic_shapes = {'image': {2: auto, 3: auto}}
    with torch.no_grad():
        torch.onnx.export(
            module, (example, ),
            path,
            input_names=['image'],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset_version,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            optimize=optimize,
            verbose=verbose)


def reference_outputs(detector: SAMDETR, image: Tensor) -> Tuple[Tensor, ...]:
    """What the graph should return for ``image``: mmdet's own path.

    Args:
        image (Tensor): (3, H, W) uint8, as the test pipeline packs it.

    Returns:
        tuple[Tensor]: ``OUTPUT_NAMES`` of ``detector.predict(...,
        rescale=False)`` after the model's data preprocessor.
    """
    height, width = image.shape[-2:]
    sample = DetDataSample(
        metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                      pad_shape=(height, width), scale_factor=(1., 1.)))
    with torch.no_grad():
        data = detector.data_preprocessor(
            dict(inputs=[image], data_samples=[sample]), False)
        pred = detector.predict(data['inputs'], data['data_samples'],
                                rescale=False)[0].pred_instances
    return pred.bboxes, pred.scores, pred.labels, pred.salient_points


def output_differences(reference: Sequence, outputs: Sequence,
                       image_size: Tuple[int, int],
                       tie_gap: float = 1e-5) -> Dict[str, float]:
    """Largest differences between two sets of ``OUTPUT_NAMES`` arrays.

    Scores are compared at every rank. Labels, boxes and points are
    compared at the ranks whose reference score is more than ``tie_gap``
    away from its neighbours' (at a near tie, float rounding may order the
    two detections either way). Boxes and points are compared in units of
    the image size, as the model predicts them.

    Returns:
        dict: ``scores``, ``boxes``, ``salient_points`` (largest absolute
        differences), ``label_mismatches`` and ``compared`` (ranks
        compared).
    """
    ref = [np.asarray(r) for r in reference]
    out = [np.asarray(o) for o in outputs]
    height, width = image_size
    gaps = np.abs(np.diff(ref[1]))
    separated = np.ones(len(ref[1]), dtype=bool)
    separated[1:] &= gaps > tie_gap
    separated[:-1] &= gaps > tie_gap
    scale = np.array([width, height], dtype=np.float64)
    return dict(
        scores=float(np.abs(out[1] - ref[1]).max(initial=0.0)),
        boxes=float(np.abs((out[0] - ref[0]).reshape(-1, 2, 2) /
                           scale)[separated].max(initial=0.0)),
        salient_points=float(
            np.abs((out[3] - ref[3]) / scale)[separated].max(initial=0.0)),
        label_mismatches=int((out[2] != ref[2])[separated].sum()),
        compared=int(separated.sum()))
