#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Detect objects in a folder of images: drawn detections + one COCO json.

    python tools/infer.py CONFIG CHECKPOINT IMAGE_DIR --out-dir out \\
        [--batch-size 4] [--score-thr 0.3] [--device cpu]

mmdet's ``DetInferencer`` (through :class:`SAMDETRInferencer`) does the
work, batched, with its progress bar; this adds what it lacks: images that
cannot be read are reported by name and skipped (``DetInferencer`` stops at
the first), and all detections go into one COCO-format file,
``<out-dir>/detections.json`` (``images``, ``categories``, ``annotations``
with ``score`` and the 8 ``salient_points``; boxes as xywh), readable by
pycocotools. Drawn images go to ``<out-dir>/vis/``.
"""
import argparse
import json
import os
import os.path as osp
import sys

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


def readable_images(folder):
    """(readable paths, [(path, reason)] of the unreadable ones)."""
    import mmcv
    good, bad = [], []
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        try:
            image = mmcv.imread(path)
            if image is None or image.size == 0:
                raise ValueError('not an image mmcv can decode')
            good.append((path, image.shape[:2]))
        except Exception as err:  # any decoder error: report and skip
            bad.append((path, f'{type(err).__name__}: {err}'))
    return good, bad


def to_coco(images, predictions, classes, score_thr):
    """One COCO-format dict of the detections above ``score_thr``."""
    coco = dict(
        images=[], annotations=[],
        categories=[dict(id=i + 1, name=name)
                    for i, name in enumerate(classes)])
    for image_id, ((path, (height, width)), pred) in enumerate(
            zip(images, predictions), start=1):
        coco['images'].append(
            dict(id=image_id, file_name=osp.basename(path), height=height,
                 width=width))
        points = pred.get('salient_points', [None] * len(pred['scores']))
        for label, score, box, pts in zip(pred['labels'], pred['scores'],
                                          pred['bboxes'], points):
            if score < score_thr:
                continue
            x0, y0, x1, y1 = box
            ann = dict(id=len(coco['annotations']) + 1, image_id=image_id,
                       category_id=int(label) + 1,
                       bbox=[x0, y0, x1 - x0, y1 - y0],
                       area=(x1 - x0) * (y1 - y0), score=float(score),
                       iscrowd=0)
            if pts is not None:
                ann['salient_points'] = pts
            coco['annotations'].append(ann)
    return coco


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image_dir')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='drawn and written detections')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    images, unreadable = readable_images(args.image_dir)
    for path, reason in unreadable:
        print(f'skipped {path}: {reason}', file=sys.stderr)
    if not images:
        print(f'no readable image in {args.image_dir}', file=sys.stderr)
        return 1

    from mmdet_samdetr.apis import SAMDETRInferencer
    inferencer = SAMDETRInferencer(
        model=args.config, weights=args.checkpoint, device=args.device)
    # one call: DetInferencer batches, shows one progress bar and draws
    # each image into <out-dir>/vis/<file name>
    predictions = inferencer([path for path, _ in images],
                             batch_size=args.batch_size,
                             out_dir=args.out_dir,
                             pred_score_thr=args.score_thr)['predictions']
    classes = inferencer.model.dataset_meta['classes']
    coco = to_coco(images, predictions, classes, args.score_thr)
    with open(osp.join(args.out_dir, 'detections.json'), 'w') as f:
        json.dump(coco, f)
    print(f'{len(images)} images, {len(coco["annotations"])} detections '
          f'(score >= {args.score_thr}) -> {args.out_dir}/detections.json; '
          f'{len(unreadable)} unreadable skipped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
