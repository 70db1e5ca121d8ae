# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""ONNX export (tools/export_onnx.py): onnxruntime on CPU against mmdet's
own ``predict``, at image sizes other than the traced one."""
import importlib.util
import os.path as osp

import mmcv
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.utils import digit_version

from conftest import REPO, config_path, tiny_model_cfg, tiny_multiscale_cfg
from mmdet_samdetr.apis import (SAMDETRForExport, export_onnx,
                                output_differences, reference_outputs)
from mmdet_samdetr.apis.onnx_export import ONNX_EXPORT_MIN_TORCH

pytestmark = pytest.mark.skipif(
    digit_version(torch.__version__) < digit_version(ONNX_EXPORT_MIN_TORCH),
    reason=f'ONNX export needs torch>={ONNX_EXPORT_MIN_TORCH}')

ATOL = 1e-4
# the traced size (wider than tall), then a wider and a taller image: for
# the taller one PyTorch's RoIAlign contracts the other side first and, in
# the DC5 model (stride 8), the aligner takes its other point-sampling path
# (a 25x9 map), while the graph keeps the paths chosen at the traced size
TRACED = (96, 112)
SIZES = [(64, 160), (200, 72)]


def _tool():
    spec = importlib.util.spec_from_file_location(
        'export_onnx_tool', osp.join(REPO, 'tools', 'export_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(model_cfg):
    """A detector whose class scores are spread apart (random class
    biases), so that few ranks are near ties, and whose deformable
    attention (zero-initialized offset and weight layers) depends on its
    queries."""
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    for fc in model.bbox_head.cls_branches:
        torch.nn.init.normal_(fc.bias, -2.0, 1.5)
    for module in model.modules():
        if isinstance(module, MultiScaleDeformableAttention):
            torch.nn.init.normal_(module.sampling_offsets.weight, std=0.02)
            torch.nn.init.normal_(module.attention_weights.weight, std=0.02)
    return model.eval()


def _images(sizes):
    gen = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (3, h, w), generator=gen,
                          dtype=torch.uint8) for h, w in sizes]


def _check_against_pytorch(model, onnx_path, sizes):
    session = onnxruntime.InferenceSession(
        str(onnx_path), providers=['CPUExecutionProvider'])
    for image in _images(sizes):
        outputs = session.run(None, {'image': image[None].float().numpy()})
        reference = reference_outputs(model, image)
        assert [o.shape for o in outputs] == [tuple(r.shape)
                                              for r in reference]
        diff = output_differences(reference, outputs, image.shape[-2:])
        assert diff['compared'] >= len(outputs[1]) // 2, diff
        assert diff['label_mismatches'] == 0, diff
        for key in ('scores', 'boxes', 'salient_points'):
            assert diff[key] < ATOL, (tuple(image.shape), diff)


def test_tool_exports_toy_sam_detr_and_verifies(tmp_path, capsys):
    """The toy config's model (the demo's architecture, random weights: the
    trained toy checkpoint is not part of the repository)."""
    cfg = Config.fromfile(
        config_path('sam_detr_toy/sam-detr_r18_1xb8-toy-shapes.py'))
    cfg.model.backbone.init_cfg = None
    model = _build(cfg.model)
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    cfg_path = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_path))
    onnx_path = tmp_path / 'model.onnx'
    assert _tool().main([
        str(cfg_path), str(ckpt), '--out', str(onnx_path), '--shape',
        *map(str, TRACED), '--verify'
    ]) == 0
    printed = capsys.readouterr().out
    assert 'random 96x112' in printed and 'random 72x144' in printed
    # height and width stay symbolic in the graph
    dims = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape
    assert [d.dim_value for d in dims.dim[:2]] == [1, 3]
    assert all(d.dim_param and not d.dim_value for d in dims.dim[2:])
    _check_against_pytorch(model, onnx_path, [TRACED] + SIZES)
    # --verify IMAGE: a file through the test pipeline (resized to fit
    # 96x96 as the toy config does)
    image = tmp_path / 'image.png'
    mmcv.imwrite(np.random.default_rng(0).integers(
        0, 256, (60, 150, 3), dtype=np.uint8), str(image))
    tool = _tool()
    (name, packed), = tool.pipeline_inputs(cfg, [str(image)])
    assert tuple(packed.shape) == (3, 38, 96)
    assert tool.verify(model, str(onnx_path), [(name, packed)]) < ATOL


def test_dc5_smca_align_head_exports(tmp_path):
    model_cfg = tiny_model_cfg(
        num_classes=5, with_smca=True,
        config='align_sam_detr/align-sam-detr_r50-dc5_8xb1-12e_coco.py')
    model_cfg.backbone.update(strides=(1, 2, 1), dilations=(1, 1, 2))
    model = _build(model_cfg)
    onnx_path = tmp_path / 'model.onnx'
    export_onnx(model, str(onnx_path), example_shape=TRACED, optimize=False)
    _check_against_pytorch(model, onnx_path, SIZES)


def test_sam_detr_pp_smca_exports(tmp_path):
    """SAM-DETR++ (three levels, deformable encoder, decoder layers on
    levels 2, 1, 0) with SMCA; DN is training-only."""
    model = _build(tiny_multiscale_cfg(num_classes=5, with_smca=True,
                                       with_dn=True))
    onnx_path = tmp_path / 'model.onnx'
    export_onnx(model, str(onnx_path), example_shape=TRACED, optimize=False)
    _check_against_pytorch(model, onnx_path, SIZES)


def test_refuses_padded_inputs():
    padded = tiny_model_cfg()
    padded.data_preprocessor.pad_size_divisor = 32
    with pytest.raises(ValueError, match='pad_size_divisor is 32'):
        SAMDETRForExport(_build(padded))


def test_output_differences_sees_errors_and_skips_only_ties():
    boxes = np.array([[0., 0., 10., 20.], [5., 5., 8., 8.], [1., 1., 2., 2.]])
    points = np.zeros((3, 8, 2))
    scores = np.array([0.9, 0.5, 0.5 - 1e-7])  # ranks 1 and 2 near a tie
    labels = np.array([0, 1, 2])
    reference = (boxes, scores, labels, points)
    moved = boxes.copy()
    moved[0, 2] += 0.5  # half a pixel on a 10 px wide image
    diff = output_differences(reference, (moved, scores, labels, points),
                              (20, 10))
    assert diff['boxes'] == pytest.approx(0.05)
    assert diff['compared'] == 1 and diff['label_mismatches'] == 0
    swapped = (boxes[[0, 2, 1]], scores, labels[[0, 2, 1]], points)
    diff = output_differences(reference, swapped, (20, 10))
    assert diff['boxes'] == 0 and diff['label_mismatches'] == 0
    wrong = output_differences(reference,
                               (boxes, scores, labels[[1, 0, 2]], points),
                               (20, 10))
    assert wrong['label_mismatches'] == 1
