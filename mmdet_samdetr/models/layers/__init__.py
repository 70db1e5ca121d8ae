# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .positional_encoding import OfficialSinePositionalEncoding
from .roi_align import (mmcv_roi_align, roi_point_sample,
                        separable_roi_align)
from .salient_point_attention import SalientPointCrossAttention
from .sam_detr_decoder import SAMDETRTransformerDecoder
from .sam_detr_decoder_layer import (SAMDETRTransformerDecoderLayer,
                                     smca_gaussian_bias)
from .semantics_aligner import SemanticsAligner
from .traceable_deformable_encoder import (
    TraceableDeformableDetrTransformerEncoder,
    TraceableMultiScaleDeformableAttention)

__all__ = [
    'OfficialSinePositionalEncoding',
    'mmcv_roi_align', 'roi_point_sample', 'separable_roi_align',
    'SalientPointCrossAttention',
    'SAMDETRTransformerDecoder', 'SAMDETRTransformerDecoderLayer',
    'SemanticsAligner', 'smca_gaussian_bias',
    'TraceableDeformableDetrTransformerEncoder',
    'TraceableMultiScaleDeformableAttention'
]
