#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Forward + backward time of one SAM-DETR decoder layer and its parts.

Where a training step's time goes, at the shapes of ``benchmarks/benchmark.py``
(batch 2, 300 queries, a 16x20 memory for 512x640 images; ``--size`` sets the
memory): the SAM-DETR decoder layer and its Semantics Aligner,
cross-attention, self-attention and FFN; a ConditionalDETR decoder layer
(mmdet's 6-layer decoder divided by 6); and a large matrix product for the
machine's peak. Medians of ``--repeat`` runs in one process, CPU. Each row
also gives its multiply-accumulates (matrix products, forward and backward,
counted by ``torch.utils.flop_counter``) and the rate they ran at, to compare
with the peak.

With ``--paths``, instead: the SAM-DETR decoder layer's training (forward +
backward) and inference (forward) time on each computation path of its
Semantics Aligner (``semantics_aligner.SAMPLING_PATHS``), the paths taking
turns in one process, with each path's median time relative to the reference
(the official computation) and the path the layer takes at this size.

    python benchmarks/benchmark_layers.py [--size 16 20] [--repeat 10]
    python benchmarks/benchmark_layers.py --paths [--size 16 20] [--repeat 15]
"""
import argparse
import statistics
import time

import torch

from benchmark import MODELS_UNDER_TEST, _config


def median_ms(fn, repeat, warmup=3):
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1e3


def gmac(fn):
    """Multiply-accumulates (1e9) of the matrix products of one call."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def report(name, ms, macs):
    print(f'{name:46s} {ms:8.1f} ms {macs:7.2f} GMAC '
          f'{macs / ms * 1e3:6.0f} GMAC/s')


def compare_paths(run, repeat, warmup=2):
    """Times of ``run()`` on each path of the Semantics Aligner.

    The paths take turns (one call each, ``warmup + repeat`` times), so a
    slow phase of the machine falls on all of them.

    Returns:
        dict: Per path, its median in ms and the median over the turns of
        its time relative to the reference's in the same turn.
    """
    from mmdet_samdetr.models.layers import semantics_aligner
    paths = semantics_aligner.SAMPLING_PATHS
    runs = {path: [] for path in paths}
    chosen = semantics_aligner.sampling_path
    try:
        for i in range(warmup + repeat):
            for path in paths:
                semantics_aligner.sampling_path = (
                    lambda *args, path=path: path)
                start = time.perf_counter()
                run()
                if i >= warmup:
                    runs[path].append(time.perf_counter() - start)
    finally:
        semantics_aligner.sampling_path = chosen
    return {
        path: (statistics.median(t) * 1e3,
               statistics.median(
                   a / b for a, b in zip(t, runs['reference'])))
        for path, t in runs.items()
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, nargs=2, default=(16, 20),
                        metavar=('H', 'W'), help='memory size (stride 32)')
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--paths', action='store_true',
                        help='time the decoder layer on each aligner path')
    args = parser.parse_args(argv)
    from mmdet.models.layers.transformer import \
        ConditionalDetrTransformerDecoder
    from mmdet.utils import register_all_modules
    register_all_modules()
    from mmdet_samdetr.models.layers import SAMDETRTransformerDecoderLayer

    bs, nq, dims = 2, 300, 256
    height, width = args.size
    torch.manual_seed(0)
    memory = torch.randn(bs, height * width, dims, requires_grad=True)
    memory_pos = torch.randn(bs, height * width, dims)
    query = torch.randn(bs, nq, dims, requires_grad=True)
    query_pos = torch.randn(bs, nq, dims)
    ref_boxes = torch.rand(bs, nq, 4) * 0.5 + 0.2
    valid = torch.tensor([[width, height]] * bs).float()

    def memory_2d():
        return memory.transpose(1, 2).reshape(bs, dims, height, width)

    cfg = _config(MODELS_UNDER_TEST['SAM-DETR'])
    layer = SAMDETRTransformerDecoderLayer(**cfg.model.decoder.layer_cfg)
    layer.train()
    aligned = layer.semantics_aligner(query, memory_2d(), ref_boxes, valid)
    content = aligned['content'].detach().requires_grad_()
    position = aligned['position'].detach().requires_grad_()
    attn = layer.cross_attn

    def sam_layer():
        out, _ = layer(query, query_pos, memory, memory_2d(), memory_pos,
                       ref_boxes, valid)
        out.sum().backward()

    if args.paths:
        from mmdet_samdetr.models.layers.semantics_aligner import \
            sampling_path

        def infer_layer():
            with torch.no_grad():
                layer(query, query_pos, memory, memory_2d(), memory_pos,
                      ref_boxes, valid)

        chosen = sampling_path(memory_2d(), layer.semantics_aligner.num_points,
                               layer.semantics_aligner.roi_size)
        print(f'CPU, torch threads {torch.get_num_threads()}, batch {bs}, '
              f'{nq} queries, memory {height}x{width}; SAM-DETR decoder '
              f'layer, median of {args.repeat}, paths taking turns (in '
              f'brackets: median of the time relative to the reference in '
              f'the same turn); chosen at this size: {chosen}')
        for label, run, training in (('train', sam_layer, True),
                                     ('infer', infer_layer, False)):
            layer.train(training)
            times = compare_paths(run, args.repeat)
            print(f'{label}: ' + ', '.join(
                f'{path} {ms:.1f} ms ({ratio:.2f})'
                for path, (ms, ratio) in times.items()))
        return

    def aligner():
        out = layer.semantics_aligner(query, memory_2d(), ref_boxes, valid)
        (out['content'].sum() + out['position'].sum()).backward()

    def cross_attn():
        attn(content, position, memory, memory_pos).sum().backward()

    def self_attn():
        layer.self_attn(query=query, key=query, query_pos=query_pos,
                        key_pos=query_pos).sum().backward()

    def ffn():
        layer.ffn(query).sum().backward()

    cond_cfg = _config(MODELS_UNDER_TEST['ConditionalDETR'])
    cond = ConditionalDetrTransformerDecoder(**cond_cfg.model.decoder)
    cond.train()

    def cond_decoder():
        out, _ = cond(query=query, key=memory, query_pos=query_pos,
                      key_pos=memory_pos, key_padding_mask=None)
        out.sum().backward()

    big = torch.randn(2048, 2048)

    print(f'CPU, torch threads {torch.get_num_threads()}, batch {bs}, '
          f'{nq} queries, memory {height}x{width} ({height * width} keys); '
          f'forward + backward, median of {args.repeat}')
    rows = [
        ('SAM-DETR decoder layer', sam_layer),
        ('  Semantics Aligner', aligner),
        ('  cross-attention', cross_attn),
        ('  self-attention', self_attn),
        ('  FFN', ffn),
    ]
    for name, fn in rows:
        report(name, median_ms(fn, args.repeat), gmac(fn))
    report('ConditionalDETR decoder layer (6 layers / 6)',
           median_ms(cond_decoder, args.repeat) / cond.num_layers,
           gmac(cond_decoder) / cond.num_layers)
    report('2048^3 matrix product (peak)',
           median_ms(lambda: big @ big, args.repeat), gmac(lambda: big @ big))


if __name__ == '__main__':
    main()
