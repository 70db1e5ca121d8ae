#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Write the toy-shapes dataset and its crop-pretrained backbone.

    python demo/make_toy_dataset.py [--out data/toy_shapes]

Deterministic (same seed, same files). The backbone checkpoint is what
``configs/sam_detr_toy/*`` load as their ``Pretrained`` backbone.
"""
import argparse
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_CONFIG = osp.join(REPO, 'configs', 'sam_detr_toy',
                      'sam-detr_r18_1xb8-toy-shapes.py')


def make_toy_dataset(out: str, config: str = TOY_CONFIG, num_train=2000,
                     num_val=100, pretrain_steps=400, force=False) -> None:
    from crop_pretrain import pretrain_backbone_on_crops
    from mmengine.config import Config
    from toy_shapes import generate_toy_dataset
    ann = osp.join(out, 'annotations', 'train.json')
    if force or not osp.isfile(ann):
        print(f'writing the toy dataset to {out} ...', flush=True)
        generate_toy_dataset(out, num_train=num_train, num_val=num_val)
    ckpt = osp.join(out, 'backbone_crops.pth')
    if force or not osp.isfile(ckpt):
        from mmdet.utils import register_all_modules
        register_all_modules()
        backbone = Config.fromfile(config).model.backbone.to_dict()
        acc = pretrain_backbone_on_crops(
            backbone, ann, osp.join(out, 'train'), ckpt,
            steps=pretrain_steps)
        print(f'backbone pretrained on object crops: held-out crop '
              f'accuracy {acc:.3f}, saved to {ckpt}', flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='data/toy_shapes')
    parser.add_argument('--num-train', type=int, default=2000)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--force', action='store_true',
                        help='rewrite even if the files exist')
    args = parser.parse_args()
    make_toy_dataset(args.out, num_train=args.num_train,
                     num_val=args.num_val, force=args.force)


if __name__ == '__main__':
    main()
