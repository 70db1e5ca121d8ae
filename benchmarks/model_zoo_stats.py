#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Parameters and GFLOPs of the COCO configs at 800x1333, for the model zoo.

    python benchmarks/model_zoo_stats.py [CONFIG ...] [--json stats.json]

Without configs: every config listed in ``metafile.yml``. For each config,
mmdet's own ``get_flops.py`` (``tools/get_flops.py``) runs on one
1333x800 image (a one-image COCO-format dataset written to a temporary
folder: no COCO needed), in a fresh process; its ``Flops`` and ``Params``
lines are parsed. The exact parameter counts (all, and trainable, i.e.
without the frozen ResNet stem and stage 1) come from building the model.
Prints one markdown row per config.
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HEIGHT, WIDTH = 800, 1333


def write_one_image_coco(folder):
    """A COCO-format dataset of one 1333x800 image with one box, with the
    80 COCO category names (so that ``CocoDataset`` keeps the image)."""
    import mmcv
    import numpy as np
    from mmdet.datasets import CocoDataset
    os.makedirs(osp.join(folder, 'img'), exist_ok=True)
    image = np.random.default_rng(0).integers(
        0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    mmcv.imwrite(image, osp.join(folder, 'img', 'image.png'))
    classes = CocoDataset.METAINFO['classes']
    coco = dict(
        images=[dict(id=1, file_name='image.png', height=HEIGHT,
                     width=WIDTH)],
        annotations=[dict(id=1, image_id=1, category_id=1,
                          bbox=[100, 100, 300, 200], area=60000,
                          iscrowd=0)],
        categories=[dict(id=i + 1, name=name)
                    for i, name in enumerate(classes)])
    with open(osp.join(folder, 'ann.json'), 'w') as f:
        json.dump(coco, f)


def get_flops(config, data_root, cfg_options=()):
    """(flops, params) as mmdet's get_flops.py prints them (e.g. '0.1T')."""
    cmd = [
        sys.executable, osp.join(REPO, 'tools', 'get_flops.py'), config,
        '--num-images', '1', '--cfg-options',
        f'val_dataloader.dataset.data_root={data_root}/',
        'val_dataloader.dataset.ann_file=ann.json',
        'val_dataloader.dataset.data_prefix.img=img/',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', *cfg_options
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    text = out.stdout + out.stderr
    shape = re.search(r'Input shape: \((\d+), (\d+)\)', text)
    flops = re.search(r'Flops: (\S+)', text)
    params = re.search(r'Params: (\S+)', text)
    if out.returncode or not (shape and flops and params):
        raise RuntimeError(f'get_flops.py failed on {config}:\n'
                           f'{text[-3000:]}')
    if (int(shape[1]), int(shape[2])) != (HEIGHT, WIDTH):
        raise RuntimeError(f'{config}: get_flops.py measured a '
                           f'{shape[1]}x{shape[2]} input, not '
                           f'{HEIGHT}x{WIDTH}')
    return flops[1], params[1]


def to_giga(size):
    """'0.107T' / '58.4M' / '210G' -> a number of giga-units."""
    scale = dict(K=1e-6, M=1e-3, G=1.0, T=1e3, P=1e6)
    return float(size[:-1]) * scale[size[-1]]


def count_parameters(config):
    """(all, trainable) parameters of the built model."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    import mmdet_samdetr  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    # frozen stages are set in the backbone's train(): count as training
    model.train()
    params = list(model.parameters())
    return (sum(p.numel() for p in params),
            sum(p.numel() for p in params if p.requires_grad))


def metafile_configs():
    import yaml
    with open(osp.join(REPO, 'metafile.yml')) as f:
        return [m['Config'] for m in yaml.safe_load(f)['Models']]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('configs', nargs='*')
    parser.add_argument('--json', help='also write the numbers here')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help="passed on to get_flops.py's --cfg-options")
    args = parser.parse_args(argv)
    configs = args.configs or metafile_configs()
    stats = {}
    with tempfile.TemporaryDirectory() as data_root:
        write_one_image_coco(data_root)
        for config in configs:
            flops, params = get_flops(config, data_root, args.cfg_options)
            total, trainable = count_parameters(config)
            stats[config] = dict(
                gflops=to_giga(flops), get_flops_params=params,
                params=total, trainable_params=trainable)
            print(f'| `{config}` | {total / 1e6:.2f}M ({trainable / 1e6:.2f}M '
                  f'trainable) | {to_giga(flops):.0f} |', flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(stats, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
