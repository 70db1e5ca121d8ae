# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Stop training at the first non-finite loss or gradient norm."""
import math
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


class NonFiniteTrainingError(RuntimeError):
    """A loss term or the gradient norm became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Raise :class:`NonFiniteTrainingError` naming the iteration and every
    non-finite loss term (or the gradient norm) as soon as one appears.

    It runs after each training iteration and before mmengine's
    ``CheckpointHook`` (priority ``ABOVE_NORMAL`` vs ``VERY_LOW``), so the
    weights of the bad iteration are never saved: the last checkpoint on
    disk stays the last good one, and ``--resume`` starts from it. The
    gradient norm is the one ``optim_wrapper.clip_grad`` logs
    (``train/grad_norm``), when gradients are clipped. mmdet's
    ``CheckInvalidLossHook`` only checks the total loss, every 50 iterations
    by default, and does not say which term failed.

    With dynamic loss scaling (mmengine's ``AmpOptimWrapper``, ``--amp``) a
    step whose float16 gradients overflow is skipped, its weights untouched,
    and the loss scale lowered: its non-finite gradient norm is no failure
    while the scale stays at least 1 (the losses are still checked). One
    read of the scale per iteration, before it starts (the GPU idle).
    """

    priority = 'ABOVE_NORMAL'
    _scale: Optional[float] = None  # the loss scale before the iteration

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._scale = self._loss_scale(runner)

    @staticmethod
    def _loss_scale(runner) -> Optional[float]:
        """The AMP loss scale, None without an enabled loss scaler."""
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        if scaler is None or not scaler.is_enabled():
            return None
        return float(scaler.get_scale())

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        bad = [
            name for name, value in (outputs or {}).items()
            if not math.isfinite(float(value))
        ]
        # only logged when optim_wrapper.clip_grad is set
        grad_norm = runner.message_hub.log_scalars.get('train/grad_norm')
        if grad_norm is not None and not math.isfinite(
                float(grad_norm.current())):
            after = self._loss_scale(runner)
            # skipped and the scale lowered, not below 1: float16 gradients
            # that overflow unscaled are a real divergence
            skipped = (None not in (self._scale, after)
                       and 1.0 <= after < self._scale)
            if not skipped:
                bad.append('grad_norm')
        if bad:
            last = runner.message_hub.get_info('last_ckpt')
            raise NonFiniteTrainingError(
                f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
                f'non-finite {", ".join(bad)}; training stopped before '
                'saving this iteration. Last checkpoint: '
                f'{last or "none saved yet"} (resume with --resume).')
