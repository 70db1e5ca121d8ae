# Copyright (c) mmdet_samdetr contributors. All rights reserved.
from .attention_maps import collect_attention
from .onnx_export import (SAMDETRForExport, export_onnx, output_differences,
                          reference_outputs)
from .sam_detr_inferencer import SAMDETRInferencer

__all__ = [
    'SAMDETRInferencer', 'collect_attention', 'SAMDETRForExport',
    'export_onnx', 'reference_outputs', 'output_differences'
]
