# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""mmengine's Runner with safe checkpoint loading, and one whose
distributed mode also works on CPU-only machines."""
import copy
import gc
import os
from typing import Dict, Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import is_distributed
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch import nn

from .checkpoint import safe_checkpoint_loading


@RUNNERS.register_module()
class SafeLoadingRunner(Runner):
    """mmengine's Runner, loading local checkpoints with
    ``torch.load(weights_only=True)`` and the allow-list of a Runner
    checkpoint (:func:`~mmdet_samdetr.engine.load_from_local_safely`).

    ``load_from``, ``--resume`` (auto or from a file) and mmdet's
    ``tools/test.py CONFIG CHECKPOINT`` all load through
    :meth:`load_checkpoint` (``resume`` calls it too), which runs inside
    :func:`~mmdet_samdetr.engine.safe_checkpoint_loading`: the safe loader
    is mmengine's local-file loader only while this runner loads. A
    crafted file that asks for anything else raises
    :class:`~mmdet_samdetr.engine.UntrustedCheckpointError` before any of
    it runs; the environment variable ``MMDET_SAMDETR_TRUSTED_CHECKPOINTS``
    opts single files in to a full pickle.

    The configs select it with ``runner_type = 'SafeLoadingRunner'``
    (``configs/_base_/default_runtime.py``).
    """

    def load_checkpoint(self, filename: str, *args, **kwargs) -> dict:
        """:meth:`mmengine.runner.Runner.load_checkpoint` (same arguments)
        inside :func:`~mmdet_samdetr.engine.safe_checkpoint_loading`."""
        with safe_checkpoint_loading():
            return super().load_checkpoint(filename, *args, **kwargs)


@RUNNERS.register_module()
class CPUDDPRunner(SafeLoadingRunner):
    """:class:`SafeLoadingRunner`, plus distributed data parallel on CPU
    with gloo.

    With CUDA available it is exactly :class:`SafeLoadingRunner` (NCCL and
    ``device_ids=[LOCAL_RANK]`` as configured). Without CUDA, under
    ``--launcher pytorch``:

    - ``setup_env`` initializes the process group with gloo from the
      launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
      before mmengine's ``init_dist``, which would call
      ``torch.cuda.set_device`` and fail on CPU-only torch;
    - ``wrap_model`` builds ``MMDistributedDataParallel`` with
      ``device_ids=None``, the only value DDP accepts for CPU modules;
    - ``train``/``val``/``test`` end with a barrier, unwrap the model
      (``runner.model`` becomes the bare detector; ``train`` returns it) and
      destroy the gloo group it created. Left to interpreter exit, gloo's
      threads abort a rank ("terminate called without an active
      exception"): about one run in three without the destroy, rarely with
      it while the DDP wrapper, whose reducer holds the group and its last
      works, outlives it.

    Select it with ``runner_type = 'CPUDDPRunner'`` in the config (the toy
    configs do); mmdet's stock ``tools/train.py``, ``tools/test.py`` and
    ``dist_train.sh`` then work unchanged on a CPU-only machine.
    """

    def setup_env(self, env_cfg: Dict) -> None:
        if (self.distributed and not is_distributed()
                and not torch.cuda.is_available()
                and self.launcher == 'pytorch'):
            dist_cfg = dict(env_cfg.get('dist_cfg', {}))
            dist_cfg.pop('backend', None)
            timeout = dist_cfg.pop('timeout', None)
            if timeout is not None:
                import datetime
                dist_cfg['timeout'] = datetime.timedelta(seconds=timeout)
            torch_dist.init_process_group(
                backend='gloo',
                rank=int(os.environ['RANK']),
                world_size=int(os.environ['WORLD_SIZE']),
                **dist_cfg)
            self._owns_gloo_group = True
        super().setup_env(env_cfg)

    def _release_gloo_group(self, finished: bool) -> None:
        if getattr(self, '_owns_gloo_group', False) and is_distributed():
            if finished:
                torch_dist.barrier()
            if is_model_wrapper(self.model):
                self.model = self.model.module
                gc.collect()  # the wrapper's reducer, before the group
            torch_dist.destroy_process_group()
            self._owns_gloo_group = False

    def _run_and_release(self, loop):
        try:
            result = loop()
        except BaseException:
            self._release_gloo_group(finished=False)
            raise
        self._release_gloo_group(finished=True)
        return result

    def train(self) -> nn.Module:

        def run():
            # Runner.train's return value, the DDP wrapper, is dropped here:
            # _release_gloo_group frees the wrapper before the group
            super(CPUDDPRunner, self).train()

        self._run_and_release(run)
        return self.model

    def val(self) -> dict:
        return self._run_and_release(super().val)

    def test(self) -> dict:
        return self._run_and_release(super().test)

    def wrap_model(self, model_wrapper_cfg: Optional[Dict],
                   model: nn.Module) -> nn.Module:
        if self.distributed and not torch.cuda.is_available():
            model_wrapper_cfg = copy.deepcopy(model_wrapper_cfg) or dict(
                type='MMDistributedDataParallel',
                broadcast_buffers=False,
                find_unused_parameters=self.cfg.get(
                    'find_unused_parameters', False))
            model_wrapper_cfg['device_ids'] = None
        return super().wrap_model(model_wrapper_cfg, model)
