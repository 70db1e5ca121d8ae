# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""benchmarks/convergence.py: the toy baselines are mmdet's DETRs at our toy
budget, and the results bookkeeping, table and plot."""
import json
import os.path as osp
from types import SimpleNamespace

import pytest
from mmdet.registry import MODELS
from mmengine.config import Config

from benchmarks import convergence as conv
from test_align_detr_head import _flat, _strip_scope

TOY = conv.PRESETS['toy']
BASELINES = [name for name, (_, base) in TOY.items() if base is None]
# the leaves a toy baseline may change in its mmdet parent's model: sizes,
# dropout and the class count; every other difference fails the test
SIZE_LEAVES = {
    'num_queries', 'num_feature_levels', 'in_channels', 'out_channels',
    'num_outs', 'num_feats', 'num_layers', 'embed_dims',
    'feedforward_channels', 'num_levels', 'dropout', 'attn_drop',
    'ffn_drop', 'num_classes', 'max_per_img', 'num_dn_queries'
}
# the budget shared with our toy configs (configs/_base_/toy_shapes.py)
BUDGET_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader',
               'val_evaluator', 'train_cfg', 'param_scheduler',
               'default_hooks', 'auto_scale_lr', 'runner_type',
               'custom_hooks')


def _mmdet_parent(path):
    """The mmdet config a toy baseline inherits, through its first bases
    (DAB-DETR 256-d: the toy DAB-DETR, then mmdet's)."""
    base = Config._get_base_files(path)[0]
    if base.startswith('mmdet::'):
        return conv.config_file(base)
    return _mmdet_parent(osp.join(osp.dirname(path), base))


@pytest.mark.parametrize('name', BASELINES)
def test_toy_baseline_is_its_mmdet_parent_at_the_toy_budget(name):
    path = conv.config_file(TOY[name][0])
    cfg = Config.fromfile(path)
    parent = Config.fromfile(_mmdet_parent(path))
    ours = _flat(_strip_scope(cfg.model.to_dict()))
    theirs = _flat(_strip_scope(parent.model.to_dict()))
    changed = {
        k for k in set(ours) | set(theirs)
        if ours.get(k) != theirs.get(k) and not k.startswith('backbone.')
    }
    assert changed, 'expected the toy sizes'
    assert {k.rsplit('.', 1)[-1] for k in changed} <= SIZE_LEAVES, sorted(
        k for k in changed if k.rsplit('.', 1)[-1] not in SIZE_LEAVES)
    # the same data, schedule, runtime and backbone as our toy configs
    ref = 'SAM-DETR' if cfg.model.get('num_feature_levels', 1) == 1 \
        else 'SAM-DETR++'
    ours_toy = Config.fromfile(conv.config_file(TOY[ref][0]))
    for key in BUDGET_KEYS:
        assert cfg[key] == ours_toy[key], key
    assert cfg.model.backbone == ours_toy.model.backbone
    assert cfg.model.num_queries == ours_toy.model.num_queries == 30
    opt, opt_toy = cfg.optim_wrapper, ours_toy.optim_wrapper
    assert opt.optimizer.lr == opt_toy.optimizer.lr
    assert opt.clip_grad == opt_toy.clip_grad
    assert opt.paramwise_cfg.custom_keys.backbone.lr_mult == 1.0
    cfg.model.backbone.init_cfg = None
    MODELS.build(cfg.model)


def test_budget_table_stars_what_differs_from_the_baseline():
    budgets = {
        'Ours': dict(width=128, queries=30),
        'Theirs': dict(width=256, queries=30),
    }
    table = conv.budget_table(budgets, {'Ours': 'Theirs', 'Theirs': None})
    rows = {line.split(' | ')[0]: line for line in table.splitlines()}
    assert rows['| Ours'].startswith('| Ours | Theirs | 128* | 30 |')
    assert rows['| Theirs'].startswith('| Theirs | - | 256 | 30 |')


def _record(model, seed, epoch, ap, seconds, preset='toy'):
    return dict(preset=preset, model=model, seed=seed, config='c.py',
                epoch=epoch, train_seconds=seconds, bbox_mAP=ap,
                bbox_mAP_50=ap, time='t')


def test_results_append_dedupe_and_finished(tmp_path):
    path = str(tmp_path / 'r' / 'results.jsonl')
    assert not conv.read_results(path)
    conv.append_result(path, _record('A', 0, 2, 0.1, 60))
    conv.append_result(path, _record('A', 0, 4, 0.2, 120))
    # a resumed run evaluating epoch 4 again: the later line wins
    conv.append_result(path, _record('A', 0, 4, 0.25, 121))
    runs = conv.read_results(path)
    assert sorted(runs[('toy', 'A', 0)]) == [2, 4]
    assert runs[('toy', 'A', 0)][4]['bbox_mAP'] == 0.25
    assert conv.run_finished(runs, ('toy', 'A', 0), 4)
    assert not conv.run_finished(runs, ('toy', 'A', 0), 6)
    assert not conv.run_finished(runs, ('toy', 'A', 1), 4)
    with open(path, 'a') as f:
        f.write('{"model": "A"}\n')
    with pytest.raises(ValueError, match='results.jsonl, line 4'):
        conv.read_results(path)


def test_a_run_is_trained_by_one_process_at_a_time(tmp_path):
    first = conv.lock_run(str(tmp_path / 'run'))
    assert first is not None
    assert conv.lock_run(str(tmp_path / 'run')) is None  # held
    assert conv.lock_run(str(tmp_path / 'other')) is not None
    first.close()
    assert conv.lock_run(str(tmp_path / 'run')) is not None  # released


def _runner(epoch, val_runs, rank=0):
    return SimpleNamespace(
        epoch=epoch, iter=10, rank=rank, world_size=2,
        train_loop=SimpleNamespace(val_interval=2, max_epochs=4,
                                   max_iters=10),
        val_loop=SimpleNamespace(run=lambda: val_runs.append(epoch)))


def test_record_hook_counts_time_across_resume_and_reevaluates(tmp_path):
    path = str(tmp_path / 'results.jsonl')
    hook = conv.record_hook(path, 'toy', 'A', 1, 'c.py')
    # the training time survives a checkpoint round trip
    hook.train_seconds = 42.0
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(None, checkpoint)
    resumed = conv.record_hook(path, 'toy', 'A', 1, 'c.py')
    resumed.after_load_checkpoint(None, checkpoint)
    assert resumed.train_seconds == 42.0
    # resumed at epoch 2 whose evaluation is missing: evaluates it first
    val_runs = []
    resumed.before_train(_runner(2, val_runs))
    assert val_runs == [2]
    resumed.after_val_epoch(_runner(2, []), {'coco/bbox_mAP': 0.3})
    record = json.loads(open(path).read())
    assert record['epoch'] == 2 and record['seed'] == 1
    assert record['train_seconds'] == 42.0 and record['bbox_mAP'] == 0.3
    assert record['settings'] == {} and record['machine']['processes'] == 2
    # rank 1 runs the missing evaluation with rank 0 (else rank 0 waits for
    # it in collect_results) and writes nothing
    other = conv.record_hook(path, 'toy', 'A', 1, 'c.py')
    val_runs = []
    other.before_train(_runner(4, val_runs, rank=1))
    assert val_runs == [4] and other.bar is None
    other.after_val_epoch(_runner(4, [], rank=1), {'coco/bbox_mAP': 0.5})
    assert len(open(path).readlines()) == 1
    # present now: not again; epoch 3 is no evaluation epoch
    val_runs = []
    resumed.before_train(_runner(2, val_runs))
    resumed.before_train(_runner(3, val_runs))
    assert val_runs == []
    with pytest.raises(RuntimeError, match='no coco/bbox_mAP'):
        resumed.after_val_epoch(_runner(4, []), {'acc': 1.0})


def test_table_and_plot_of_synthetic_results(tmp_path):
    runs = {}
    for model, seed, per_epoch in (('Ours', 0, 30.0), ('Ours', 1, 34.0),
                                   ('Base', 0, 20.0)):
        runs[('toy', model, seed)] = {
            e: _record(model, seed, e, 0.1 * e + seed / 100, per_epoch * e)
            for e in (2, 4)
        }
    runs[('coco', 'Other', 0)] = {2: _record('Other', 0, 2, 0.5, 1, 'coco')}
    pairs = {'Ours': 'Base', 'Base': None}
    table = conv.results_table(runs, 'toy', pairs)
    lines = table.splitlines()
    assert lines[0].startswith('| model | seed | AP@2 | AP@4 |')
    assert lines[2] == '| Ours | 0 | 0.200 | 0.400 | 30 | 1.50 (Base) |'
    assert lines[3] == '| Ours | 1 | 0.210 | 0.410 | 34 | 1.70 (Base) |'
    assert lines[4] == '| Base | 0 | 0.200 | 0.400 | 20 | - |'
    assert 'Other' not in table
    out = tmp_path / 'plot.png'
    labels = conv.plot(runs, 'toy', str(out), pairs=pairs)
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # the time ratio next to each curve, as in the table
    assert labels == {'Base': [
        'Base (seed 0)', 'Ours (seed 0), 1.50x Base s/epoch',
        'Ours (seed 1), 1.70x Base s/epoch'
    ]}


def test_plot_draws_a_row_per_comparison(tmp_path, monkeypatch):
    """Each model in its baseline's row, a baseline nobody is paired with
    in the row it joins (DAB-DETR beside Conditional DETR), else alone."""
    monkeypatch.setattr(conv, 'JOINS_ROW', {'Solo': 'Base'})
    pairs = {'Ours': 'Base', 'Multi': 'MBase', 'Base': None, 'Solo': None,
             'Lone': None, 'MBase': None}
    runs = {('toy', m, 0): {2: _record(m, 0, 2, 0.3, 10.0)}
            for m in ('Multi', 'Lone', 'Solo', 'Ours', 'Base')}
    assert conv.plot_rows(['Base', 'Lone', 'Multi', 'Ours', 'Solo'],
                          pairs) == {'Base': ['Base', 'Ours', 'Solo'],
                                     'Lone': ['Lone'], 'MBase': ['Multi']}
    assert conv.plot_rows(['Ours', 'Base'], {}) == {'': ['Ours', 'Base']}
    labels = conv.plot(runs, 'toy', str(tmp_path / 'p.png'), pairs=pairs)
    # no MBase runs: no ratio in Multi's label
    assert labels == {'Base': ['Base (seed 0)', 'Ours (seed 0), 1.00x Base '
                               's/epoch', 'Solo (seed 0)'],
                      'Lone': ['Lone (seed 0)'], 'MBase': ['Multi (seed 0)']}
    assert list(conv.plot(runs, 'toy', str(tmp_path / 'q.png'))) == ['']
    with pytest.raises(ValueError, match="no results of preset 'x'"):
        conv.plot(runs, 'x', str(tmp_path / 'x.png'))


def _args(preset, data_root=None):
    return SimpleNamespace(preset=preset, data_root=data_root, epochs=None,
                           val_interval=2, train_subset=None,
                           total_batch=None, gpus=0)


@pytest.mark.parametrize('preset', ['toy-large', 'toy-2x'])
@pytest.mark.parametrize('name', ['SAM-DETR', 'ConditionalDETR'])
def test_larger_toy_presets_change_the_data_only(name, preset, tmp_path):
    toy = _flat(conv.load_config(TOY[name][0], 'toy', _args('toy')).to_dict())
    large = _flat(
        conv.load_config(TOY[name][0], preset, _args(preset)).to_dict())
    changed = {k for k in set(toy) | set(large) if toy.get(k) != large.get(k)}
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    data = {
        f'{loader}.dataset.data_root' for loader in loaders
    } | {'val_evaluator.ann_file', 'test_evaluator.ann_file'}
    assert changed == {f'{loader}.dataset.pipeline' for loader in loaders} \
        | (data if preset == 'toy-large' else set())
    for loader in loaders:
        assert large[f'{loader}.dataset.data_root'].endswith(
            conv.TOY_DATA[preset]['root'])
        pipelines = (toy[f'{loader}.dataset.pipeline'],
                     large[f'{loader}.dataset.pipeline'])
        for ours, theirs in zip(*pipelines):
            if ours['type'] == 'Resize':
                assert (ours['scale'], theirs['scale']) == ((96, 96),
                                                            (192, 192))
            else:
                assert ours == theirs
    backbone = 'model.backbone.init_cfg.checkpoint'
    assert toy[backbone].endswith('data/toy_shapes/backbone_crops.pth')
    assert large[backbone] == toy[backbone]
    # --data-root moves the preset's data; the backbone is that set's
    # unless the preset has a set of its own
    moved = conv.load_config(TOY[name][0], preset,
                             _args(preset, str(tmp_path)))
    assert moved.train_dataloader.dataset.data_root == str(tmp_path) + '/'
    assert moved.val_evaluator.ann_file == f'{tmp_path}/annotations/val.json'
    assert moved.model.backbone.init_cfg.checkpoint == (
        toy[backbone] if preset == 'toy-large' else
        f'{tmp_path}/backbone_crops.pth')


def test_toy_large_data_has_the_toy_objects_in_four_times_the_area(
        tmp_path):
    from demo.toy_shapes import generate_toy_dataset
    spec = dict(conv.TOY_DATA['toy-large']['generate'], num_train=40,
                num_val=1)
    paths = generate_toy_dataset(str(tmp_path), **spec)
    data = json.load(open(paths['train']))
    assert {(i['width'], i['height']) for i in data['images']} == {(192, 192)}
    per_image = {}
    for ann in data['annotations']:
        per_image[ann['image_id']] = per_image.get(ann['image_id'], 0) + 1
        side = (ann['bbox'][2] * ann['bbox'][3])**0.5
        # the toy set's objects: 0.12-0.45 of 96 px (box corners rounded)
        assert 0.12 * 96 - 1.5 <= side <= 0.45 * 96 + 1.5, ann
    assert max(per_image.values()) > 4 and max(per_image.values()) <= 8


@pytest.mark.parametrize('name', [n for n in TOY if n.endswith(' 256-d')])
def test_equal_width_models_change_the_width_only(name):
    path = conv.config_file(TOY[name][0])
    ours = Config.fromfile(path)
    narrow = Config.fromfile(
        osp.join(osp.dirname(path), Config._get_base_files(path)[0]))
    # a baseline at 256-d (DAB-DETR) is compared with its mmdet config
    baseline = Config.fromfile(
        conv.config_file(TOY[TOY[name][1]][0]) if TOY[name][1] else
        _mmdet_parent(path))
    wide, toy = _flat(ours.model.to_dict()), _flat(narrow.model.to_dict())
    changed = {k for k in set(wide) | set(toy) if wide.get(k) != toy.get(k)}
    assert {k.rsplit('.', 1)[-1] for k in changed} == {
        'embed_dims', 'out_channels', 'num_feats'
    }
    assert all(wide[k] == 2 * toy[k] for k in changed)
    theirs = _flat(baseline.model.to_dict())
    widths = {k: v for k, v in wide.items() if k.endswith('embed_dims')}
    assert len(widths) >= 6 and set(widths.values()) == {256}, widths
    for key in ('neck.out_channels', 'positional_encoding.num_feats'):
        assert wide[key] == theirs[key], key
    ours.model.backbone.init_cfg = None
    MODELS.build(ours.model)


def test_a_run_goes_on_with_its_own_settings_only(tmp_path):
    work_dir, results = str(tmp_path / 'run'), 'r.jsonl'
    conv.check_settings('A', {}, work_dir, {'train_subset': 100}, results)
    conv.check_settings('A', {}, work_dir, {'train_subset': 100}, results)
    with pytest.raises(ValueError,
                       match=r"A was started with \{'train_subset': 100\} "
                       r'settings .*convergence_settings.json\), now none'):
        conv.check_settings('A', {}, work_dir, {}, results)
    # records of a run started before the work dir kept its settings
    records = {2: _record('A', 0, 2, 0.1, 60)}
    conv.check_settings('A', records, str(tmp_path / 'old'), {}, results)
    with pytest.raises(ValueError, match=r'r.jsonl, epoch 2'):
        conv.check_settings('A', records, str(tmp_path / 'new'),
                            {'epochs': 4}, results)
    args = SimpleNamespace(epochs=None, train_subset=100, gpus=0,
                           total_batch=16, data_root=None)
    assert conv.run_settings(args) == {'train_subset': 100,
                                       'total_batch': 16}


def test_a_toy_set_of_other_image_sizes_is_refused(tmp_path):
    from demo.toy_shapes import generate_toy_dataset
    paths = generate_toy_dataset(str(tmp_path), num_train=1, num_val=1,
                                 img_size=64)
    conv.check_toy_images(paths['val'], 64, 'toy')
    with pytest.raises(ValueError, match=r'val.json: 64x64 images, the '
                       r'toy-large preset expects 192x192'):
        conv.check_toy_images(paths['val'], 192, 'toy-large')
