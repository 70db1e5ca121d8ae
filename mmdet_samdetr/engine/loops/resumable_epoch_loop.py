# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""An epoch-based train loop that resumes inside an epoch."""
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop

from ..hooks.rng_state_hook import set_rng_state


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop``, resuming where the checkpoint was
    written, also inside an epoch.

    mmengine's loop restarts the interrupted epoch from its first batch,
    with the iteration counter already advanced, so a run resumed from an
    iteration checkpoint trains on other batches than the run it continues.
    This loop draws (and drops) the batches of the epoch that were already
    trained, then restores the random generators saved with the checkpoint
    (:class:`RNGStateHook`), so the resumed run continues with the batch,
    the augmentations and the random draws of the uninterrupted run. That is
    exact (bitwise on the CPU, tested) with ``num_workers=0`` or
    non-persistent workers; with ``persistent_workers=True`` the workers'
    augmentation draws after a resume inside a later epoch differ.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_rng_state = None

    def run_epoch(self) -> None:
        """Iterate one epoch, skipping its batches trained before a
        resume."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        done = self._iter - self._epoch * len(self.dataloader)
        batches = iter(self.dataloader)
        for _ in range(max(done, 0)):
            next(batches)
        if self.resume_rng_state is not None:
            set_rng_state(self.resume_rng_state)
            self.resume_rng_state = None
        for idx, data_batch in enumerate(batches, start=max(done, 0)):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
