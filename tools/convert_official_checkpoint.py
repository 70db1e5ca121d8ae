#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Convert an official SAM-DETR checkpoint for our configs.

    python tools/convert_official_checkpoint.py official.pth ours.pth

Detects GroupNorm (12-epoch runs) and SMCA from the keys and prints the
matching config. The file is read with torch's ``weights_only=True``; besides
tensors it may hold the official training arguments (``argparse.Namespace``)
and nothing else (see ``mmdet_samdetr.engine.checkpoint`` for the opt-in that
loads a full pickle).
"""
import argparse
import os.path as osp
import sys

import torch

from mmdet_samdetr.engine import (UntrustedCheckpointError, allowed_globals,
                                  load_from_local_safely)
from mmdet_samdetr.utils import UnknownLayoutError, convert_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official .pth (with the key "model")')
    parser.add_argument('dst', help='output .pth for our configs')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=80,
        choices=(80, 91),
        help='80: mmdet COCO classes (default); 91: raw official logits')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'{args.src} does not exist')
    # the official checkpoints also pickle the training arguments
    with allowed_globals([argparse.Namespace]):
        try:
            checkpoint = load_from_local_safely(args.src, map_location='cpu')
        except UntrustedCheckpointError as e:
            print(f'error: {e}', file=sys.stderr)
            return 1
    try:
        converted = convert_checkpoint(checkpoint, args.num_classes)
    except UnknownLayoutError as e:
        print(f'error: {args.src}: {e}', file=sys.stderr)
        return 1
    torch.save(converted, args.dst)
    meta = converted['meta']
    print(f'wrote {args.dst}: {len(converted["state_dict"])} tensors, '
          f'GroupNorm={meta["with_gn"]}, SMCA={meta["with_smca"]}, '
          f'{meta["num_classes"]} classes\nuse with configs/'
          f'{meta["config"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
