# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Checkpoints load with torch's weights_only protection kept on."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader

from mmdet_samdetr.engine import UntrustedCheckpointError
from mmdet_samdetr.engine.checkpoint import TRUSTED_ENV


def runner_like_checkpoint(path):
    """What mmengine's Runner saves: weights, optimizer, a message hub with
    history buffers (numpy arrays inside), meta."""
    hub = MessageHub(f'safety-{path.name}')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
        hub.update_scalar('train/lr', np.float32(1e-4))
    hub.update_info('iter', 3)
    model = torch.nn.Linear(2, 2)
    optim = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optim.step()
    torch.save(
        dict(meta=dict(epoch=1, iter=3, seed=0, cfg='model = dict()'),
             state_dict=model.state_dict(), optimizer=optim.state_dict(),
             message_hub=hub.state_dict(),
             param_schedulers=[dict(milestones={10: 1}, last_epoch=1)]),
        path)


def test_runner_checkpoint_loads_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / 'epoch_1.pth'
    runner_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):  # torch's default refuses
        torch.load(path, weights_only=True)
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    ckpt = CheckpointLoader.load_checkpoint(str(path))
    assert seen == [True]
    buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert buffer.statistics('max') == 1.0
    assert ckpt['optimizer']['state'][0]['step'].item() == 1
    # the allow-list is lifted again after loading
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


class _RunsCode:
    """Unpickling this calls ``marker.touch()`` through ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class _AsksForMore:
    """Pickled as ``getattr(HistoryBuffer, '__subclasses__')``, not one of
    the statistics lookups a message hub makes."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__subclasses__')


@pytest.mark.parametrize('payload', ['system', 'getattr'])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    evil = _RunsCode(marker) if payload == 'system' else _AsksForMore()
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), meta=dict(x=evil)),
               path)
    with pytest.raises(UntrustedCheckpointError) as info:
        CheckpointLoader.load_checkpoint(str(path))
    message = str(info.value)
    assert str(path) in message and TRUSTED_ENV in message
    assert ('system' in message if payload == 'system' else
            '__subclasses__' in message), message
    assert not marker.exists()


class _Custom:

    def __init__(self, value):
        self.value = value


def test_full_pickle_only_with_an_explicit_opt_in_for_that_file(
        tmp_path, monkeypatch):
    path = tmp_path / 'custom.pth'
    torch.save(dict(meta=dict(extra=_Custom(3))), path)
    other = tmp_path / 'other.pth'
    torch.save(dict(meta=dict(extra=_Custom(4))), other)
    with pytest.raises(UntrustedCheckpointError, match='_Custom'):
        CheckpointLoader.load_checkpoint(str(path))
    monkeypatch.setenv(TRUSTED_ENV, os.pathsep.join(['/nowhere', str(path)]))
    assert CheckpointLoader.load_checkpoint(str(path))['meta'][
        'extra'].value == 3
    with pytest.raises(UntrustedCheckpointError):  # only the listed file
        CheckpointLoader.load_checkpoint(str(other))
