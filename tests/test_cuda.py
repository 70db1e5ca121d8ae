# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The CUDA path: mmcv's RoIAlign op on the GPU gives what the CPU path
gives, for the op, the Semantics Aligner and the whole detector; every
family trains in float16 with loss scaling (``--amp``); and mmdet's
``dist_train.sh`` keeps NCCL on a GPU machine.

Skipped where torch sees no GPU (CI); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""
import copy
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmdet.apis import inference_detector, init_detector

from conftest import REPO, tiny_model_cfg, tiny_multiscale_cfg
from mmdet_samdetr.apis import SAMDETRInferencer
from mmdet_samdetr.models.layers import (SemanticsAligner, mmcv_roi_align,
                                         roi_point_sample, semantics_aligner,
                                         separable_roi_align)
from test_amp import ATOL, RTOL
from test_amp import FAMILIES as AMP_FAMILIES
from test_amp import (amp_losses, build, grads_of,
                      train_two_amp_iterations)
from test_inference import FAMILIES, fresh, make_family
from test_inference import _images as inference_images

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA device')


@pytest.fixture(autouse=True)
def exact_float32():
    """No TF32: the CPU/GPU comparisons below are at float32 precision."""
    old = (torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = old


def _boxes(bs, num, height, width, scale, dtype=torch.float64):
    centre = torch.rand(bs, num, 2, dtype=dtype) * torch.tensor(
        [width, height], dtype=dtype) * 1.3 - 2
    size = torch.rand(bs, num, 2, dtype=dtype) * torch.tensor(
        [width, height], dtype=dtype) * scale
    return torch.cat([centre - size / 2, centre + size / 2], -1)


@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('box_scale', [0.05, 0.6, 2.0])
def test_mmcv_cuda_roi_align_equals_cpu_separable(sampling_ratio, aligned,
                                                  box_scale):
    torch.manual_seed(0)
    feat = torch.randn(2, 6, 11, 15, dtype=torch.float64, requires_grad=True)
    boxes = _boxes(2, 40, 11, 15, box_scale)
    ours = separable_roi_align(feat, boxes, (7, 7), 1.0, sampling_ratio,
                               aligned)
    feat_gpu = feat.detach().cuda().requires_grad_(True)
    ref = mmcv_roi_align(feat_gpu, boxes.cuda(), (7, 7), 1.0,
                         sampling_ratio, aligned)
    torch.testing.assert_close(ref.cpu(), ours, rtol=0, atol=1e-12)
    grad_out = torch.randn(ref.shape, dtype=ref.dtype)
    (g_ours, ) = torch.autograd.grad((ours * grad_out).sum(), feat)
    (g_ref, ) = torch.autograd.grad((ref * grad_out.cuda()).sum(), feat_gpu)
    torch.testing.assert_close(g_ref.cpu(), g_ours, rtol=0, atol=1e-11)


def test_aligner_uses_mmcv_on_cuda_only(monkeypatch):
    import mmcv.ops
    calls = []
    real = mmcv.ops.roi_align

    def spy(*args, **kwargs):
        calls.append(args[0].device)
        return real(*args, **kwargs)

    monkeypatch.setattr(mmcv.ops, 'roi_align', spy)
    aligner = SemanticsAligner(embed_dims=32, reduced_dims=8,
                               mlp_dims=(32, 32, 32)).cuda()
    inputs = (torch.randn(1, 5, 32), torch.randn(1, 32, 40, 40),
              torch.rand(1, 5, 4) * 0.5 + 0.2, torch.tensor([[40., 40.]]))
    aligner(*[t.cuda() for t in inputs])  # the reference: mmcv's op
    assert calls == [torch.device('cuda', torch.cuda.current_device())]
    aligner.cpu()(*inputs)  # 40x40 on the CPU: 'separable', not the op
    assert len(calls) == 1


def test_point_sample_on_cuda_equals_cpu():
    torch.manual_seed(1)
    feat = torch.randn(2, 5, 9, 14, dtype=torch.float64, requires_grad=True)
    boxes = _boxes(2, 30, 9, 14, 0.6)
    points = (torch.rand(2, 30, 6, 2, dtype=torch.float64) * 2 -
              1).requires_grad_(True)
    ours = roi_point_sample(feat, boxes, points)
    inputs = [t.detach().cuda().requires_grad_(True) for t in (feat, points)]
    gpu = roi_point_sample(inputs[0], boxes.cuda(), inputs[1])
    torch.testing.assert_close(gpu.cpu(), ours, rtol=0, atol=1e-12)
    grad_out = torch.randn(ours.shape, dtype=ours.dtype)
    grads = torch.autograd.grad((ours * grad_out).sum(), [feat, points])
    grads_gpu = torch.autograd.grad((gpu * grad_out.cuda()).sum(), inputs)
    for g_gpu, g_cpu in zip(grads_gpu, grads):
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=0, atol=1e-11)


@pytest.mark.parametrize('cpu_path', ['direct', 'separable'])
def test_aligner_on_cuda_equals_cpu(cpu_path, monkeypatch):
    """Same module, same inputs: the reference on CUDA (mmcv's op,
    grid_sample) and each CPU path give the same outputs and gradients
    (float64)."""
    torch.manual_seed(0)
    aligner = SemanticsAligner(
        embed_dims=32, reduced_dims=8, mlp_dims=(32, 32, 32),
        with_smca=True)
    aligner.init_weights()
    torch.nn.init.normal_(aligner.point_predictor[-1].weight, std=0.3)
    aligner = aligner.double()
    query = torch.randn(2, 20, 32, dtype=torch.float64)
    memory = torch.randn(2, 32, 9, 13, dtype=torch.float64)
    boxes = torch.cat([torch.rand(2, 20, 2), torch.rand(2, 20, 2) * 0.9 +
                       0.05], -1).double()
    valid = torch.tensor([[13., 9.], [9., 7.]], dtype=torch.float64)

    def run(module, device):
        inputs = [t.to(device).requires_grad_(True) for t in (query, memory)]
        out = module(inputs[0], inputs[1], boxes.to(device), valid.to(device))
        loss = sum((v * (i + 1)).sin().sum()
                   for i, v in enumerate(out.values()))
        grads = torch.autograd.grad(loss, inputs + list(module.parameters()))
        return {k: v.cpu() for k, v in out.items()}, [g.cpu() for g in grads]

    chosen = semantics_aligner.sampling_path
    monkeypatch.setattr(semantics_aligner, 'sampling_path',
                        lambda *args: cpu_path)
    out_cpu, grads_cpu = run(aligner, 'cpu')
    monkeypatch.setattr(semantics_aligner, 'sampling_path', chosen)
    out_gpu, grads_gpu = run(copy.deepcopy(aligner).cuda(), 'cuda')
    for key in out_cpu:
        torch.testing.assert_close(out_gpu[key], out_cpu[key], rtol=0,
                                   atol=1e-10)
    for g_gpu, g_cpu in zip(grads_gpu, grads_cpu):
        torch.testing.assert_close(g_gpu, g_cpu, rtol=1e-9, atol=1e-9)


def _packed(model, device, training=True):
    """The same padded batch of two sizes, preprocessed on ``device``."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(3)
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 100, 130]],
                            num_classes=4)
    model.to(device)
    return model.data_preprocessor(packed, training)


def _tiny_detector(with_smca, kind='ss', with_dn=False):
    """Tiny detector without dropout: CPU and CUDA draw different masks.
    ``kind='ms'``: SAM-DETR++ (mmcv's CUDA deformable attention on the
    GPU, its PyTorch form on the CPU)."""
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    build_cfg = tiny_multiscale_cfg if kind == 'ms' else tiny_model_cfg
    model = MODELS.build(build_cfg(with_smca=with_smca, with_dn=with_dn))
    model.init_weights()
    return without_dropout(model)


def without_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


@pytest.mark.parametrize('kind', ['ss', 'ms'])
@pytest.mark.parametrize('with_smca', [False, True])
def test_detector_losses_and_gradients_on_cuda_equal_cpu(with_smca, kind):
    """A padded batch of two sizes through the whole tiny detector: mmcv's
    CUDA RoIAlign (and deformable attention) and focal loss give the CPU
    path's losses and gradients (float32, TF32 off)."""
    model = _tiny_detector(with_smca, kind)
    results = {}
    for device in ('cpu', 'cuda'):
        net = copy.deepcopy(model)
        data = _packed(net, device)
        losses = net(**data, mode='loss')
        sum(losses.values()).backward()
        results[device] = (
            {k: v.item() for k, v in losses.items()},
            {n: p.grad.cpu() for n, p in net.named_parameters()
             if p.grad is not None})
    (loss_cpu, grad_cpu), (loss_gpu, grad_gpu) = results['cpu'], \
        results['cuda']
    assert loss_gpu.keys() == loss_cpu.keys()
    for key in loss_cpu:
        assert loss_gpu[key] == pytest.approx(loss_cpu[key], rel=1e-4,
                                              abs=1e-6), key
    assert grad_gpu.keys() == grad_cpu.keys()
    for name in grad_cpu:
        err = (grad_gpu[name] - grad_cpu[name]).norm()
        assert err <= 1e-3 * grad_cpu[name].norm() + 1e-6, name


@pytest.mark.parametrize('kind', ['ss', 'ms'])
def test_denoising_trains_on_cuda(kind):
    """DN on the GPU (its noise is drawn on the device, so no CPU
    comparison): every loss finite, the label embedding learns."""
    model = _tiny_detector(True, kind, with_dn=True)
    data = _packed(model, 'cuda')
    losses = model(**data, mode='loss')
    assert 'dn_loss_bbox' in losses
    assert all(torch.isfinite(v).all() for v in losses.values())
    sum(losses.values()).backward()
    grad = model.dn_query_generator.label_embedding.weight.grad
    assert grad is not None and grad.abs().max() > 0


def assert_same_detections(gpu, cpu):
    """Scores, boxes and salient points of the GPU run as the CPU run's."""
    torch.testing.assert_close(gpu.scores, cpu.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu.bboxes, cpu.bboxes, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(gpu.salient_points, cpu.salient_points,
                               rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('kind', ['ss', 'ms'])
def test_predict_on_cuda_equals_cpu(kind):
    model = _tiny_detector(True, kind).eval()
    preds = {}
    for device in ('cpu', 'cuda'):
        net = copy.deepcopy(model)
        data = _packed(net, device, training=False)
        with torch.no_grad():
            preds[device] = [
                r.pred_instances.cpu()
                for r in net(**data, mode='predict')
            ]
    for gpu, cpu in zip(preds['cuda'], preds['cpu']):
        assert_same_detections(gpu, cpu)


@pytest.mark.parametrize('name', list(FAMILIES))
def test_mmdet_inference_apis_on_cuda_equal_cpu(name, tmp_path):
    """``init_detector`` + ``inference_detector`` and ``DetInferencer`` on
    ``cuda:0`` for every config family, images of three sizes: the CPU
    model's detections and salient points (original-image pixels)."""
    cfg, ckpt = make_family(name, tmp_path)
    results = {}
    for device in ('cpu', 'cuda:0'):
        model = init_detector(fresh(cfg), ckpt, device=device)
        results[device] = [
            r.pred_instances.cpu()
            for r in inference_detector(model, inference_images())
        ]
    for gpu, cpu in zip(results['cuda:0'], results['cpu']):
        assert_same_detections(gpu, cpu)
    inferencer = SAMDETRInferencer(model=fresh(cfg), weights=ckpt,
                                   device='cuda:0')
    preds = inferencer(inference_images())['predictions']
    for pred, cpu in zip(preds, results['cpu']):
        torch.testing.assert_close(torch.tensor(pred['scores']), cpu.scores,
                                   rtol=1e-4, atol=1e-5)
        assert len(pred['salient_points']) == len(cpu.scores)


# ------------------------------------------------------ mixed precision


def scaled_backward(model, loss):
    """Backward with dynamic loss scaling, as mmengine's AmpOptimWrapper
    (``--amp``): torch's GradScaler from its default scale, halved after
    every overflow in float16, as a skipped step would. Returns the
    unscaled gradients of the first scale that fits."""
    scaler = (torch.amp.GradScaler('cuda') if hasattr(torch.amp, 'GradScaler')
              else torch.cuda.amp.GradScaler())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.)
    for _ in range(12):
        optimizer.zero_grad()
        scaler.scale(loss).backward(retain_graph=True)
        scaler.unscale_(optimizer)
        grads = grads_of(model)
        if all(torch.isfinite(g).all() for g in grads.values()):
            return grads
        scaler.step(optimizer)  # skipped: non-finite gradients
        scaler.update()
    pytest.fail(f'float16 gradients overflow down to loss scale '
                f'{scaler.get_scale()}')


@pytest.mark.parametrize('family', list(AMP_FAMILIES))
def test_float16_losses_and_gradients_with_loss_scaling(family):
    """test_amp.py's families on one 64x64 image, under CUDA float16
    autocast: float32 losses (matching, targets and losses run in float32
    on purpose) close to the float32 run's (the same tolerance as bfloat16:
    float16 keeps 3 bits more), finite gradients with dynamic loss
    scaling."""
    model = without_dropout(build(AMP_FAMILIES[family]())).cuda()
    ref = {k: v.item() for k, v in amp_losses(model, device='cuda').items()}
    losses = amp_losses(model, torch.float16, device='cuda')
    assert losses.keys() == ref.keys()
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
        assert value.item() == pytest.approx(ref[key], rel=RTOL,
                                             abs=ATOL), key
    grads = scaled_backward(model, sum(losses.values()))
    assert grads and all(torch.isfinite(g).all() for g in grads.values())


def test_amp_optim_wrapper_trains_two_float16_iterations(tmp_path):
    """``--amp`` (AmpOptimWrapper, float16, dynamic loss scaling) on the
    toy config: two iterations on the GPU in float16, the weights move and
    stay finite."""
    from demo.toy_shapes import generate_toy_dataset
    data = tmp_path / 'toy'
    generate_toy_dataset(str(data), num_train=8, num_val=4, img_size=64,
                         seed=1)
    # dynamic scaling from 2^8 rather than the default 2^16: a DETR's first
    # steps can overflow float16 at 2^16 and be skipped while the scale
    # halves, which would leave two iterations without an update
    runner = train_two_amp_iterations(
        tmp_path, data, torch.float16, **{
            'optim_wrapper.type': 'AmpOptimWrapper',
            'optim_wrapper.loss_scale': dict(init_scale=2.**8)
        })
    assert next(runner.model.parameters()).is_cuda


RECORD_HOOK = '''
import json, os
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RecordDistributedSetup(Hook):

    def before_train(self, runner):
        param = next(runner.model.parameters())
        with open(os.environ['RECORD_TO'], 'w') as f:
            json.dump(dict(backend=dist.get_backend(),
                           runner=type(runner).__name__,
                           wrapper=type(runner.model).__name__,
                           device=str(param.device)), f)
'''


def test_dist_train_sh_keeps_nccl_on_gpu(tmp_path):
    """mmdet's stock dist_train.sh on a GPU machine: the package's runner
    leaves mmengine's NCCL + CUDA DDP path alone."""
    import json

    from demo.toy_shapes import generate_toy_dataset
    from test_runner import add_custom_hooks, write_config
    data = tmp_path / 'toy'
    generate_toy_dataset(str(data), num_train=8, num_val=4, img_size=64,
                         seed=1)
    (tmp_path / 'record_hook.py').write_text(RECORD_HOOK)
    cfg = write_config(tmp_path, data, epochs=1)
    add_custom_hooks(cfg, 'record_hook', 'RecordDistributedSetup')
    import mmdet
    tools = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')
    record = tmp_path / 'record.json'
    env = dict(os.environ, PORT='29617', RECORD_TO=str(record),
               PYTHONPATH=os.pathsep.join(
                   [str(tmp_path), REPO,
                    os.environ.get('PYTHONPATH', '')]),
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    work = tmp_path / 'work'
    out = subprocess.run(
        ['bash', osp.join(tools, 'dist_train.sh'), cfg, '1',
         '--work-dir', str(work)],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    seen = json.loads(record.read_text())
    assert seen == dict(backend='nccl', runner='CPUDDPRunner',
                        wrapper='MMDistributedDataParallel',
                        device='cuda:0'), seen
    assert (work / 'epoch_1.pth').exists()
    assert glob.glob(str(work / '*' / '*.log'))
