#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Export a SAM-DETR checkpoint to ONNX and check it with onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT --out model.onnx \\
        [--shape H W] [--static] [--verify [IMAGE ...]] [--time ROUNDS]

The graph (:class:`mmdet_samdetr.apis.SAMDETRForExport`) takes one image
``image`` (1, 3, H, W) float32 in the loader's channel order (BGR), resized
as the test pipeline does but not normalized, and returns ``boxes`` (k, 4)
xyxy, ``scores`` (k, ), ``labels`` (k, ) and ``salient_points`` (k, 8, 2),
in pixels of that input (divide by the pipeline's ``scale_factor`` for the
original image). Height and width are symbolic unless ``--static``.

``--shape`` is the example traced (default: the test pipeline's ``Resize``
scale); choices between equivalent code paths are made at that size, so use
the size you will run at. ``--verify`` runs onnxruntime on the given images
(through the test pipeline), or on two random images (the example size and
a wider one) without them, and prints the largest differences from the
PyTorch model's ``predict``; it exits with 1 above ``--atol``.
"""
import argparse
import sys
import time


def example_shape(cfg):
    """(H, W) of the test pipeline's ``Resize`` scale, else 800x1333."""
    from mmdet.utils import get_test_pipeline_cfg
    for step in get_test_pipeline_cfg(cfg):
        if step.get('type', '').endswith('Resize') and 'scale' in step:
            scale = step['scale']
            if isinstance(scale, int):
                return scale, scale
            width, height = scale
            return int(height), int(width)
    return 800, 1333


def pipeline_inputs(cfg, paths):
    """(3, H, W) uint8 inputs of the images after the test pipeline."""
    from mmdet_samdetr.apis.attention_maps import inference_pipeline
    pipeline = inference_pipeline(cfg)
    return [(path, pipeline(dict(img_path=path, img_id=0))['inputs'])
            for path in paths]


def random_inputs(shape):
    """Two random images: the example size and one with another aspect."""
    import torch
    gen = torch.Generator().manual_seed(0)
    height, width = shape
    return [(f'random {h}x{w}',
             torch.randint(0, 256, (3, h, w), generator=gen,
                           dtype=torch.uint8))
            for h, w in ((height, width), (height * 3 // 4, width + 32))]


def verify(model, onnx_path, inputs):
    """Largest differences per input, printed; the worst of them."""
    import onnxruntime
    from mmdet_samdetr.apis import output_differences, reference_outputs
    ort_model = onnxruntime.InferenceSession(
        onnx_path, providers=['CPUExecutionProvider'])
    worst = 0.0
    for name, image in inputs:
        outputs = ort_model.run(None, {'image': image[None].float().numpy()})
        diff = output_differences(
            reference_outputs(model, image), outputs, image.shape[-2:])
        worst = max(worst, diff['scores'], diff['boxes'],
                    diff['salient_points'], diff['label_mismatches'])
        if not diff['compared']:
            print(f'{name}: every rank is within 1e-5 of a tie, boxes and '
                  'labels not compared', file=sys.stderr)
            worst = float('inf')
        print(f'{name} ({image.shape[1]}x{image.shape[2]}): '
              f'|d scores| {diff["scores"]:.2e}, |d boxes|/size '
              f'{diff["boxes"]:.2e}, |d points|/size '
              f'{diff["salient_points"]:.2e}, label mismatches '
              f'{diff["label_mismatches"]} (of {diff["compared"]} ranks '
              'away from ties)')
    return worst


def time_both(model, onnx_path, image, rounds):
    """Median seconds of onnxruntime and of PyTorch's ``predict`` (with
    the data preprocessor) on ``image``, taking turns, after one warm-up
    each."""
    import statistics

    import onnxruntime
    import torch
    from mmdet_samdetr.apis import reference_outputs
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    ort_model = onnxruntime.InferenceSession(
        onnx_path, options, providers=['CPUExecutionProvider'])
    feed = {'image': image[None].float().numpy()}
    times = dict(onnxruntime=[], pytorch=[])
    for round_id in range(rounds + 1):
        for name, run in (('onnxruntime', lambda: ort_model.run(None, feed)),
                          ('pytorch',
                           lambda: reference_outputs(model, image))):
            start = time.perf_counter()
            run()
            if round_id:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="example size (default: the test pipeline's "
                        'Resize scale)')
    parser.add_argument('--static', action='store_true',
                        help='fix height and width to --shape')
    parser.add_argument('--no-optimize', action='store_true',
                        help="skip onnxscript's graph optimization")
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--verify', nargs='*', metavar='IMAGE',
                        help='compare with PyTorch on these images (random '
                        'ones without a path)')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted difference of --verify')
    parser.add_argument('--time', type=int, default=0, metavar='ROUNDS',
                        help='with --verify: also time onnxruntime and '
                        'PyTorch on the first image (medians of ROUNDS, '
                        'torch.get_num_threads() threads each)')
    args = parser.parse_args(argv)

    from mmdet.apis import init_detector

    from mmdet_samdetr.apis import export_onnx
    from mmdet_samdetr.engine import safe_checkpoint_loading

    with safe_checkpoint_loading():
        model = init_detector(args.config, args.checkpoint, device='cpu')
    shape = tuple(args.shape) if args.shape else example_shape(model.cfg)
    start = time.perf_counter()
    export_onnx(model, args.out, example_shape=shape,
                opset_version=args.opset, dynamic=not args.static,
                optimize=not args.no_optimize)
    print(f'wrote {args.out} ({"static" if args.static else "dynamic"} '
          f'size, traced at {shape[0]}x{shape[1]}) in '
          f'{time.perf_counter() - start:.0f} s')
    if args.verify is None:
        return 0
    inputs = (pipeline_inputs(model.cfg, args.verify)
              if args.verify else random_inputs(shape))
    if args.static:
        inputs = [(name, image) for name, image in inputs
                  if tuple(image.shape[-2:]) == shape]
        if not inputs:
            print(f'--static: no image to verify is {shape[0]}x{shape[1]} '
                  'after the test pipeline', file=sys.stderr)
            return 1
    worst = verify(model, args.out, inputs)
    if args.time:
        import torch
        name, image = inputs[0]
        medians = time_both(model, args.out, image, args.time)
        print(f'{name}: onnxruntime {medians["onnxruntime"] * 1e3:.0f} ms, '
              f'PyTorch {medians["pytorch"] * 1e3:.0f} ms (medians of '
              f'{args.time}, {torch.get_num_threads()} threads)')
    if worst > args.atol:
        print(f'largest difference {worst:.2e} > --atol {args.atol}',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
