# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Pretrain a backbone as an object-crop classifier (offline demo).

DETR-style detectors are trained from an ImageNet-pretrained backbone; from
scratch, their set-prediction loss gives the backbone too weak a signal to
learn in minutes (on the toy data, SAM-DETR and mmdet's DAB-DETR alike sit at
the same class loss for 550-600 iterations). With no download allowed, the demo
pretrains its backbone the ImageNet way, but on object crops of its own
training split: a couple of minutes of classification, saved as a local
checkpoint that the detection config loads with ``init_cfg=Pretrained``.
"""
import json
import os.path as osp
import time
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import nn


def _load_crops(ann_file: str, img_dir: str, size: int):
    with open(ann_file) as f:
        coco = json.load(f)
    cat_index = {c['id']: i for i, c in enumerate(coco['categories'])}
    files = {img['id']: img['file_name'] for img in coco['images']}
    images = {}
    crops, labels = [], []
    for ann in coco['annotations']:
        img_id = ann['image_id']
        if img_id not in images:
            path = osp.join(img_dir, files[img_id])
            img = cv2.imread(path)
            if img is None:
                raise FileNotFoundError(f'cannot read image {path}')
            images[img_id] = img
        img = images[img_id]
        x, y, w, h = ann['bbox']
        m = 0.15 * max(w, h)
        x1, y1 = int(max(x - m, 0)), int(max(y - m, 0))
        x2 = int(min(x + w + m, img.shape[1]))
        y2 = int(min(y + h + m, img.shape[0]))
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        crops.append(cv2.resize(img[y1:y2, x1:x2], (size, size)))
        labels.append(cat_index[ann['category_id']])
    return np.stack(crops), np.array(labels)


def pretrain_backbone_on_crops(backbone_cfg: dict,
                               ann_file: str,
                               img_dir: str,
                               out_file: str,
                               steps: int = 600,
                               batch_size: int = 64,
                               crop_size: int = 64,
                               lr: float = 2e-3,
                               seed: int = 0,
                               log_interval: Optional[int] = 100) -> float:
    """Train ``backbone_cfg`` + GAP + linear on crops; save the backbone.

    Images are normalized like mmdet's ``DetDataPreprocessor`` (ImageNet
    mean/std, RGB) so the detector sees the same input statistics.

    Returns:
        float: Accuracy on the last 10% of crops (held out).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    crops, labels = _load_crops(ann_file, img_dir, crop_size)
    order = rng.permutation(len(labels))
    crops, labels = crops[order], labels[order]
    num_val = max(len(labels) // 10, 1)
    x = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float()
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    x = (x - mean) / std
    y = torch.from_numpy(labels).long()
    x_train, y_train = x[num_val:], y[num_val:]
    cfg = dict(backbone_cfg)
    cfg['init_cfg'] = None
    backbone = MODELS.build(cfg)
    backbone.init_weights()
    with torch.no_grad():
        channels = backbone(x[:2])[-1].shape[1]
    head = nn.Linear(channels, int(y.max()) + 1)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    backbone.train()
    start = time.time()
    for step in range(steps):
        idx = torch.randint(len(y_train), (batch_size, ))
        batch = x_train[idx]
        if step % 2:
            batch = batch.flip(-1)
        logits = head(backbone(batch)[-1].mean((2, 3)))
        loss = F.cross_entropy(logits, y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if log_interval and (step + 1) % log_interval == 0:
            print(f'backbone pretraining on object crops: step {step + 1}/'
                  f'{steps} loss {loss.item():.3f} '
                  f'({time.time() - start:.0f} s)', flush=True)
    backbone.eval()
    with torch.no_grad():
        pred = head(backbone(x[:num_val])[-1].mean((2, 3))).argmax(1)
    accuracy = (pred == y[:num_val]).float().mean().item()
    torch.save(dict(state_dict=backbone.state_dict(),
                    meta=dict(crop_accuracy=accuracy, steps=steps)),
               out_file)
    return accuracy
