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
are training-only and never part of inference. The graph is the model's
own ``extract_feat``, ``forward_transformer`` and head
(``predict_by_feat``); the decoder always reads the level sizes as Python
integers, and while exporting the detector hands them to its encoder too
(``torch.export`` cannot read them back out of mmdet's ``spatial_shapes``
tensor), which SAM-DETR++'s
:class:`TraceableDeformableDetrTransformerEncoder` accepts, and
:func:`export_onnx` makes the ``torch._shape_as_tensor`` of mmdet's
:meth:`DeformableDETR.pre_transformer` traceable while it exports.
"""
import contextlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmengine.utils import digit_version
from torch import Tensor, nn

from ..models.detectors import SAMDETRMixin

OUTPUT_NAMES = ('boxes', 'scores', 'labels', 'salient_points')

# torch.onnx.export(dynamo=True) with torch.export.Dim.AUTO
ONNX_EXPORT_MIN_TORCH = '2.6.0'


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
        detector (SAMDETRMixin): A :class:`SAMDETR` or
            :class:`SAMDETRPlusPlus` (with or without SMCA, R50 or DC5, any
            head); set to eval mode. Denoising queries are training-only
            and never enter the graph.

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

    def __init__(self, detector: SAMDETRMixin) -> None:
        super().__init__()
        if not isinstance(detector, SAMDETRMixin):
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
        outs = det.forward_transformer(
            det.extract_feat(x), [_ExportMeta(height, width)])
        layer_cls_scores, layer_bbox_preds = det.bbox_head(
            outs['hidden_states'], outs['references'])
        results, = det.bbox_head.predict_by_feat(
            layer_cls_scores,
            layer_bbox_preds, [dict(img_shape=(height, width))],
            rescale=False,
            layer_salient_points=outs['salient_points'])
        return (results.bboxes, results.scores, results.labels,
                results.salient_points)


@contextlib.contextmanager
def _traceable_shape_as_tensor():
    """``torch._shape_as_tensor`` built from the sizes, inside the block.

    Works around mmdet 3.3: :meth:`DeformableDETR.pre_transformer` (used
    by SAM-DETR++) reads each level's size with ``torch._shape_as_tensor``,
    which ``torch.export`` cannot trace (it allocates a real tensor); the
    tensor built here from the symbolic sizes has the same values.
    """
    original = torch._shape_as_tensor

    def shape_as_tensor(tensor: Tensor) -> Tensor:
        one = torch.ones((), dtype=torch.long, device=tensor.device)
        return torch.stack([one * size for size in tensor.shape])

    torch._shape_as_tensor = shape_as_tensor
    try:
        yield
    finally:
        torch._shape_as_tensor = original


def export_onnx(detector: SAMDETRMixin,
                path: str,
                example_shape: Tuple[int, int] = (800, 1333),
                opset_version: int = 18,
                dynamic: bool = True,
                optimize: bool = True,
                verbose: Optional[bool] = False) -> None:
    """Write ``detector``'s inference to an ONNX file.

    Args:
        detector (SAMDETRMixin): The detector (moved to the CPU).
        path (str): The ``.onnx`` file to write.
        example_shape (tuple[int, int]): (H, W) of the example image traced.
            Equivalent code paths chosen by shape (the aligner's
            ``sampling_path``, the side RoIAlign contracts first) are fixed
            at this size: all give the same numbers, at different cost; use
            the size you will run at.
        dynamic (bool): Symbolic height and width (any image size).
            Defaults to True.
        optimize (bool): onnxscript's graph optimization. Defaults to True.
    """
    if digit_version(torch.__version__) < digit_version(
            ONNX_EXPORT_MIN_TORCH):
        raise RuntimeError(
            f'ONNX export needs torch>={ONNX_EXPORT_MIN_TORCH} (the '
            f'torch.export exporter, dynamic_shapes with Dim.AUTO); found '
            f'torch {torch.__version__}')
    module = SAMDETRForExport(detector).cpu()
    example = torch.rand(1, 3, *example_shape) * 255
    dynamic_shapes = None
    if dynamic:
        auto = torch.export.Dim.AUTO
        dynamic_shapes = {'image': {2: auto, 3: auto}}
    with torch.no_grad(), _traceable_shape_as_tensor():
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


def reference_outputs(detector: SAMDETRMixin,
                      image: Tensor) -> Tuple[Tensor, ...]:
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
