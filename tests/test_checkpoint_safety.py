# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Checkpoints load with torch's weights_only protection kept on, and only
where the package's runner, inferencer and tools load them: importing the
package changes nothing process-wide."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import load_from_local
from mmengine.utils import digit_version

from mmdet_samdetr.engine import (NotACheckpointError, SafeLoadingRunner,
                                  UntrustedCheckpointError,
                                  load_from_local_safely,
                                  safe_checkpoint_loading)
from mmdet_samdetr.engine import checkpoint
from mmdet_samdetr.engine.checkpoint import HAS_SAFE_GLOBALS, TRUSTED_ENV



@pytest.fixture(params=['safe_globals', 'restricted_unpickler'])
def loading(request, monkeypatch):
    """Each test runs with both mechanisms: torch's weights_only load with
    ``safe_globals`` (torch >= 2.5), and the restricted unpickler of older
    torch (here forced on any torch)."""
    if request.param == 'safe_globals' and not HAS_SAFE_GLOBALS:
        pytest.skip('torch < 2.5 has no torch.serialization.safe_globals')
    if request.param == 'restricted_unpickler':
        monkeypatch.setattr(checkpoint, 'HAS_SAFE_GLOBALS', False)
    return request.param


def load_safely(path):
    """``CheckpointLoader.load_checkpoint`` as the package's runners call
    it."""
    with safe_checkpoint_loading():
        return CheckpointLoader.load_checkpoint(str(path))


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


def spy_weights_only(monkeypatch):
    """The ``weights_only`` argument of every ``torch.load`` call, in a list
    that fills as they happen."""
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    return seen


def test_runner_checkpoint_loads_with_weights_only(tmp_path, monkeypatch,
                                                   loading):
    path = tmp_path / 'epoch_1.pth'
    runner_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):  # torch's default refuses
        torch.load(path, weights_only=True)
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        # so does mmengine's loader, where weights_only is torch's default
        with pytest.raises(pickle.UnpicklingError):
            CheckpointLoader.load_checkpoint(str(path))
    seen = spy_weights_only(monkeypatch)
    ckpt = load_safely(path)
    # the restricted unpickler is torch's full loader with its find_class
    assert seen == [loading == 'safe_globals']
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
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, payload,
                                                    loading):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    evil = _RunsCode(marker) if payload == 'system' else _AsksForMore()
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), meta=dict(x=evil)),
               path)
    with pytest.raises(UntrustedCheckpointError) as info:
        load_safely(path)
    message = str(info.value)
    assert str(path) in message and TRUSTED_ENV in message
    assert ('system' in message if payload == 'system' else
            '__subclasses__' in message), message
    assert not marker.exists()


def test_refusal_names_the_global_without_torchs_advice(tmp_path, loading):
    import fractions
    path = tmp_path / 'with_fraction.pth'
    torch.save(dict(model=dict(w=torch.zeros(1)),
                    trainer=dict(hooks=dict(x=fractions.Fraction(1, 2)))),
               path)
    with pytest.raises(UntrustedCheckpointError) as info:
        load_safely(path)
    message = str(info.value)
    assert 'Unsupported global: GLOBAL fractions.Fraction' in message
    # torch's advice to load fully or allow globals process-wide is left out
    for advice in ('weights_only` set to `False', 'add_safe_globals',
                   'Re-running'):
        assert advice not in message, message


@pytest.mark.parametrize('content,what', [
    (b'<!DOCTYPE html>\n<html><head><title>Google Drive', 'an HTML page'),
    (b'', 'empty'),
    (b'PK\x03\x04' + b'\x00' * 64, 'an incomplete zip archive'),
    (b'model: 1\n', "it starts with b'model: 1\\n'"),
])
def test_a_file_torch_did_not_write_is_named(tmp_path, content, what):
    path = tmp_path / 'download.pth'
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError) as info:
        load_safely(path)
    assert str(info.value).startswith(
        f'{path} is not a checkpoint written by torch.save: {what}')


class _Custom:

    def __init__(self, value):
        self.value = value


def test_full_pickle_only_with_an_explicit_opt_in_for_that_file(
        tmp_path, monkeypatch, loading):
    path = tmp_path / 'custom.pth'
    torch.save(dict(meta=dict(extra=_Custom(3))), path)
    other = tmp_path / 'other.pth'
    torch.save(dict(meta=dict(extra=_Custom(4))), other)
    with pytest.raises(UntrustedCheckpointError, match='_Custom'):
        load_safely(path)
    monkeypatch.setenv(TRUSTED_ENV, os.pathsep.join(['/nowhere', str(path)]))
    assert load_safely(path)['meta']['extra'].value == 3
    with pytest.raises(UntrustedCheckpointError):  # only the listed file
        load_safely(other)


@pytest.mark.parametrize('payload', ['system', 'getattr'])
def test_runner_refuses_a_crafted_pickle_and_runs_nothing(
        tmp_path, payload, loading):
    """``load_from`` / ``--resume`` / ``tools/test.py`` go through
    ``Runner.load_checkpoint``: the configs' runner loads safely there."""
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    evil = _RunsCode(marker) if payload == 'system' else _AsksForMore()
    torch.save(dict(state_dict=dict(weight=torch.zeros(2, 2)),
                    meta=dict(x=evil)), path)
    runner = SafeLoadingRunner(
        model=torch.nn.Linear(2, 2), work_dir=str(tmp_path / 'work'),
        experiment_name=f'safety-{payload}')
    with pytest.raises(UntrustedCheckpointError):
        runner.load_checkpoint(str(path))
    assert not marker.exists()
    assert CheckpointLoader._get_checkpoint_loader(str(path)) is \
        load_from_local
    # a Runner checkpoint loads, into the model
    good = tmp_path / 'epoch_1.pth'
    runner_like_checkpoint(good)
    runner.load_checkpoint(str(good))
    assert torch.equal(runner.model.weight,
                       load_safely(good)['state_dict']['weight'])


def test_safe_loading_restores_the_previous_loader(tmp_path):
    """Inside: the safe loader for local files; after, also on an error
    and when nested, what was registered before (here another package's
    loader), and the order of mmengine's schemes."""

    def other_loader(filename, map_location=None):
        return dict(loaded_by='other')

    before = dict(CheckpointLoader._schemes)
    assert before[''] is load_from_local
    try:
        CheckpointLoader.register_scheme('', other_loader, force=True)
        registered = list(CheckpointLoader._schemes.items())
        with safe_checkpoint_loading():
            assert CheckpointLoader._schemes[''] is load_from_local_safely
            with safe_checkpoint_loading():
                assert CheckpointLoader._schemes[''] is \
                    load_from_local_safely
            assert CheckpointLoader._schemes[''] is load_from_local_safely
        assert list(CheckpointLoader._schemes.items()) == registered
        with pytest.raises(RuntimeError, match='inside'):
            with safe_checkpoint_loading():
                raise RuntimeError('inside')
        assert list(CheckpointLoader._schemes.items()) == registered
        assert CheckpointLoader.load_checkpoint(
            str(tmp_path / 'x.pth')) == dict(loaded_by='other')
    finally:
        CheckpointLoader.register_scheme('', load_from_local, force=True)
    assert CheckpointLoader._schemes == before


# Everything process-wide that a package could change on import, printed
# before and after `import mmdet_samdetr` (its dependencies imported first,
# so that only the package's own import is compared).
_PROCESS_STATE = r"""
import json, os, random, sys, warnings
import numpy as np
import torch
import mmcv.ops, mmdet.apis, mmdet.models, mmengine.runner, scipy.optimize
from mmengine.runner import CheckpointLoader


def state():
    return dict(
        schemes=[(prefix, f'{loader.__module__}.{loader.__qualname__}')
                 for prefix, loader in CheckpointLoader._schemes.items()],
        default_dtype=str(torch.get_default_dtype()),
        threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        safe_globals=sorted(map(str,
                                getattr(torch.serialization,
                                        'get_safe_globals', list)())),
        deterministic=torch.are_deterministic_algorithms_enabled(),
        grad=torch.is_grad_enabled(),
        anomaly=torch.is_anomaly_enabled(),
        matmul_precision=torch.get_float32_matmul_precision(),
        torch_rng=torch.get_rng_state().tolist(),
        numpy_rng=str(np.random.get_state()),
        python_rng=str(random.getstate()),
        numpy_err=np.geterr(),
        warnings=[str(f) for f in warnings.filters],
        environ=sorted(os.environ.items()),
        sys_path=list(sys.path),
    )


before = state()
import mmdet_samdetr  # noqa: E402,F401
after = state()
print(json.dumps({key: [before[key], after[key]] for key in before
                  if before[key] != after[key]}))
"""


def test_importing_the_package_changes_nothing_process_wide():
    out = subprocess.run([sys.executable, '-c', _PROCESS_STATE],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    changed = out.stdout.strip().splitlines()[-1]
    assert changed == '{}', changed


def test_allowed_globals_allows_exactly_those_inside_the_block(tmp_path,
                                                              loading):
    """What the converter of official checkpoints needs (their training
    arguments, an ``argparse.Namespace``), allowed for one block only."""
    import argparse

    from mmdet_samdetr.engine import allowed_globals
    path = tmp_path / 'official.pth'
    torch.save(dict(model=dict(w=torch.ones(1)),
                    args=argparse.Namespace(lr=1e-4)), path)
    with pytest.raises(UntrustedCheckpointError, match='Namespace'):
        load_from_local_safely(str(path))
    with allowed_globals([argparse.Namespace]):
        assert load_from_local_safely(str(path))['args'].lr == 1e-4
    with pytest.raises(UntrustedCheckpointError, match='Namespace'):
        load_from_local_safely(str(path))
