#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""The main job of `make demo`: train, evaluate and draw SAM-DETR on toys.

1. writes the toy-shapes dataset and its crop-pretrained backbone
   (``demo/make_toy_dataset.py``; skipped when present);
2. trains ``configs/sam_detr_toy/sam-detr_r18_1xb8-toy-shapes.py`` with
   mmengine's Runner, evaluating COCO bbox mAP every 2 epochs (CocoMetric);
3. writes ``predictions.png`` (val images, boxes, labels and each
   detection's 8 salient points), ``curve.png`` and ``curve.md`` (the mAP
   curve) in the work dir.
"""
import argparse
import json
import os
import os.path as osp
import time

import cv2
import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.model import is_model_wrapper

from make_toy_dataset import TOY_CONFIG, make_toy_dataset

COLOURS = [(66, 135, 245), (245, 66, 90), (60, 200, 80), (245, 190, 40),
           (180, 80, 230)]


def train(work_dir: str, cfg_options: dict):
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    cfg = Config.fromfile(TOY_CONFIG)
    cfg.work_dir = work_dir
    cfg.merge_from_dict(cfg_options)
    runner = RUNNERS.build(cfg)
    runner.train()
    return runner


def read_curve(work_dir: str):
    """(epoch, mAP, mAP50) of every evaluation of the latest run."""
    runs = sorted(d for d in os.listdir(work_dir)
                  if osp.isfile(osp.join(work_dir, d, 'vis_data',
                                         'scalars.json')))
    path = osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')
    curve = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if 'coco/bbox_mAP_50' in row:
                curve.append((row['step'], row['coco/bbox_mAP'],
                              row['coco/bbox_mAP_50']))
    return curve


def write_curve(curve, out_dir: str, minutes: float):
    lines = [
        '| epoch | bbox mAP | bbox mAP@0.5 |', '|---|---|---|'
    ] + [f'| {e} | {m:.3f} | {m50:.3f} |' for e, m, m50 in curve]
    text = '\n'.join(lines) + f'\n\ntraining time: {minutes:.1f} min\n'
    with open(osp.join(out_dir, 'curve.md'), 'w') as f:
        f.write(text)
    print(text)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    epochs = [c[0] for c in curve]
    ax.plot(epochs, [c[2] for c in curve], 'o-', label='bbox mAP@0.5')
    ax.plot(epochs, [c[1] for c in curve], 's-', label='bbox mAP')
    ax.set_xlabel('epoch')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title('SAM-DETR on toy shapes (val)')
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, 'curve.png'))


def draw_predictions(model, dataset, out_file: str, num_images: int = 8,
                     score_thr: float = 0.3, scale: int = 4):
    """Val images with boxes, labels and salient points of detections."""
    from mmengine.dataset import pseudo_collate
    classes = dataset.metainfo['classes']
    model.eval()
    tiles = []
    for i in range(num_images):
        data = model.data_preprocessor(pseudo_collate([dataset[i]]), False)
        with torch.no_grad():
            pred = model(**data, mode='predict')[0]
        img = cv2.imread(pred.img_path)
        img = cv2.resize(img, None, fx=scale, fy=scale,
                         interpolation=cv2.INTER_NEAREST)
        inst = pred.pred_instances
        keep = inst.scores > score_thr
        for box, label, score, points in zip(
                inst.bboxes[keep].tolist(), inst.labels[keep].tolist(),
                inst.scores[keep].tolist(), inst.salient_points[keep]):
            x1, y1, x2, y2 = [int(v * scale) for v in box]
            text = f'{classes[label]} {score:.2f}'
            # a white outline first, then the class colour on top
            for colour, extra in (((255, 255, 255), 1),
                                  (COLOURS[label % len(COLOURS)], 0)):
                cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2 + extra)
                for x, y in points.tolist():
                    cv2.circle(img, (int(x * scale), int(y * scale)),
                               3 + extra, colour, -1)
                cv2.putText(img, text, (x1 + 2, y1 + 14),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1 + extra)
        tiles.append(img)
    rows = [np.concatenate(tiles[r:r + 4], 1) for r in range(0, len(tiles), 4)]
    cv2.imwrite(out_file, np.concatenate(rows, 0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/toy_shapes')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default={},
        help='key=value overrides, e.g. train_cfg.max_epochs=2')
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', 2)))
    from mmdet.utils import register_all_modules
    register_all_modules()
    import mmdet_samdetr  # noqa: F401
    make_toy_dataset(args.data_root)
    data_root = args.data_root.rstrip('/') + '/'
    options = {
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'val_evaluator.ann_file': data_root + 'annotations/val.json',
        'test_evaluator.ann_file': data_root + 'annotations/val.json',
        'model.backbone.init_cfg.checkpoint':
        data_root + 'backbone_crops.pth',
    }
    options.update(args.cfg_options)
    start = time.time()
    runner = train(args.work_dir, options)
    minutes = (time.time() - start) / 60
    curve = read_curve(args.work_dir)
    write_curve(curve, args.work_dir, minutes)
    model = runner.model
    if is_model_wrapper(model):
        model = model.module
    out = osp.join(args.work_dir, 'predictions.png')
    draw_predictions(model, runner.val_dataloader.dataset, out)
    print(f'final bbox mAP@0.5 {curve[-1][2]:.3f}; wrote {out}, '
          f'{osp.join(args.work_dir, "curve.png")}')


if __name__ == '__main__':
    main()
