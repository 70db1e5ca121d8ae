# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Save the random number generators' states with every checkpoint."""
import random

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


def get_rng_state() -> dict:
    """States of Python's, numpy's and torch's (CPU and CUDA) generators."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store the generators' states in each checkpoint (``rng_state``) and,
    when a run resumes, hand them to the train loop.

    mmengine's checkpoints do not keep them, so a resumed run draws other
    random numbers (augmentations, dropout, denoising noise) than the run
    it continues. :class:`ResumableEpochBasedTrainLoop` restores them at the
    point where the checkpoint was written. The state saved is the main
    process's (rank 0 in distributed training, which every rank then
    restores).
    """

    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        loop = getattr(runner, '_train_loop', None)
        if (getattr(runner, '_resume', False) and 'rng_state' in checkpoint
                and hasattr(loop, 'resume_rng_state')):
            loop.resume_rng_state = checkpoint['rng_state']
