# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Training through mmengine's Runner: checkpoints, resume, test, CPU DDP."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import RUNNERS
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import load_from_local

from conftest import REPO, config_path
from demo.toy_shapes import generate_toy_dataset
from mmdet_samdetr.engine import SafeLoadingRunner, safe_checkpoint_loading

TINY = """
_base_ = '{base}'
data_root = '{data}/'
model = dict(
    num_queries=10,
    backbone=dict(init_cfg=None, base_channels=16, num_stages=2,
                  strides=(1, 2),
                  dilations=(1, 1), out_indices=(1, )),
    neck=dict(in_channels=[32], out_channels=32,
              norm_cfg=dict(num_groups=8)),
    positional_encoding=dict(num_feats=16),
    encoder=dict(num_layers=1, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=32),
        ffn_cfg=dict(embed_dims=32, feedforward_channels=64))),
    decoder=dict(num_layers=2, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=32),
        cross_attn_cfg=dict(embed_dims=32),
        aligner_cfg=dict(reduced_dims=8, mlp_dims=(32, 32, 32)),
        ffn_cfg=dict(embed_dims=32, feedforward_channels=64))),
    bbox_head=dict(embed_dims=32),
    test_cfg=dict(max_per_img=10))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
param_scheduler = [dict(type='MultiStepLR', end={epochs}, milestones=[1])]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=5),
                     visualization=dict(draw=False))
"""

# SAM-DETR++ with denoising at the same tiny width: three levels (strides 4,
# 8, 16), decoder layers reading the coarsest and the finest
TINY_PP_DN = """
model['backbone'].update(num_stages=3, strides=(1, 2, 2),
                         dilations=(1, 1, 1), out_indices=(0, 1, 2))
model['neck'].update(in_channels=[16, 32, 64])
model['encoder']['layer_cfg']['self_attn_cfg'].update(num_levels=3)
model['decoder'].update(layer_levels=(2, 0))
model.update(dn_cfg=dict(group_cfg=dict(num_dn_queries=6)))
"""
BASES = {
    'sam-detr': ('', 'sam_detr_toy/sam-detr_r18_1xb8-toy-shapes.py'),
    'sam-detr-pp-dn':
    (TINY_PP_DN, 'sam_detr_toy/sam-detr-pp-dn_r18_1xb8-toy-shapes.py'),
    # Align-DETR's mixed matching and Align Loss, with DN
    'align-sam-detr-pp-dn':
    (TINY_PP_DN, 'sam_detr_toy/align-sam-detr-pp_r18_1xb8-toy-shapes.py'),
}


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    generate_toy_dataset(str(root), num_train=8, num_val=4, img_size=64,
                         seed=1)
    return root


def add_custom_hooks(cfg_path, module, *hook_types):
    """Append ``custom_imports`` of our package and ``module`` (a file
    beside the config) and ``custom_hooks`` of ``hook_types``."""
    hooks = ', '.join(f"dict(type='{t}')" for t in hook_types)
    with open(cfg_path, 'a') as f:
        f.write(f"custom_imports = dict(imports=['mmdet_samdetr', "
                f"'{module}'], allow_failed_imports=False)\n"
                f'custom_hooks = [{hooks}]\n')


def write_config(tmp_path, toy_data, epochs=2, variant='sam-detr'):
    extra, base = BASES[variant]
    path = tmp_path / 'tiny_toy.py'
    path.write_text(
        TINY.format(base=config_path(base), data=toy_data, epochs=epochs) +
        extra)
    return str(path)


def load_checkpoint(path):
    """A Runner checkpoint, read as the package's runners read it."""
    with safe_checkpoint_loading():
        return CheckpointLoader.load_checkpoint(str(path))


def build_runner(cfg_path, work_dir, **options):
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(work_dir)
    cfg.merge_from_dict(options)
    return RUNNERS.build(cfg)


def _model_configs():
    return sorted(
        osp.relpath(path, config_path(''))
        for path in glob.glob(config_path(osp.join('*', '*.py')))
        if not path.startswith(config_path('_base_')))


@pytest.mark.parametrize('name', _model_configs())
def test_every_config_switches_on_the_runtime(name):
    """The package only registers modules on import; each config turns on
    its imports, runner, hooks and train loop (configs/_base_/
    default_runtime.py), the CPU distributed runner only for the toys."""
    cfg = Config.fromfile(config_path(name))
    assert cfg.custom_imports == dict(
        imports=['mmdet_samdetr'], allow_failed_imports=False)
    assert [hook['type'] for hook in cfg.custom_hooks] == [
        'NonFiniteCheckHook', 'RNGStateHook']
    assert cfg.train_cfg.type == 'ResumableEpochBasedTrainLoop'
    toy = name.startswith('sam_detr_toy')
    assert cfg.runner_type == ('CPUDDPRunner' if toy else 'SafeLoadingRunner')
    assert issubclass(RUNNERS.get(cfg.runner_type), SafeLoadingRunner)


class CrashAt(Hook):

    def __init__(self, epoch):
        self.epoch = epoch

    def before_train_epoch(self, runner):
        if runner.epoch == self.epoch:
            raise RuntimeError('simulated crash')


def test_crashed_run_resumes_from_last_checkpoint(tmp_path, toy_data):
    cfg_path = write_config(tmp_path, toy_data, epochs=2)
    work = tmp_path / 'work'
    runner = build_runner(cfg_path, work)
    assert type(runner).__name__ == 'CPUDDPRunner'
    runner.register_hook(CrashAt(1))
    with pytest.raises(RuntimeError, match='simulated crash'):
        runner.train()
    saved = load_checkpoint(work / 'epoch_1.pth')
    assert saved['meta']['epoch'] == 1
    # --resume (auto): finds epoch_1.pth and finishes; the checkpoint loads
    # with weights_only=True through our allow-list (torch's defaults alone
    # refuse the message hub).
    runner = build_runner(cfg_path, work, resume=True)
    runner.train()
    assert runner.epoch == 2
    assert runner.iter == 4  # 8 images / batch 4 = 2 iterations per epoch
    resumed = load_checkpoint(work / 'epoch_2.pth')
    assert resumed['meta']['epoch'] == 2
    # the runner's safe loader was mmengine's only while it loaded
    assert CheckpointLoader._get_checkpoint_loader('x.pth') is load_from_local
    # and tools/test.py's path: load_from + test with CocoMetric
    runner = build_runner(
        cfg_path, tmp_path / 'test', load_from=str(work / 'epoch_2.pth'))
    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics


class NaNFromIteration(Hook):
    """Makes the box losses NaN from the 0-based iteration ``start`` on."""

    def __init__(self, start):
        self.start = start

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.start:
            loss = runner.model.bbox_head.loss_bbox
            forward = loss.forward
            loss.forward = lambda *a, **kw: forward(*a, **kw) * float('nan')


def test_non_finite_loss_stops_before_the_checkpoint_is_overwritten(
        tmp_path, toy_data):
    from mmdet_samdetr.engine import NonFiniteTrainingError
    cfg_path = write_config(tmp_path, toy_data, epochs=2)
    work = tmp_path / 'work'
    runner = build_runner(cfg_path, work)
    runner.register_hook(NaNFromIteration(2))  # 1st iteration of epoch 2
    with pytest.raises(NonFiniteTrainingError) as info:
        runner.train()
    message = str(info.value)
    assert message.startswith('iteration 3 (epoch 2): non-finite ')
    assert 'loss_bbox' in message and 'd0.loss_bbox' in message
    assert 'grad_norm' in message and 'epoch_1.pth' in message
    assert not (work / 'epoch_2.pth').exists()
    good = load_checkpoint(work / 'epoch_1.pth')
    assert good['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in good['state_dict'].values())
    # the weights in memory are broken; the file resumes cleanly
    assert not all(torch.isfinite(p).all()
                   for p in runner.model.parameters())
    runner = build_runner(cfg_path, work, resume=True)
    runner.train()
    assert runner.iter == 4


def _launch_env(port=None, extra_path=None):
    """Environment of a launched training: one thread; mmdet's
    dist_train.sh finds this Python first; ``extra_path`` importable."""
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    if port is not None:
        env['PORT'] = str(port)
    if extra_path is not None:
        env['PYTHONPATH'] = (f'{extra_path}{os.pathsep}'
                             f'{os.environ.get("PYTHONPATH", "")}')
    return env


def _mmdet_tools():
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU gloo path')
@pytest.mark.parametrize('variant', list(BASES))
def test_two_process_gloo_training_with_dist_train_sh(
        tmp_path, toy_data, variant):
    """mmdet's stock dist_train.sh CONFIG 2 on a CPU-only machine."""
    cfg_path = write_config(tmp_path, toy_data, epochs=1, variant=variant)
    env = _launch_env(port=29613)
    work = tmp_path / 'dist'

    def launch():
        return subprocess.run(
            ['bash', osp.join(_mmdet_tools(), 'dist_train.sh'), cfg_path,
             '2', '--work-dir', str(work)],
            env=env, capture_output=True, text=True, timeout=300, cwd=REPO)

    out = launch()
    if out.returncode != 0 and 'terminate called without an active ' \
            'exception' in out.stdout + out.stderr:
        # A rare gloo abort at interpreter exit (seen once in ~30 runs since
        # CPUDDPRunner destroys its group); one more try, which must pass.
        shutil.rmtree(work, ignore_errors=True)
        out = launch()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (work / 'epoch_1.pth').exists()
    log = glob.glob(str(work / '*' / '*.log'))[0]
    text = open(log).read()
    assert 'Distributed launcher: pytorch' in text
    assert 'Distributed training: True' in text
    assert "'world_size': 2" in text or 'world_size: 2' in text or \
        'GPU number: 2' in text
    # each rank saw half the data: 8 images / (2 ranks x batch 4) = 1 iter
    scalars = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))[0]
    iters = [json.loads(line)['iter'] for line in open(scalars)
             if '"loss"' in line]
    assert max(iters) == 1
    if variant.endswith('sam-detr-pp-dn'):
        assert "type='SAMDETRPlusPlus'" in text
        assert '"dn_loss_cls"' in open(scalars).read()
    if variant.startswith('align'):
        assert "type='AlignSAMDETRHead'" in text
        assert "type='MixedHungarianAssigner'" in text
    shutil.rmtree(work)


# One process with batch 4 and two with batch 2 see the same images per
# iteration (mmengine's DefaultSampler gives rank r the positions r::2 of
# the same permutation). Frozen BN statistics, no flip, no denoising noise
# and plain SGD, so that nothing but the reduction order can differ.
SAME_TOTAL_BATCH = """
model['backbone'].update(norm_eval=True)
model['dn_cfg'] = None
train_dataloader['sampler'] = dict(type='DefaultSampler', shuffle=True,
                                   seed=0)
train_dataloader['dataset']['pipeline'] = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='PackDetInputs')]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, weight_decay=0.0),
                     clip_grad=None)
randomness = dict(seed=0)
"""


def _same_total_batch_runs(tmp_path, toy_data, variant):
    """Train one process with batch 4 for an epoch; return the config of
    the distributed run (batch 2 per process) and the single run's
    checkpoint."""
    cfg_path = write_config(tmp_path, toy_data, epochs=1, variant=variant)
    with open(cfg_path, 'a') as f:
        f.write(SAME_TOTAL_BATCH)
    single = build_runner(cfg_path, tmp_path / 'single')
    single.train()
    dist_cfg = tmp_path / 'dist_cfg.py'
    dist_cfg.write_text(
        open(cfg_path).read() + "train_dataloader['batch_size'] = 2\n")
    return cfg_path, dist_cfg, tmp_path / 'single' / 'epoch_1.pth'


def _assert_same_weights(cfg_path, single_ckpt, dist_ckpt, work):
    """The weights of both runs agree within 1e-5 and moved from init."""
    one = load_checkpoint(single_ckpt)['state_dict']
    two = load_checkpoint(dist_ckpt)['state_dict']
    assert one.keys() == two.keys()
    moved = 0
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5,
                                   atol=1e-6, msg=key)
    init = build_runner(cfg_path, work).model.state_dict()
    for key in one:
        moved += int(not torch.equal(one[key], init[key]))
    assert moved > 10  # the comparison is not between untrained weights


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU gloo path')
@pytest.mark.parametrize('variant', ['sam-detr', 'align-sam-detr-pp-dn'])
def test_two_processes_train_like_one_with_the_same_total_batch(
        tmp_path, toy_data, variant):
    """The weights after an epoch (2 SGD steps) agree within 1e-5: the
    losses are normalized by the ground truths of the whole batch
    (all-reduced) and DDP averages the gradients."""
    cfg_path, dist_cfg, single_ckpt = _same_total_batch_runs(
        tmp_path, toy_data, variant)
    env = _launch_env(port=29617)
    out = subprocess.run(
        ['bash', osp.join(_mmdet_tools(), 'dist_train.sh'), str(dist_cfg),
         '2', '--work-dir', str(tmp_path / 'dist')],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    _assert_same_weights(cfg_path, single_ckpt,
                         tmp_path / 'dist' / 'epoch_1.pth', tmp_path / 'init')


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU gloo path')
def test_two_nodes_train_like_one_with_the_same_total_batch(
        tmp_path, toy_data):
    """Multi-node as on a cluster: our tools/dist_train.sh started once per
    node (NNODES=2, NODE_RANK 0 and 1, MASTER_ADDR, PORT; one process per
    node, gloo) ends with the weights of one process with the same total
    batch."""
    cfg_path, dist_cfg, single_ckpt = _same_total_batch_runs(
        tmp_path, toy_data, 'sam-detr')
    work = tmp_path / 'nodes'
    nodes = []
    for node_rank in (0, 1):
        env = _launch_env(port=29621)
        env.update(NNODES='2', NODE_RANK=str(node_rank),
                   MASTER_ADDR='127.0.0.1', PYTHON=sys.executable)
        nodes.append(subprocess.Popen(
            ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), str(dist_cfg),
             '1', '--work-dir', str(work)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=REPO))
    outputs = []
    for node in nodes:
        try:
            outputs.append(node.communicate(timeout=300)[0])
        finally:
            node.kill()
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]
    log = open(glob.glob(str(work / '*' / '*.log'))[0]).read()
    assert 'Distributed training: True' in log
    assert "'world_size': 2" in log or 'world_size: 2' in log or \
        'GPU number: 2' in log
    _assert_same_weights(cfg_path, single_ckpt, work / 'epoch_1.pth',
                         tmp_path / 'init')


KILLER = '''
import os
import signal

from mmengine.dist import get_rank
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class KillRankAt(Hook):

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if get_rank() == 1 and runner.iter == 1:
            os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU gloo path')
def test_a_dead_worker_ends_the_job_instead_of_hanging(tmp_path, toy_data):
    """Rank 1 is SIGKILLed at its 2nd iteration (rank 0 then waits in the
    gradient all-reduce): the launcher ends the whole job, names the rank
    and the signal, and the job returns an error well before gloo's
    30-minute timeout."""
    (tmp_path / 'killer_hook.py').write_text(KILLER)
    cfg_path = write_config(tmp_path, toy_data, epochs=2)
    add_custom_hooks(cfg_path, 'killer_hook', 'KillRankAt')
    env = _launch_env(port=29619, extra_path=tmp_path)
    start = time.time()
    out = subprocess.run(
        ['bash', osp.join(_mmdet_tools(), 'dist_train.sh'), cfg_path, '2',
         '--work-dir', str(tmp_path / 'work')],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    took = time.time() - start
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert took < 300, took
    # torch's launcher's failure summary: "rank: 1 ... exitcode: -9
    # (SIGKILL)", as the root cause or (torch 2.1, when rank 0's broken
    # all-reduce is observed first) among the other failures
    summary = text[text.index('Failures:'):]
    assert 'rank      : 1' in summary and 'SIGKILL' in summary, text[-3000:]


KILL_AT = '''
import os
import signal

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class KillAtIter(Hook):

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if str(runner.iter) == os.environ.get('KILL_AT_ITER'):
            os.kill(os.getpid(), signal.SIGKILL)
'''


def test_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path,
                                                          toy_data):
    """SAM-DETR++ with DN (random denoising noise) and random flips: a run
    SIGKILLed in the middle of epoch 2 and resumed from its last iteration
    checkpoint ends bitwise equal to the uninterrupted run."""
    (tmp_path / 'kill_at.py').write_text(KILL_AT)
    cfg_path = write_config(tmp_path, toy_data, epochs=2,
                            variant='sam-detr-pp-dn')
    with open(cfg_path, 'a') as f:
        f.write("default_hooks['checkpoint'].update(by_epoch=False, "
                'max_keep_ckpts=20)\n'
                "train_dataloader['batch_size'] = 2\n"
                'randomness = dict(seed=0)\n')
    add_custom_hooks(cfg_path, 'kill_at', 'NonFiniteCheckHook',
                     'RNGStateHook', 'KillAtIter')
    tool = osp.join(_mmdet_tools(), 'train.py')
    env = _launch_env(extra_path=tmp_path)

    def train(work, *extra, kill=None):
        run_env = dict(env, KILL_AT_ITER=str(kill)) if kill else env
        return subprocess.run(
            [sys.executable, tool, cfg_path, '--work-dir', str(work),
             *extra], env=run_env, capture_output=True, text=True,
            timeout=600, cwd=REPO)

    out = train(tmp_path / 'whole')
    assert out.returncode == 0, out.stderr[-3000:]
    # 8 images, batch 2: iterations 1-4 are epoch 1, 5-8 epoch 2
    out = train(tmp_path / 'killed', kill=5)
    assert out.returncode == -9, out.stderr[-3000:]
    assert (tmp_path / 'killed' / 'iter_5.pth').exists()
    assert not (tmp_path / 'killed' / 'iter_6.pth').exists()
    out = train(tmp_path / 'killed', '--resume')
    assert out.returncode == 0, out.stderr[-3000:]
    whole = load_checkpoint(tmp_path / 'whole' / 'iter_8.pth')
    resumed = load_checkpoint(tmp_path / 'killed' / 'iter_8.pth')
    assert resumed['meta']['iter'] == whole['meta']['iter'] == 8
    for key, value in whole['state_dict'].items():
        assert torch.equal(resumed['state_dict'][key], value), key


def test_cpu_ddp_runner_frees_the_ddp_wrapper_before_the_gloo_group(
        tmp_path):
    """After a run the DDP wrapper, whose reducer holds the gloo group and
    its last works, is freed before the group is destroyed: left to
    interpreter exit, gloo aborts a rank now and then ("terminate called
    without an active exception")."""
    import weakref

    import torch.distributed as torch_dist
    from mmengine.model import MMDistributedDataParallel

    from mmdet_samdetr.engine.runner import CPUDDPRunner
    torch_dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        module = torch.nn.Linear(2, 2)
        ddp = MMDistributedDataParallel(module=module, device_ids=None)
        ddp(torch.ones(1, 2)).sum().backward()  # the reducer's all-reduce
        runner = CPUDDPRunner.__new__(CPUDDPRunner)
        runner.model, runner._owns_gloo_group = ddp, True
        wrapper = weakref.ref(ddp)
        del ddp
        runner._release_gloo_group(finished=True)
        assert runner.model is module
        assert wrapper() is None
        assert not torch_dist.is_initialized()
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
