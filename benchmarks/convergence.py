#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Convergence of the SAM-DETR family vs mmdet's DETRs at equal budget.

Trains every model of a preset with mmengine's Runner, each run (model,
seed) in a fresh process, evaluates COCO bbox AP (mmdet's CocoMetric) every
``--val-interval`` epochs and appends one JSON line per evaluation to
``--results``. A run resumes from its last checkpoint (one per epoch, in
``<work-dir>/<preset>/<model slug>_seed<seed>``, e.g.
``sam-detr-256-d_seed0``), and runs whose last evaluation is in the results
are skipped, so a comparison can be run in parts; a run's settings
(``--epochs``, ``--train-subset``, ``--gpus``, ``--total-batch``,
``--data-root``) must stay those it started with. Then it writes a table
(AP per evaluated epoch, training seconds per epoch and their ratio to the
pair's baseline) and one plot of the preset's runs in the results: a row
per comparison, AP vs epoch and AP vs training time.

Presets:

- ``toy``: the toy-shapes data (``demo/make_toy_dataset.py``, written when
  missing) and the budget of ``configs/_base_/toy_shapes.py``: the toy
  configs vs mmdet's DETRs in ``configs/sam_detr_toy/baselines/``;
- ``toy-large``: the same toy configs on a second toy set with the same
  objects (11-43 px, the square root of the box area) in four times the
  area: 192x192 images of up to 8 objects, 1000 training images (about as
  many objects as the toy set's 2000), so 24x24 maps at the single-scale
  models' stride 8;
- ``toy-2x``: the same toy configs on the toy set resized to 192x192: the
  objects twice as large, 3-11 cells of the 24x24 maps;
- every toy preset starts from the toy set's backbone checkpoint
  (``backbone_crops.pth`` of data/toy_shapes/, or of ``--data-root`` for
  ``toy`` and ``toy-2x``);
- ``coco``: the full ResNet-50 COCO configs, all on one 12-epoch schedule
  (drop at 10); ``--train-subset N`` trains on the first N images of
  train2017 (mmengine's ``dataset.indices``).

    python benchmarks/convergence.py --threads 1               # toy, seed 0
    python benchmarks/convergence.py --models "SAM-DETR 256-d" \\
        ConditionalDETR --seeds 0 1
    python benchmarks/convergence.py --report-only             # table + plot
    python benchmarks/convergence.py --preset toy-large \\
        --models "SAM-DETR 256-d" ConditionalDETR
    python benchmarks/convergence.py --preset coco --gpus 8 --total-batch 16
    python benchmarks/convergence.py --preset coco --gpus 8 --total-batch 16 \\
        --train-subset 20000 --models SAM-DETR ConditionalDETR
"""
import argparse
import json
import logging
import os
import os.path as osp
import subprocess
import sys
import time
from collections import defaultdict
from typing import Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY = 'configs/sam_detr_toy/'
COCO_SCHEDULE = dict(epochs=12, milestones=[10])

# name: (config, the baseline it is compared with; None: a baseline)
PRESETS = {
    'toy': {
        # the models of ours at their baseline's width: 256-d where mmdet's
        # Conditional DETR and DINO are forced to it
        'SAM-DETR 256-d': (TOY + 'sam-detr-256d_r18_1xb8-toy-shapes.py',
                           'ConditionalDETR'),
        'SAM-DETR++ DN 256-d': (
            TOY + 'sam-detr-pp-dn-256d_r18_1xb8-toy-shapes.py', 'DINO'),
        'SAM-DETR+SMCA 256-d': (
            TOY + 'sam-detr-smca-256d_r18_1xb8-toy-shapes.py',
            'ConditionalDETR'),
        'SAM-DETR++': (TOY + 'sam-detr-pp_r18_1xb8-toy-shapes.py',
                       'DeformableDETR'),
        'Align-SAM-DETR 256-d': (
            TOY + 'align-sam-detr-256d_r18_1xb8-toy-shapes.py',
            'ConditionalDETR'),
        'Align-SAM-DETR++ 256-d': (
            TOY + 'align-sam-detr-pp-256d_r18_1xb8-toy-shapes.py', 'DINO'),
        'Align-DETR': (TOY + 'align-detr-3scale_r18_1xb8-toy-shapes.py',
                       'DINO'),
        # the 128-d toy configs, against the same baselines
        'SAM-DETR': (TOY + 'sam-detr_r18_1xb8-toy-shapes.py',
                     'ConditionalDETR'),
        'SAM-DETR++ DN': (TOY + 'sam-detr-pp-dn_r18_1xb8-toy-shapes.py',
                          'DINO'),
        'SAM-DETR+SMCA': (TOY + 'sam-detr-smca_r18_1xb8-toy-shapes.py',
                          'ConditionalDETR'),
        'Align-SAM-DETR': (TOY + 'align-sam-detr_r18_1xb8-toy-shapes.py',
                           'ConditionalDETR'),
        'Align-SAM-DETR++': (
            TOY + 'align-sam-detr-pp_r18_1xb8-toy-shapes.py', 'DINO'),
        'ConditionalDETR': (
            TOY + 'baselines/conditional-detr_r18_1xb8-toy-shapes.py', None),
        'DINO': (TOY + 'baselines/dino-3scale_r18_1xb8-toy-shapes.py', None),
        'DAB-DETR': (TOY + 'baselines/dab-detr_r18_1xb8-toy-shapes.py',
                     None),
        'DAB-DETR 256-d': (
            TOY + 'baselines/dab-detr-256d_r18_1xb8-toy-shapes.py', None),
        'DeformableDETR': (
            TOY + 'baselines/deformable-detr_r18_1xb8-toy-shapes.py', None),
    },
    'coco': {
        'SAM-DETR': ('configs/sam_detr/sam-detr_r50_4xb4-12e_coco.py',
                     'ConditionalDETR'),
        'SAM-DETR++ SMCA+DN': (
            'configs/sam_detr_pp/sam-detr-pp-smca-dn_r50_8xb2-12e_coco.py',
            'DINO'),
        'SAM-DETR+SMCA': (
            'configs/sam_detr/sam-detr-smca_r50_4xb4-12e_coco.py',
            'ConditionalDETR'),
        'SAM-DETR++': ('configs/sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py',
                       'DeformableDETR'),
        'Align-SAM-DETR': (
            'configs/align_sam_detr/align-sam-detr_r50_4xb4-12e_coco.py',
            'ConditionalDETR'),
        'Align-SAM-DETR++': (
            'configs/align_sam_detr/align-sam-detr-pp_r50_8xb2-12e_coco.py',
            'DINO'),
        'Align-DETR': (
            'configs/align_detr/align-detr-4scale_r50_8xb2-12e_coco.py',
            'DINO'),
        'ConditionalDETR': (
            'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
            None),
        'DINO': ('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', None),
        'DAB-DETR': ('mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py', None),
        'DeformableDETR': (
            'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
            None),
    },
}
# The data of the toy presets: the directory, the side images are resized
# to, and generate_toy_dataset's arguments for a set of its own (else the
# toy set of demo/make_toy_dataset.py, also the backbone's).
TOY_DATA = {
    'toy': dict(root='data/toy_shapes/', resize=96),
    'toy-large': dict(
        root='data/toy_shapes_large/', resize=192,
        generate=dict(img_size=192, num_train=1000, max_objects=8,
                      scale_range=(0.06, 0.225))),
    'toy-2x': dict(root='data/toy_shapes/', resize=192),
}
for _preset in TOY_DATA:
    PRESETS.setdefault(_preset, PRESETS['toy'])
# what each architecture brings beyond the shared budget (printed with the
# budget table: the differences the architectures force)
ARCHITECTURE = {
    'SAM-DETR': 'Semantics Aligner (RoIAlign 7x7 + 8 salient points), '
    'GN neck',
    'SAM-DETR+SMCA': 'SAM-DETR + SMCA Gaussian-weighted cross-attention',
    'SAM-DETR++': 'multi-scale SAM-DETR, deformable encoder, decoder '
    'reading levels coarse to fine',
    'SAM-DETR++ DN': 'SAM-DETR++ + denoising queries',
    'SAM-DETR++ SMCA+DN': 'SAM-DETR++ + SMCA + denoising queries',
    'Align-SAM-DETR': 'SAM-DETR trained with mixed matching + Align Loss',
    'Align-SAM-DETR++': 'SAM-DETR++ trained with mixed matching + Align '
    'Loss',
    'Align-DETR': 'DINO trained with mixed matching + Align Loss',
    'ConditionalDETR': 'conditional cross-attention, neck without GN',
    'DAB-DETR': 'anchor-box queries, PReLU FFNs, neck without GN',
    'DeformableDETR': 'deformable attention, no box refinement, one stage',
    'DINO': 'two-stage query selection, box refinement, contrastive '
    'denoising',
}
for _name in ('SAM-DETR', 'SAM-DETR++ DN', 'SAM-DETR+SMCA',
              'Align-SAM-DETR', 'Align-SAM-DETR++', 'DAB-DETR'):
    ARCHITECTURE[f'{_name} 256-d'] = ARCHITECTURE[_name]
# baselines no model is paired with, drawn in the plot's row of another
# comparison: the SAM-DETR paper compares with both single-scale DETRs
JOINS_ROW = {'DAB-DETR': 'ConditionalDETR',
             'DAB-DETR 256-d': 'ConditionalDETR'}


def slug(name: str) -> str:
    """File-system name of a model: ``SAM-DETR++ DN`` -> ``sam-detr-pp-dn``."""
    return (name.lower().replace('++', '-pp').replace('+', '-')
            .replace(' ', '-'))


def config_file(path: str) -> str:
    """The file of a preset's config: ``mmdet::x`` in mmdet's package,
    others relative to the repository."""
    import mmdet
    if path.startswith('mmdet::'):
        return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs',
                        path[len('mmdet::'):])
    return osp.join(REPO, path)


def load_config(path: str, preset: str, args):
    """The config of one run: the model's config at the preset's budget."""
    from mmengine.config import Config
    cfg = Config.fromfile(config_file(path))
    if preset == 'coco':
        epochs = COCO_SCHEDULE['epochs']
        cfg.train_cfg.max_epochs = epochs
        cfg.param_scheduler = [
            dict(type='MultiStepLR', end=epochs, by_epoch=True,
                 milestones=COCO_SCHEDULE['milestones'])
        ]
    if args.train_subset:
        cfg.train_dataloader.dataset.indices = args.train_subset
    if args.total_batch:
        processes = max(args.gpus, 1)
        if args.total_batch % processes:
            raise ValueError(f'--total-batch {args.total_batch} is not a '
                             f'multiple of --gpus {args.gpus}')
        cfg.train_dataloader.batch_size = args.total_batch // processes
    if args.epochs:
        cfg.train_cfg.max_epochs = args.epochs
    cfg.train_cfg.val_interval = args.val_interval
    if preset in TOY_DATA:
        root = toy_data_root(preset, args)
        size = TOY_DATA[preset]['resize']
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            cfg[loader].dataset.data_root = root
            for transform in cfg[loader].dataset.pipeline:
                if transform.type == 'Resize':
                    transform.scale = (size, size)
        for evaluator in ('val_evaluator', 'test_evaluator'):
            cfg[evaluator].ann_file = root + 'annotations/val.json'
        cfg.model.backbone.init_cfg.checkpoint = toy_set_root(
            preset, args) + 'backbone_crops.pth'
    return cfg


def toy_data_root(preset: str, args) -> str:
    """The data directory of a toy preset: ``--data-root`` or its own."""
    if args.data_root:
        return args.data_root.rstrip('/') + '/'
    return osp.join(REPO, TOY_DATA[preset]['root'])


def toy_set_root(preset: str, args) -> str:
    """The toy set of demo/make_toy_dataset.py, with the backbone
    checkpoint: the preset's data, or data/toy_shapes/ for a preset with a
    set of its own."""
    if 'generate' in TOY_DATA[preset]:
        return osp.join(REPO, TOY_DATA['toy']['root'])
    return toy_data_root(preset, args)


def make_toy_data(args) -> None:
    """Write the preset's toy data and the toy backbone when missing."""
    sys.path.insert(0, osp.join(REPO, 'demo'))
    from make_toy_dataset import make_toy_dataset
    from toy_shapes import generate_toy_dataset
    make_toy_dataset(toy_set_root(args.preset, args))
    root = toy_data_root(args.preset, args)
    spec = TOY_DATA[args.preset].get('generate')
    ann = osp.join(root, 'annotations', 'val.json')
    if spec and not osp.isfile(ann):
        print(f'writing the {args.preset} data to {root} ...', flush=True)
        generate_toy_dataset(root, **spec)
    check_toy_images(ann, (spec or {}).get('img_size', 96), args.preset)


def check_toy_images(ann_file: str, size: int, preset: str) -> None:
    """Refuse a toy set of other image sizes than the preset's (another
    set in ``--data-root`` would be trained on silently).

    Raises:
        ValueError: naming the file, its size and the expected one.
    """
    with open(ann_file) as f:
        image = json.load(f)['images'][0]
    if (image['width'], image['height']) != (size, size):
        raise ValueError(
            f'{ann_file}: {image["width"]}x{image["height"]} images, the '
            f'{preset} preset expects {size}x{size} (another toy set in '
            '--data-root?)')


def budget(cfg) -> dict:
    """The budget keys of a config, for the side-by-side table (builds
    the model to count its parameters)."""
    import copy

    from mmdet.registry import MODELS
    model = cfg.model
    built = copy.deepcopy(model)
    built.backbone.init_cfg = None
    params = sum(p.numel() for p in MODELS.build(built).parameters())
    resize = [
        t for t in cfg.val_dataloader.dataset.pipeline if t.type == 'Resize'
    ]
    layer = model.encoder.get('layer_cfg', {})
    ffn = [
        part.get('layer_cfg', {}).get('ffn_cfg', {}).get(
            'feedforward_channels') for part in (model.encoder, model.decoder)
    ]
    backbone_ckpt = (model.backbone.get('init_cfg') or {}).get('checkpoint')
    dn = model.get('dn_cfg') or {}
    return {
        'image': 'x'.join(map(str, resize[0].scale)) if resize else '?',
        'batch/process': cfg.train_dataloader.batch_size,
        'epochs': cfg.train_cfg.max_epochs,
        'lr': cfg.optim_wrapper.optimizer.lr,
        'backbone': f'R{model.backbone.depth} '
        f'({osp.basename(str(backbone_ckpt))})',
        'levels': model.neck.get('num_outs', 1),
        'queries': model.num_queries,
        'dn queries': dn.get('group_cfg', {}).get('num_dn_queries', 0),
        'enc/dec layers': f'{model.encoder.num_layers}/'
        f'{model.decoder.num_layers}',
        'width': layer.get('self_attn_cfg', {}).get('embed_dims'),
        'FFN enc/dec': f'{ffn[0]}/{ffn[1]}',
        'params': f'{params / 1e6:.2f} M',
    }


def budget_table(budgets: dict, pairs: dict) -> str:
    """Markdown table of the budgets; ``*``: differs from the baseline."""
    keys = list(next(iter(budgets.values())))
    lines = [
        '| model | baseline | ' + ' | '.join(keys) + ' | architecture |',
        '|---' * (len(keys) + 3) + '|'
    ]
    for name, values in budgets.items():
        base = budgets.get(pairs.get(name))
        cells = [
            f'{v}*' if base is not None and base[k] != v else str(v)
            for k, v in values.items()
        ]
        lines.append(f'| {name} | {pairs.get(name) or "-"} | ' +
                     ' | '.join(cells) + f' | {ARCHITECTURE.get(name, "")} |')
    return '\n'.join(lines)


# ---------------------------------------------------------------- results


def read_results(path: str) -> dict:
    """{(preset, model, seed): {epoch: record}}; a later line of the same
    evaluation replaces an earlier one (a resumed run evaluating again)."""
    runs = defaultdict(dict)
    if not osp.isfile(path):
        return runs
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = (rec['preset'], rec['model'], int(rec['seed']))
                runs[key][int(rec['epoch'])] = rec
            except (ValueError, KeyError) as err:
                raise ValueError(
                    f'{path}, line {number}: not a convergence record '
                    f'({err!r}): {line[:200]!r}') from err
    return runs


def append_result(path: str, record: dict) -> None:
    """Append one evaluation as a JSON line (one write: runs in parallel
    processes append to the same file)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'a') as f:
        f.write(json.dumps(record, sort_keys=True) + '\n')


def run_finished(runs: dict, key: tuple, max_epochs: int) -> bool:
    return max_epochs in runs.get(key, {})


def _seconds_per_epoch(records: dict) -> float:
    last = records[max(records)]
    return last['train_seconds'] / last['epoch']


def time_ratios(runs: dict, preset: str, pairs: dict) -> dict:
    """{run key: (s/epoch, ratio to the pair's baseline or None)}; the
    baseline's s/epoch is the mean over its runs."""
    per_epoch = {k: _seconds_per_epoch(v) for k, v in runs.items()
                 if k[0] == preset}
    speed = defaultdict(list)
    for key, seconds in per_epoch.items():
        speed[key[1]].append(seconds)
    out = {}
    for key, seconds in per_epoch.items():
        base = speed.get(pairs.get(key[1]))
        out[key] = (seconds,
                    seconds / (sum(base) / len(base)) if base else None)
    return out


def results_table(runs: dict, preset: str, pairs: dict) -> str:
    """Markdown: AP per evaluated epoch, training s/epoch and its ratio to
    the baseline of the pair (mean s/epoch over the baseline's runs)."""
    keys = sorted((k for k in runs if k[0] == preset),
                  key=lambda k: (list(pairs).index(k[1])
                                 if k[1] in pairs else len(pairs), k[1], k[2]))
    if not keys:
        return f'(no results of preset {preset!r})'
    epochs = sorted({e for k in keys for e in runs[k]})
    speed = time_ratios(runs, preset, pairs)
    lines = [
        '| model | seed | ' + ' | '.join(f'AP@{e}' for e in epochs) +
        ' | s/epoch | time / baseline |',
        '|---' * (len(epochs) + 4) + '|'
    ]
    for key in keys:
        records = runs[key]
        per_epoch, ratio = speed[key]
        ratio = '-' if ratio is None else (
            f'{ratio:.2f} ({pairs[key[1]]})')
        cells = [
            f'{records[e]["bbox_mAP"]:.3f}' if e in records else ''
            for e in epochs
        ]
        lines.append(f'| {key[1]} | {key[2]} | ' + ' | '.join(cells) +
                     f' | {per_epoch:.0f} | {ratio} |')
    return '\n'.join(lines)


def plot_rows(names: list, pairs: dict) -> dict:
    """{baseline: the names drawn in its row}: each model with the baseline
    it is paired with, a baseline in its own row or, for one of
    ``JOINS_ROW``, in the row of the comparison it joins; without pairs,
    one row. Rows in the order of their first name."""
    rows = {}
    for name in names:
        row = (pairs.get(name) or JOINS_ROW.get(name, name)) if pairs else ''
        rows.setdefault(row, []).append(name)
    return rows


def plot(runs: dict, preset: str, out_file: str, title: str = '',
         pairs: dict = None) -> dict:
    """One figure, a row per comparison (a baseline and the models paired
    with it, see :func:`plot_rows`), each with two panels: bbox AP vs epoch
    and vs training time, the same AP axis in every panel. With ``pairs``,
    each run's label gives its training time per epoch as a ratio to its
    baseline's. Returns {baseline: the labels of its row's runs}.

    Raises:
        ValueError: no results of ``preset`` in ``runs``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    # the preset's order: a model keeps its colour in every row and plot
    order = list(PRESETS.get(preset, {}))
    names = sorted({k[1] for k in runs if k[0] == preset},
                   key=lambda n: (order.index(n) if n in order else
                                  len(order), n))
    if not names:
        raise ValueError(f'no results of preset {preset!r} to plot')
    pairs = pairs or {}
    speed = time_ratios(runs, preset, pairs)
    rows = plot_rows(names, pairs)

    def _ratio_label(key):
        ratio = speed[key][1]
        return '' if ratio is None else (
            f', {ratio:.2f}x {pairs[key[1]]} s/epoch')

    fig, axes = plt.subplots(
        len(rows), 2, figsize=(13, 0.5 + 3.4 * len(rows)), dpi=100,
        sharey=True, squeeze=False, layout='constrained')
    # tab20's dark shades first, then its light ones: no two of the first
    # ten models share a hue
    tab20 = plt.get_cmap('tab20')
    colours = [tab20(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
    styles = ['-', '--', ':', '-.']
    labels = {}
    for (row, row_names), (ax_epoch, ax_time) in zip(rows.items(), axes):
        for key in sorted((k for k in runs
                           if k[0] == preset and k[1] in row_names),
                          key=lambda k: (names.index(k[1]), k[2])):
            records = [runs[key][e] for e in sorted(runs[key])]
            index = (order.index(key[1])
                     if key[1] in order else names.index(key[1]))
            kwargs = dict(
                color=colours[index % len(colours)],
                linestyle=styles[key[2] % len(styles)],
                marker='os^vDP<>Xph*'[index % 12],
                markersize=4,
                label=f'{key[1]} (seed {key[2]}){_ratio_label(key)}')
            ap = [r['bbox_mAP'] for r in records]
            ax_epoch.plot([r['epoch'] for r in records], ap, **kwargs)
            ax_time.plot([r['train_seconds'] / 60 for r in records], ap,
                         **kwargs)
        ax_epoch.set_ylabel('COCO bbox AP (val)')
        if row:
            baselines = [row] + [n for n in row_names
                                 if not pairs.get(n) and n != row]
            ax_epoch.set_title('vs ' + ', '.join(baselines), fontsize=9,
                               loc='left')
        for ax in (ax_epoch, ax_time):
            ax.grid(alpha=0.3)
        # beside the row: with many runs it would hide their points
        handles, labels[row] = ax_time.get_legend_handles_labels()
        ax_time.legend(handles, labels[row], fontsize=7,
                       loc='upper left', bbox_to_anchor=(1.02, 1.0))
    axes[-1][0].set_xlabel('epoch')
    axes[-1][1].set_xlabel('training time (min, evaluation excluded)')
    if title:
        fig.suptitle(title, fontsize=10)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file)
    plt.close(fig)
    return labels


# ----------------------------------------------------------------- worker


def record_hook(results: str, preset: str, name: str, seed: int,
                config: str, settings: dict = None):
    """An mmengine hook appending every evaluation to ``results``.

    Keeps the training time (evaluation excluded) in each checkpoint's meta
    (``convergence_train_seconds``), so a resumed run goes on counting; on
    resume, re-runs the evaluation of the checkpoint's epoch when the killed
    run had saved the checkpoint but not yet written the evaluation. Rank 0
    writes the records (with ``settings`` and the machine: host, processes,
    torch threads) and shows a progress bar of the run's iterations.
    """
    import socket

    import torch
    from mmengine.hooks import Hook
    from mmengine.utils import ProgressBar

    class ConvergenceRecordHook(Hook):
        priority = 'ABOVE_NORMAL'  # before CheckpointHook (VERY_LOW)

        def __init__(self):
            self.train_seconds = 0.0
            self.bar = None
            self.pending = 0

        def after_load_checkpoint(self, runner, checkpoint):
            self.train_seconds = checkpoint.get('meta', {}).get(
                'convergence_train_seconds', 0.0)

        def before_save_checkpoint(self, runner, checkpoint):
            checkpoint.setdefault('meta', {})[
                'convergence_train_seconds'] = self.train_seconds

        def before_train(self, runner):
            loop = runner.train_loop
            epoch = runner.epoch
            done = read_results(results).get((preset, name, seed), {})
            if epoch and epoch not in done and (
                    epoch % loop.val_interval == 0
                    or epoch == loop.max_epochs):
                runner.val_loop.run()
            left = loop.max_iters - runner.iter
            if runner.rank == 0 and left > 0:
                self.bar = ProgressBar(left)
                # about 500 updates a run: a log file is not flooded
                self.step = max(1, left // 500)

        def before_train_epoch(self, runner):
            self._start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if self.bar is not None:
                self.pending += 1
                if self.pending == self.step:
                    self.bar.update(self.pending)
                    self.pending = 0

        def after_train_epoch(self, runner):
            self.train_seconds += time.perf_counter() - self._start

        def after_val_epoch(self, runner, metrics=None):
            metrics = metrics or {}
            if 'coco/bbox_mAP' not in metrics:
                raise RuntimeError(
                    f'{config}: the val evaluator gave no coco/bbox_mAP '
                    f'(got {sorted(metrics)}); the benchmark needs '
                    "val_evaluator = dict(type='CocoMetric', metric='bbox')")
            if runner.rank != 0:
                return
            record = dict(
                preset=preset, model=name, seed=seed, config=config,
                epoch=runner.epoch, train_seconds=self.train_seconds,
                bbox_mAP=metrics['coco/bbox_mAP'],
                bbox_mAP_50=metrics.get('coco/bbox_mAP_50'),
                settings=settings or {},
                machine=dict(host=socket.gethostname(),
                             processes=runner.world_size,
                             threads=torch.get_num_threads()),
                time=time.strftime('%Y-%m-%dT%H:%M:%S'))
            append_result(results, record)
            print(f'\n{name} seed {seed} epoch {runner.epoch}: bbox AP '
                  f'{record["bbox_mAP"]:.3f}, {self.train_seconds / 60:.1f} '
                  'min of training', flush=True)

    return ConvergenceRecordHook()


def run_settings(args) -> dict:
    """The options that change what a run trains (those given)."""
    values = dict(epochs=args.epochs, train_subset=args.train_subset,
                  gpus=args.gpus, total_batch=args.total_batch,
                  data_root=args.data_root)
    return {k: v for k, v in values.items() if v}


def check_settings(run: str, records: dict, work_dir: Optional[str],
                   settings: dict, results: str) -> None:
    """Refuse to go on with a run started with other settings.

    ``records``: the run's evaluations in ``results`` (a record without
    ``settings`` is a run with none); the work dir, if given, keeps the
    settings of the run it holds (``convergence_settings.json``, written
    here).

    Raises:
        ValueError: naming the run's settings, the ones given and where
            they were found.
    """
    path = work_dir and osp.join(work_dir, 'convergence_settings.json')
    found = [(f'{results}, epoch {epoch}', rec.get('settings', {}))
             for epoch, rec in sorted(records.items())]
    if path and osp.isfile(path):
        with open(path) as f:
            found.append((path, json.load(f)))
    for where, theirs in found:
        if theirs != settings:
            raise ValueError(
                f'{run} was started with {theirs or "no"} settings '
                f'({where}), now {settings or "none"} are given; use another '
                '--work-dir and --results for other settings')
    if path:
        os.makedirs(work_dir, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(settings, f, sort_keys=True)


def work_dir_of(args, name: str, seed: int) -> str:
    return osp.join(args.work_dir, args.preset, f'{slug(name)}_seed{seed}')


def lock_run(work_dir: str):
    """Hold the run's lock file (``fcntl.flock``) until the returned file
    is closed or the process ends; None if another process holds it."""
    import fcntl
    os.makedirs(work_dir, exist_ok=True)
    lock = open(osp.join(work_dir, '.convergence.lock'), 'w')
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def train_one(name: str, seed: int, args) -> None:
    """One run in this process; resumes from the work dir's last
    checkpoint."""
    from mmengine.registry import RUNNERS
    config = PRESETS[args.preset][name][0]
    cfg = load_config(config, args.preset, args)
    cfg.work_dir = work_dir_of(args, name, seed)
    cfg.launcher = 'pytorch' if args.gpus > 1 else 'none'
    cfg.randomness = dict(seed=seed)
    cfg.resume = True  # the work dir's last checkpoint, if any
    cfg.load_from = None
    # mmdet's configs name no runner: mmengine's Runner would resume with
    # torch.load's weights_only default (torch >= 2.6), which refuses the
    # checkpoint's message hub; CPUDDPRunner is SafeLoadingRunner on GPUs
    cfg.setdefault('runner_type', 'CPUDDPRunner')
    # one checkpoint per epoch, only the latest kept: a killed run loses at
    # most an epoch
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1)
    runner = RUNNERS.build(cfg)
    # the full log goes to the work dir; the console shows the bar
    for handler in runner.logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)
    # on every rank: a resumed run's missing evaluation is run by all ranks
    runner.register_hook(
        record_hook(args.results, args.preset, name, seed, config,
                    run_settings(args)))
    runner.train()


# ----------------------------------------------------------------- driver


def _forwarded(args):
    out = ['--preset', args.preset, '--results', args.results,
           '--work-dir', args.work_dir, '--val-interval',
           str(args.val_interval)]
    for flag, value in (('--epochs', args.epochs),
                        ('--train-subset', args.train_subset),
                        ('--gpus', args.gpus),
                        ('--total-batch', args.total_batch),
                        ('--threads', args.threads),
                        ('--data-root', args.data_root)):
        if value:
            out += [flag, str(value)]
    return out


def max_epochs_of(name: str, args) -> int:
    if args.epochs:
        return args.epochs
    if args.preset == 'coco':
        return COCO_SCHEDULE['epochs']
    return load_config(PRESETS[args.preset][name][0], args.preset,
                       args).train_cfg.max_epochs


def run_all(args) -> None:
    """Each (seed, model) not finished in the results, in a fresh process."""
    settings = run_settings(args)
    env = dict(os.environ)
    if args.threads:
        env['OMP_NUM_THREADS'] = str(args.threads)
    for seed in args.seeds:
        for name in args.models:
            key = (args.preset, name, seed)
            epochs = max_epochs_of(name, args)
            runs = read_results(args.results)
            check_settings(f'{name} seed {seed}', runs.get(key, {}), None,
                           settings, args.results)
            if run_finished(runs, key, epochs):
                print(f'{name} seed {seed}: finished in {args.results}, '
                      'skipped', flush=True)
                continue
            work_dir = work_dir_of(args, name, seed)
            # two invocations started with the same run: only one trains it
            lock = lock_run(work_dir)
            if lock is None:
                print(f'{name} seed {seed}: trained by another process in '
                      f'{work_dir}, skipped', flush=True)
                continue
            runs = read_results(args.results)  # again, holding the lock
            if run_finished(runs, key, epochs):
                lock.close()
                continue
            check_settings(f'{name} seed {seed}', runs.get(key, {}),
                           work_dir, settings, args.results)
            print(f'{name} seed {seed}: training {epochs} epochs in '
                  f'{work_dir}', flush=True)
            launch = [sys.executable]
            if args.gpus > 1:
                # --standalone: a free port, so invocations run side by side
                launch += ['-m', 'torch.distributed.run', '--standalone',
                           f'--nproc_per_node={args.gpus}']
            # the worker holds the lock too, should this process end first
            with lock:
                proc = subprocess.run(
                    [*launch, __file__, '--worker', name, '--seed',
                     str(seed), *_forwarded(args)],
                    env=env, pass_fds=(lock.fileno(), ))
            if proc.returncode:
                raise RuntimeError(
                    f'{name} seed {seed} failed (exit {proc.returncode}); '
                    f'its log is under {work_dir_of(args, name, seed)}')


def report(args) -> None:
    runs = read_results(args.results)
    pairs = {n: b for n, (_, b) in PRESETS[args.preset].items()}
    text = results_table(runs, args.preset, pairs)
    print(text)
    if args.table:
        with open(args.table, 'w') as f:
            f.write(text + '\n')
    if any(k[0] == args.preset for k in runs):
        plot(runs, args.preset, args.plot,
             title=f'{args.preset} preset: COCO bbox AP (val) during '
             'training', pairs=pairs)
        print(f'plot: {args.plot}')


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--preset', choices=list(PRESETS), default='toy',
                        help='data and budget (see above; default: toy)')
    parser.add_argument(
        '--models', nargs='+', default=None,
        help='names of the preset (default: all, headline pairs first)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0],
                        help='one run per seed and model (randomness.seed)')
    parser.add_argument('--val-interval', type=int, default=2,
                        help='evaluate every N epochs (and the last)')
    parser.add_argument('--epochs', type=int, default=None,
                        help="override the preset's epochs (smoke runs; "
                        'the learning-rate schedule stays)')
    parser.add_argument(
        '--train-subset', type=int, default=None,
        help='train on the first N training images (coco: of train2017)')
    parser.add_argument(
        '--gpus', type=int, default=0,
        help='processes per run (torch.distributed.run, one GPU each); '
        '0 or 1: one process')
    parser.add_argument(
        '--total-batch', type=int, default=None,
        help='images per iteration over all processes, the same for every '
        'model (default: each config\'s batch per process)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads per run (OMP_NUM_THREADS)')
    parser.add_argument('--data-root', default=None,
                        help="a toy preset's data directory (default: "
                        "the repository's data/toy_shapes/, for toy-large "
                        'data/toy_shapes_large/; written when missing; '
                        'coco: unused)')
    parser.add_argument('--work-dir', default='work_dirs/convergence',
                        help='runs in <work-dir>/<preset>/<model>_seed<N>')
    parser.add_argument(
        '--results', default='work_dirs/convergence/results.jsonl',
        help='JSON lines, appended')
    parser.add_argument('--table', default=None,
                        help='also write the results table (markdown) here')
    parser.add_argument('--plot',
                        default='work_dirs/convergence/convergence.png',
                        help="the plot of the preset's runs (png)")
    parser.add_argument('--report-only', action='store_true',
                        help='write the table and plot of the results only')
    parser.add_argument('--list', action='store_true',
                        help='print the budget table of the models and exit')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--seed', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag in ('val_interval', 'epochs', 'train_subset', 'total_batch',
                 'threads'):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f'--{flag.replace("_", "-")} {value}: must be >= 1')
    if args.gpus < 0:
        parser.error(f'--gpus {args.gpus}: must be >= 0')
    models = PRESETS[args.preset]
    if args.models is None:
        args.models = list(models)
    unknown = [m for m in args.models if m not in models]
    if unknown:
        parser.error(f'--models: {unknown} not in preset {args.preset!r} '
                     f'(choose from {list(models)})')
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from mmdet.utils import register_all_modules
    register_all_modules()
    import mmdet_samdetr  # noqa: F401
    if args.worker:
        train_one(args.worker, args.seed, args)
        return
    if args.report_only:
        report(args)
        return
    pairs = {n: b for n, (_, b) in models.items()}
    budgets = {
        name: budget(load_config(models[name][0], args.preset, args))
        for name in args.models
    }
    print('budget (* differs from the baseline of the pair):')
    print(budget_table(budgets, pairs), flush=True)
    if args.list:
        return
    if args.preset in TOY_DATA:
        make_toy_data(args)
    run_all(args)
    report(args)


if __name__ == '__main__':
    main()
