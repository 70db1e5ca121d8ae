# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""tools/infer.py: a folder of images -> drawings + one COCO json."""
import json
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
from pycocotools.coco import COCO

from conftest import REPO
from test_inference import fresh, make_family


def test_folder_to_drawings_and_coco_json(tmp_path):
    cfg, ckpt = make_family('sam-detr-pp-smca-dn', tmp_path)
    cfg_path = tmp_path / 'cfg.py'
    fresh(cfg).dump(str(cfg_path))
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {'a.png': (96, 96), 'b.jpg': (40, 70), 'c.png': (120, 64)}
    for name, (h, w) in sizes.items():
        mmcv.imwrite(rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                     str(folder / name))
    (folder / 'broken.jpg').write_bytes(b'not a jpeg at all')
    (folder / 'notes.txt').write_text('ignored: not an image name')
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'infer.py'), str(cfg_path),
         ckpt, str(folder), '--out-dir', str(tmp_path / 'out'),
         '--batch-size', '2', '--score-thr', '0.0'],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f'skipped {folder / "broken.jpg"}' in out.stderr
    assert 'notes.txt' not in out.stderr
    assert '3 images, 30 detections' in out.stdout
    drawn = sorted(p.name for p in (tmp_path / 'out' / 'vis').iterdir())
    assert drawn == sorted(sizes)
    coco = COCO(str(tmp_path / 'out' / 'detections.json'))
    assert sorted(img['file_name'] for img in coco.dataset['images']) == \
        sorted(sizes)
    for img in coco.dataset['images']:
        assert (img['height'], img['width']) == sizes[img['file_name']]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img['id']]))
        assert len(anns) == 10  # max_per_img of the tiny model
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert 0 <= x and x + w <= img['width'] + 1e-3
            assert 0 <= y and y + h <= img['height'] + 1e-3
            assert len(ann['salient_points']) == 8
    names = [c['name'] for c in coco.dataset['categories']]
    assert names == ['rectangle', 'ellipse', 'triangle', 'ring', 'cross']
    # pycocotools reads it as detection results too
    results = json.load(open(tmp_path / 'out' / 'detections.json'))
    assert coco.loadRes(results['annotations']).getImgIds()
