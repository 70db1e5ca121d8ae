# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""A deterministic toy detection dataset in COCO format (no download).

Five shape classes of varied scale, aspect ratio and colour, overlapping,
drawn on cluttered backgrounds (colour gradients, noise, random lines and
small blobs that are not objects). Same seed, same bytes.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np

CLASSES = ('rectangle', 'ellipse', 'triangle', 'ring', 'cross')


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0., x2 - x1) * max(0., y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / max(union - inter, 1e-6)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    img = (c0 * (1 - t) + c1 * t) * np.ones((size, size, 3))
    img += rng.normal(0, 12, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):  # clutter: thin lines
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(img, p1, p2, [int(v) for v in rng.integers(0, 256, 3)], 1)
    for _ in range(rng.integers(2, 7)):  # clutter: small blobs (<5 px)
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, centre, int(rng.integers(1, 3)),
                   [int(v) for v in rng.integers(0, 256, 3)], -1)
    return img


def _draw(img: np.ndarray, label: int, box: np.ndarray,
          colour: List[int]) -> None:
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    name = CLASSES[label]
    if name == 'rectangle':
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
    elif name == 'ellipse':
        cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, colour, -1)
    elif name == 'triangle':
        pts = np.array([[cx, y1], [x1, y2 - 1], [x2 - 1, y2 - 1]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    elif name == 'ring':
        thick = max(2, min(w, h) // 5)
        cv2.ellipse(img, (cx, cy), (max(w // 2 - thick // 2, 1),
                                    max(h // 2 - thick // 2, 1)), 0, 0, 360,
                    colour, thick)
    else:  # cross
        tw, th = max(2, w // 4), max(2, h // 4)
        cv2.rectangle(img, (cx - tw // 2, y1), (cx + tw // 2, y2 - 1), colour,
                      -1)
        cv2.rectangle(img, (x1, cy - th // 2), (x2 - 1, cy + th // 2), colour,
                      -1)


def make_image(rng: np.random.Generator, size: int, max_objects: int,
               scale_range: Tuple[float, float] = (0.12, 0.45)
               ) -> Tuple[np.ndarray, List[Dict]]:
    """One image and its annotations (``bbox`` xywh, ``category_id``).

    An object's scale (the square root of its area, before clipping its
    sides to at least 8 px) is drawn uniformly in ``scale_range`` times the
    image side.
    """
    img = _background(rng, size)
    boxes, anns = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            scale = rng.uniform(*scale_range) * size
            aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
            w = float(np.clip(scale * np.sqrt(aspect), 8, size - 2))
            h = float(np.clip(scale / np.sqrt(aspect), 8, size - 2))
            x1 = rng.uniform(0, size - w)
            y1 = rng.uniform(0, size - h)
            box = np.array([x1, y1, x1 + w, y1 + h]).round()
            if all(_iou(box, b) < 0.3 for b in boxes):
                break
        else:
            continue
        label = int(rng.integers(len(CLASSES)))
        colour = [int(v) for v in rng.integers(0, 256, 3)]
        _draw(img, label, box, colour)
        boxes.append(box)
        x1, y1, x2, y2 = box.tolist()
        anns.append(
            dict(
                bbox=[x1, y1, x2 - x1, y2 - y1],
                area=(x2 - x1) * (y2 - y1),
                category_id=label + 1,
                iscrowd=0))
    return img, anns


def generate_toy_dataset(out_dir: str,
                         num_train: int = 2000,
                         num_val: int = 100,
                         img_size: int = 96,
                         max_objects: int = 4,
                         seed: int = 0,
                         scale_range: Tuple[float, float] = (0.12, 0.45)
                         ) -> Dict[str, str]:
    """Write ``{train,val}/*.png`` and ``annotations/{train,val}.json``.

    ``img_size`` x ``img_size`` images, 1 to ``max_objects`` objects each;
    ``scale_range``: see :func:`make_image`.

    Returns:
        dict: Paths of the two annotation files.
    """
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(CLASSES)
    ]
    paths = {}
    for split, count, split_seed in (('train', num_train, seed),
                                     ('val', num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        os.makedirs(osp.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for img_id in range(1, count + 1):
            img, anns = make_image(rng, img_size, max_objects, scale_range)
            name = f'{img_id:05d}.png'
            cv2.imwrite(osp.join(out_dir, split, name), img)
            images.append(
                dict(id=img_id, file_name=name, width=img_size,
                     height=img_size))
            for ann in anns:
                ann.update(id=len(annotations) + 1, image_id=img_id)
                annotations.append(ann)
        path = osp.join(out_dir, 'annotations', f'{split}.json')
        with open(path, 'w') as f:
            json.dump(
                dict(
                    images=images,
                    annotations=annotations,
                    categories=categories), f)
        paths[split] = path
    return paths
