#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Training-step and inference time and peak memory of the SAM-DETR family
vs mmdet's DETRs.

Same ResNet-50 backbone, input size and batch for all models; each keeps
its own encoder, decoder and query count. Single-scale models (SAM-DETR,
with DN on DC5) compare with mmdet's Conditional DETR and DETR (DETR
encoder); multi-scale ones (SAM-DETR++, with DN) with mmdet's Deformable
DETR and DINO, both on the same three levels C3-C5 as SAM-DETR++ (so the
deformable encoders are identical). A training step is forward + backward +
AdamW step with gradient clipping. Each model runs in fresh processes, the
models taking turns (see ``measure_all``). Prints medians, ratios against
the baselines and each process's peak memory (CPU: peak RSS of the process,
model build included; CUDA: max allocated).

    python benchmarks/benchmark.py                 # CPU, 512x640, batch 2
    python benchmarks/benchmark.py --models SAM-DETR++ DeformableDETR
    python benchmarks/benchmark.py --device cuda --size 800 1333
"""
import argparse
import json
import os.path as osp
import statistics
import subprocess
import sys
import time

import torch

_RESULT = 'BENCHMARK-RESULT '

MODELS_UNDER_TEST = {
    'SAM-DETR': 'configs/sam_detr/sam-detr_r50_4xb4-50e_coco.py',
    'SAM-DETR+SMCA': 'configs/sam_detr/sam-detr-smca_r50_4xb4-50e_coco.py',
    # the same model on one path of the Semantics Aligner everywhere
    # (models.layers.semantics_aligner.sampling_path): 'reference' is the
    # official computation (mmcv's RoIAlign op on all channels, then
    # grid_sample), 'separable' the same two steps with the separable
    # RoIAlign, without sampling the points straight from the map
    'SAM-DETR/reference': 'configs/sam_detr/sam-detr_r50_4xb4-50e_coco.py',
    'SAM-DETR/separable': 'configs/sam_detr/sam-detr_r50_4xb4-50e_coco.py',
    'SAM-DETR-DC5+DN':
    'configs/sam_detr/sam-detr-dn_r50-dc5_8xb1-12e_coco.py',
    'SAM-DETR++': 'configs/sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py',
    'SAM-DETR++/SMCA+DN':
    'configs/sam_detr_pp/sam-detr-pp-smca-dn_r50_8xb2-12e_coco.py',
    'SAM-DETR++/reference':
    'configs/sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py',
    'SAM-DETR++/separable':
    'configs/sam_detr_pp/sam-detr-pp_r50_8xb2-12e_coco.py',
    # Align-DETR's mixed (one-to-k) matching and Align Loss
    'Align-SAM-DETR':
    'configs/align_sam_detr/align-sam-detr_r50_4xb4-50e_coco.py',
    'Align-SAM-DETR++':
    'configs/align_sam_detr/align-sam-detr-pp_r50_8xb2-12e_coco.py',
    'Align-DETR': 'configs/align_detr/align-detr-4scale_r50_8xb2-12e_coco.py',
    'ConditionalDETR':
    'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    'DETR': 'mmdet::detr/detr_r50_8xb2-150e_coco.py',
    'DeformableDETR':
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    'DINO': 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
}
BASELINES = ('ConditionalDETR', 'DETR', 'DeformableDETR', 'DINO')


def _three_levels(model_cfg):
    """mmdet's Deformable DETR / DINO on C3-C5 (no extra stride-64 level),
    as SAM-DETR++."""
    model_cfg.num_feature_levels = 3
    model_cfg.neck.num_outs = 3
    model_cfg.encoder.layer_cfg.self_attn_cfg.num_levels = 3
    model_cfg.decoder.layer_cfg.cross_attn_cfg.num_levels = 3


def _config(path):
    import mmdet
    from mmengine.config import Config
    if path.startswith('mmdet::'):
        path = osp.join(
            osp.dirname(mmdet.__file__), '.mim', 'configs',
            path[len('mmdet::'):])
    else:
        path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                        path)
    return Config.fromfile(path)


def _inputs(batch, height, width, device):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, height, width, generator=gen) * 255
    samples = []
    for _ in range(batch):
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(height, width), ori_shape=(height, width),
                pad_shape=(height, width),
                batch_input_shape=(height, width), scale_factor=(1., 1.)))
        xy = torch.rand(6, 2, generator=gen) * torch.tensor(
            [width * 0.6, height * 0.6])
        wh = torch.rand(6, 2, generator=gen) * torch.tensor(
            [width * 0.35, height * 0.35]) + 8
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, 80, (6, ), generator=gen))
        samples.append(sample)
    return images.to(device), [s.to(device) for s in samples]


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def build(name, path, args):
    """Build one model with its batch and optimizer; return its two jobs."""
    from mmdet.registry import MODELS
    cfg = _config(path)
    cfg.model.backbone.init_cfg = None
    path = name.rpartition('/')[2]
    if path in ('reference', 'separable'):
        # this process only: each model runs in a process of its own
        from mmdet_samdetr.models.layers import semantics_aligner
        semantics_aligner.sampling_path = lambda *args: path
    if name in ('DeformableDETR', 'DINO', 'Align-DETR'):
        _three_levels(cfg.model)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(args.device)
    model.init_weights()
    images, samples = _inputs(args.batch, *args.size, args.device)
    data = model.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                  weight_decay=1e-4)

    # time spent in the Hungarian assignments (CPU) of a training step
    matching = dict(seconds=0.0)
    assigner = getattr(model.bbox_head, 'assigner', None)
    if assigner is not None:
        assign = assigner.assign

        def timed_assign(*a, **kw):
            start = time.perf_counter()
            result = assign(*a, **kw)
            matching['seconds'] += time.perf_counter() - start
            return result

        assigner.assign = timed_assign

    def train_step():
        model.train()
        losses = model(**data, mode='loss')
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()

    def infer():
        model.eval()
        with torch.no_grad():
            model(**data, mode='predict')

    return dict(train=train_step, infer=infer, matching=matching)


def _peak_memory_mb(device):
    """Peak memory so far: CUDA max allocated, or the process's peak RSS."""
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(name, args):
    """Median train-step and inference time of one model, in this process.

    Returns:
        dict: ``train`` and ``infer`` in seconds.
    """
    jobs = build(name, MODELS_UNDER_TEST[name], args)
    times = {}
    for label in ('train', 'infer'):
        for _ in range(args.warmup):
            jobs[label]()
        runs, matching = [], []
        for _ in range(args.repeat):
            jobs['matching']['seconds'] = 0.0
            _sync(args.device)
            start = time.perf_counter()
            jobs[label]()
            _sync(args.device)
            runs.append(time.perf_counter() - start)
            matching.append(jobs['matching']['seconds'])
        times[label] = statistics.median(runs)
        if label == 'train':
            times['matching'] = statistics.median(matching)
        times[label + '_peak_mb'] = _peak_memory_mb(args.device)
    if args.flops:
        from torch.utils.flop_counter import FlopCounterMode
        for label in ('train', 'infer'):
            with FlopCounterMode(display=False) as counter:
                jobs[label]()
            times[label + '_flops'] = counter.get_total_flops()
    return times


def measure_all(args):
    """Each model in a process of its own, the models taking turns.

    One process per model and round: models sharing a process slow each
    other down unevenly (allocator and cache state: the ratio
    can move by 0.1), and taking turns spreads a slow phase of the
    machine over all models. The result is the median over rounds.
    """
    forwarded = [
        '--device', args.device, '--size', *map(str, args.size), '--batch',
        str(args.batch), '--warmup', str(args.warmup), '--repeat',
        str(args.repeat)
    ] + (['--threads', str(args.threads)] if args.threads else [])
    rounds = {name: [] for name in args.models}
    flops = {}
    for round_id in range(args.rounds):
        for name in args.models:
            count = [] if args.flops and round_id == 0 else ['--no-flops']
            proc = subprocess.run(
                [sys.executable, __file__, '--worker', name, *forwarded,
                 *count],
                capture_output=True, text=True)
            lines = [
                line for line in proc.stdout.splitlines()
                if line.startswith(_RESULT)
            ]
            if proc.returncode or not lines:
                raise RuntimeError(f'benchmark of {name} failed '
                                   f'(exit {proc.returncode}):\n'
                                   f'{proc.stderr[-3000:]}')
            times = json.loads(lines[-1][len(_RESULT):])
            for label in ('train', 'infer'):
                if label + '_flops' in times:
                    flops[name, label] = times.pop(label + '_flops')
            rounds[name].append(times)
            print(f'round {round_id + 1}: {name:24s} train step '
                  f'{times["train"] * 1e3:8.1f} ms (matching '
                  f'{times["matching"] * 1e3:6.1f})   inference '
                  f'{times["infer"] * 1e3:8.1f} ms   peak '
                  f'{times["train_peak_mb"]:7.0f} MB', flush=True)
    if args.rounds > 1:
        for base_name in BASELINES:
            if base_name not in rounds:
                continue
            base = rounds[base_name]
            for name, runs in rounds.items():
                if name not in BASELINES:
                    print(f'{name:24s} train / {base_name} per round: ' +
                          ' '.join(f'{t["train"] / b["train"]:.2f}'
                                   for t, b in zip(runs, base)))
    results = {
        name: {
            label: statistics.median(t[label] for t in runs)
            for label in ('train', 'infer', 'train_peak_mb', 'matching')
        }
        for name, runs in rounds.items()
    }
    for (name, label), count in flops.items():
        results[name][label + '_flops'] = count
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--size', type=int, nargs=2, default=(512, 640),
                        metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')
    parser.add_argument('--rounds', type=int, default=2,
                        help='processes per model, taken in turns')
    parser.add_argument('--no-flops', dest='flops', action='store_false',
                        help='skip counting the operations of a step')
    parser.add_argument('--worker', choices=list(MODELS_UNDER_TEST),
                        help=argparse.SUPPRESS)
    parser.add_argument('--models', nargs='+',
                        default=['SAM-DETR', 'SAM-DETR+SMCA',
                                 'ConditionalDETR', 'DETR'],
                        choices=list(MODELS_UNDER_TEST))
    args = parser.parse_args(argv)
    if args.worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        from mmdet.utils import register_all_modules
        register_all_modules()
        import mmdet_samdetr  # noqa: F401
        from mmengine.logging import MMLogger
        MMLogger.get_current_instance().setLevel('WARNING')
        print(_RESULT + json.dumps(measure_one(args.worker, args)))
        return
    threads = args.threads or torch.get_num_threads()
    print(f'device {args.device}, input {args.size[0]}x{args.size[1]}, '
          f'batch {args.batch}, torch threads {threads}; per model and '
          f'round a fresh process, median of {args.repeat} runs after '
          f'{args.warmup} warm-up runs; median over {args.rounds} rounds',
          flush=True)
    results = measure_all(args)
    print()
    for name, times in results.items():
        line = (f'{name:24s} train step {times["train"] * 1e3:8.1f} ms '
                f'(matching {times["matching"] * 1e3:6.1f} ms = '
                f'{times["matching"] / times["train"]:5.1%})   '
                f'inference {times["infer"] * 1e3:8.1f} ms   peak (train) '
                f'{times["train_peak_mb"]:7.0f} MB')
        if 'train_flops' in times:
            line += (f'   {times["train_flops"] / 1e9:7.1f} / '
                     f'{times["infer_flops"] / 1e9:6.1f} GFLOP')
        print(line)
    print('\nratios (row / column):')
    bases = [b for b in BASELINES if b in results]
    print(f'{"":24s} ' + ' '.join(f'{"train/" + b:>22s} {"infer/" + b:>22s}'
                                  for b in bases))
    for name, times in results.items():
        if name in bases:
            continue
        print(f'{name:24s} ' + ' '.join(
            f'{times["train"] / results[b]["train"]:22.2f} '
            f'{times["infer"] / results[b]["infer"]:22.2f}' for b in bases))
        if 'train_flops' in times:
            print(f'{"  operations (GFLOP)":24s} ' + ' '.join(
                f'{times["train_flops"] / results[b]["train_flops"]:22.2f} '
                f'{times["infer_flops"] / results[b]["infer_flops"]:22.2f}'
                for b in bases))
    if any(name.endswith('/reference') for name in results) and args.flops:
        print('(*/reference: RoIAlign and grid_sample are not counted as '
              'operations)')


if __name__ == '__main__':
    main()
