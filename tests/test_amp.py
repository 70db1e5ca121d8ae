# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Mixed precision on the CPU (bfloat16 autocast): every family's losses
and gradients, the float32 losses, matching and targets, and a Runner run
with mmengine's AmpOptimWrapper. The float16 versions (CUDA, loss scaling)
are in test_cuda.py."""
import pytest
import torch
from mmdet.registry import TASK_UTILS
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.structures import InstanceData

from conftest import (det_sample, load_model_cfg, tiny_model_cfg,
                      tiny_multiscale_cfg)
from mmdet_samdetr.models.losses import force_float32, to_float32
from test_align_detr_head import _build as build
from test_align_detr_head import align_dino, align_ss
from test_align_loss_and_assigner import MATCH_COSTS
from test_runner import build_runner, toy_data, write_config  # noqa: F401

# one 64x64 image, two boxes (xyxy pixels)
BOXES = [[4., 4., 30., 40.], [30., 20., 60., 60.]]
LABELS = [0, 1]

# bfloat16 keeps 8 significant bits: each rounding is off by up to
# 2^-9 = 0.2%, and the roundings of ~20 layers (backbone, encoder, decoder)
# add up; on the families below the losses differ from float32 by 0.14%
# (median), 0.3% (90th percentile) with torch 2.13. A loss moves more where
# the Hungarian matching flips between near-tied candidates: with torch
# 2.1, DC5-DN's last-layer IoU loss matches like its first layer in
# bfloat16 and moves by 9%. RTOL = 20% admits that, while a dropped or
# doubled term (100%) or a wrong normalizer (x2 with these two ground
# truths) exceeds it by far; that the losses are computed in float32 is
# asserted directly (their dtype), since bfloat16 arithmetic would stay
# within any such bound. ATOL: Align-DETR's class losses on DINO are small
# (~0.1: prior 0.01, soft targets ~ the quality), and a candidate whose
# quality rank flips between the precisions moves such a loss by ~0.01.
RTOL, ATOL = 0.2, 2e-2


def sam_detr_dc5_dn():
    """DC5 (the last stage dilated instead of strided, torchvision's
    rule, as configs/sam_detr/*dc5*) with denoising queries."""
    cfg = tiny_model_cfg(with_dn=True)
    cfg.backbone.update(type='TorchvisionDilatedResNet', strides=(1, 2, 1),
                        dilations=(1, 1, 2))
    return cfg


FAMILIES = {
    'sam-detr': tiny_model_cfg,
    'sam-detr-smca': lambda: tiny_model_cfg(with_smca=True),
    'sam-detr-dc5-dn': sam_detr_dc5_dn,
    'sam-detr-pp': tiny_multiscale_cfg,
    'sam-detr-pp-smca-dn':
    lambda: tiny_multiscale_cfg(with_smca=True, with_dn=True),
    'align-sam-detr-dn': lambda: align_ss(with_dn=True),
    'align-dino': align_dino,
}


def amp_losses(model, dtype=None, device='cpu'):
    """Losses of one 64x64 image with ``BOXES`` on ``device``, under
    autocast to ``dtype`` (None: in float32); the parameters' gradients
    cleared."""
    image = torch.rand(1, 3, 64, 64,
                       generator=torch.Generator().manual_seed(0))
    sample = det_sample((64, 64), BOXES, LABELS).to(device)
    torch.manual_seed(1)  # the same denoising queries and dropout in both
    model.zero_grad()
    with torch.autocast(device, dtype=dtype or torch.bfloat16,
                        enabled=dtype is not None):
        return model.loss(image.to(device), [sample])


def grads_of(model):
    return {name: p.grad for name, p in model.named_parameters()
            if p.grad is not None}


def losses_and_grads(model, bfloat16):
    """:func:`amp_losses` on the CPU, bfloat16 or float32, and the
    gradients of their sum."""
    losses = amp_losses(model, torch.bfloat16 if bfloat16 else None)
    sum(losses.values()).backward()
    return losses, grads_of(model)


def test_reported_align_sam_detr_input_trains_under_bfloat16_autocast():
    """The toy Align-SAM-DETR on one 64x64 image with two boxes, under
    bfloat16 autocast: its box targets were created in the predictions'
    bfloat16 and filled with float32 ground truth (index-put dtype
    mismatch). Right: finite float32 losses and finite gradients."""
    model = build(load_model_cfg(
        'sam_detr_toy/align-sam-detr_r18_1xb8-toy-shapes.py'))
    losses, grads = losses_and_grads(model, bfloat16=True)
    names = {'loss_cls', 'loss_bbox', 'loss_iou'}
    assert set(losses) == names | {f'd{i}.{n}' for i in (0, 1) for n in names}
    for key, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
    assert grads and all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize('family', list(FAMILIES))
def test_bfloat16_losses_and_gradients_are_finite_and_close_to_float32(
        family):
    model = build(FAMILIES[family]())
    ref, ref_grads = losses_and_grads(model, bfloat16=False)
    ref_grads = {name: g.clone() for name, g in ref_grads.items()}
    low, grads = losses_and_grads(model, bfloat16=True)
    assert low.keys() == ref.keys()
    for key, value in low.items():
        # matching, targets and losses run in float32 on purpose
        assert value.dtype == torch.float32, key
        assert torch.isfinite(value), key
        torch.testing.assert_close(value, ref[key], rtol=RTOL, atol=ATOL,
                                   msg=lambda m: f'{family} {key}: {m}')
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
    # the low-precision layers were really low precision: not float32
    assert any(not torch.equal(grads[n], ref_grads[n]) for n in grads)


# ------------------------------------------------- float32 on purpose


def test_force_float32_casts_low_precision_only_and_disables_autocast():
    half = torch.ones(2, dtype=torch.bfloat16, requires_grad=True)
    exact = torch.ones(2)
    data = InstanceData(scores=half, labels=torch.tensor([1, 2]))
    cast = to_float32([half, (exact, ), {'x': data}])
    assert cast[0].dtype == torch.float32 and cast[1][0] is exact
    assert cast[2]['x'].scores.dtype == torch.float32
    assert cast[2]['x'].labels.dtype == torch.long
    assert to_float32(InstanceData(scores=exact)).scores is exact

    @force_float32
    def product(a, b):
        return a @ b

    square = torch.rand(3, 3)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert (square @ square).dtype == torch.bfloat16
        out = product(square.bfloat16(), square)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, square.bfloat16().float() @ square,
                               rtol=0, atol=0)
    product(half[None], half[:, None]).sum().backward()
    assert half.grad.dtype == torch.bfloat16


def test_align_loss_and_assigner_compute_in_float32_under_autocast():
    """bfloat16 predictions under autocast give exactly the float32 results
    of the same (rounded) values."""
    from mmdet_samdetr.models.losses import AlignLoss
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(6, 3, generator=gen) * 4).bfloat16()
    target = (torch.tensor([0, 3, 2, 3, 1, 3]),
              torch.rand(6, generator=gen), torch.tensor([0, 0, 1, 0, 0, 0]))
    loss = AlignLoss()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = loss(logits, target, avg_factor=2.)
    assert low.dtype == torch.float32
    assert low.item() == loss(logits.float(), target, avg_factor=2.).item()

    assigner = TASK_UTILS.build(
        dict(type='MixedHungarianAssigner', match_costs=MATCH_COSTS))
    xy = torch.rand(6, 2, generator=gen) * 32
    boxes = torch.cat([xy, xy + 4 + torch.rand(6, 2, generator=gen) * 20], 1)
    pred = InstanceData(scores=logits, bboxes=boxes.bfloat16())
    gt = InstanceData(bboxes=torch.tensor(BOXES), labels=torch.tensor(LABELS))
    meta = dict(img_shape=(64, 64))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = assigner.assign(pred, gt, meta, k=2)
    ref = assigner.assign(to_float32(pred), gt, meta, k=2)
    assert low.max_overlaps.dtype == torch.float32
    for a, b in ((low.gt_inds, ref.gt_inds), (low.labels, ref.labels),
                 (low.max_overlaps, ref.max_overlaps),
                 (low.get_extra_property('ranks'),
                  ref.get_extra_property('ranks'))):
        assert torch.equal(a, b)


def test_roi_align_places_bfloat16_maps_from_float32_boxes():
    """RoIAlign and point sampling of a bfloat16 map: mmcv's op (it has no
    bfloat16 kernel) pools in float32, and the CPU paths place the RoI grid
    from float32 boxes and points, so a corner at 55.1 is not moved to
    bfloat16's 55.0 (0.11 on this ramp)."""
    from mmdet_samdetr.models.layers import (mmcv_roi_align,
                                             roi_point_sample,
                                             separable_roi_align)
    # values x - 56 along x: exact in bfloat16
    feat = (torch.arange(64.) - 56).expand(1, 1, 8, 64).bfloat16()
    boxes = torch.tensor([[[55.1, 1., 57.1, 6.]]])
    points = torch.tensor([[[[0.3, -0.2], [-0.9, 0.5], [0.95, 0.]]]])
    ref = mmcv_roi_align(feat.float(), boxes)
    # within the rounding of the bfloat16 weights and outputs (values < 2)
    for pooled in (mmcv_roi_align(feat, boxes),
                   separable_roi_align(feat, boxes)):
        assert pooled.dtype == torch.bfloat16
        torch.testing.assert_close(pooled.float(), ref, rtol=0, atol=1e-2)
    torch.testing.assert_close(
        roi_point_sample(feat, boxes, points).float(),
        roi_point_sample(feat.float(), boxes, points), rtol=0, atol=1e-2)


# ---------------------------------------------------------------- Runner


def test_amp_optim_wrapper_trains_two_bfloat16_iterations(
        tmp_path, toy_data, monkeypatch):  # noqa: F811
    """``--cfg-options optim_wrapper.type=AmpOptimWrapper
    optim_wrapper.dtype=bfloat16`` on the toy config: two iterations in
    bfloat16 autocast, the weights move and stay finite."""
    # mmengine builds AmpOptimWrapper only where an accelerator exists; its
    # bfloat16 autocast runs on the CPU, and torch's GradScaler disables
    # itself there (bfloat16 needs no loss scaling)
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    runner = train_two_amp_iterations(
        tmp_path, toy_data, torch.bfloat16, **{
            'optim_wrapper.type': 'AmpOptimWrapper',
            'optim_wrapper.dtype': 'bfloat16'
        })
    # the helper asserted two bfloat16 forwards and moved, finite weights
    assert runner.optim_wrapper.cast_dtype == torch.bfloat16


def test_a_step_skipped_by_loss_scaling_does_not_stop_training():
    """``--amp``'s dynamic loss scaling skips a step whose float16
    gradients overflow (the clipped gradient norm is inf) and halves the
    scale: NonFiniteCheckHook lets training go on. An inf gradient norm
    that the scaler did not answer so still stops it."""
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from mmdet_samdetr.engine import (NonFiniteCheckHook,
                                      NonFiniteTrainingError)

    class Scaler:  # the GradScaler API that AmpOptimWrapper holds
        scale = 2.**16

        def is_enabled(self):
            return True

        def get_scale(self):
            return self.scale

    hub = MessageHub.get_instance('test_amp_skipped_step')
    runner = SimpleNamespace(
        optim_wrapper=SimpleNamespace(loss_scaler=Scaler()),
        message_hub=hub, iter=0, epoch=0)
    hook = NonFiniteCheckHook()
    outputs = dict(loss_cls=torch.tensor(1.))
    hook.before_train_iter(runner, 0)
    hub.update_scalar('train/grad_norm', float('inf'))
    runner.optim_wrapper.loss_scaler.scale /= 2  # the step was skipped
    hook.after_train_iter(runner, 0, outputs=outputs)
    hook.before_train_iter(runner, 1)  # inf again, the scale kept
    with pytest.raises(NonFiniteTrainingError, match='grad_norm'):
        hook.after_train_iter(runner, 1, outputs=outputs)
    # halved below 1: gradients overflow float16 unscaled, a divergence
    runner.optim_wrapper.loss_scaler.scale = 1.
    hook.before_train_iter(runner, 2)
    runner.optim_wrapper.loss_scaler.scale /= 2
    with pytest.raises(NonFiniteTrainingError, match='grad_norm'):
        hook.after_train_iter(runner, 2, outputs=outputs)


def train_two_amp_iterations(tmp_path, data, dtype, **options):
    """Two iterations (8 images, batch 4) of the tiny toy config with
    ``--cfg-options`` ``options`` on ``data``: they run in ``dtype``, and
    the weights move and stay finite."""
    cfg_path = write_config(tmp_path, data, epochs=1)
    runner = build_runner(cfg_path, tmp_path / 'work', **options)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    dtypes = []  # of the training forwards (validation runs in float32)

    def record(module, args, out):
        if module.training:
            dtypes.append(out.dtype)

    runner.model.bbox_head.cls_branches[-1].register_forward_hook(record)
    runner.train()
    assert type(runner.optim_wrapper).__name__ == 'AmpOptimWrapper'
    assert runner.iter == 2
    assert dtypes == [dtype] * 2
    after = runner.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values()
               if v.is_floating_point())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) > 10
    return runner
