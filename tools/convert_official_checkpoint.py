#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Convert an official SAM-DETR or Align-DETR checkpoint for our configs.

    python tools/convert_official_checkpoint.py official.pth ours.pth

Recognises the layout from the keys: SAM-DETR (ZhangGongjie/SAM-DETR; with
GroupNorm for the 12-epoch runs, SMCA, multi-scale) or Align-DETR
(FelixCaae/AlignDETR, detrex's DINO-4scale R50), and prints the matching
config. The file is read with torch's ``weights_only=True``; besides tensors
it may hold what a Runner checkpoint holds (plain containers, numpy arrays,
mmengine's ``HistoryBuffer``) and the official SAM-DETR training arguments
(``argparse.Namespace``), nothing else (see ``mmdet_samdetr.engine.checkpoint``
for the opt-in that loads a full pickle). A file that ``torch.save`` did not
write (a download link's web page, a truncated download) is named as such.
"""
import argparse
import os.path as osp
import sys

import torch

from mmdet_samdetr.engine import (NotACheckpointError,
                                  UntrustedCheckpointError, allowed_globals,
                                  load_from_local_safely)
from mmdet_samdetr.utils import UnknownLayoutError, convert_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'src', help='official .pth (with the key "model", or a bare state '
        'dict)')
    parser.add_argument('dst', help='output .pth for our configs')
    parser.add_argument(
        '--num-classes',
        type=int,
        default=None,
        choices=(80, 91),
        help='SAM-DETR: 80 mmdet COCO classes (default) or 91 raw official '
        'logits; Align-DETR checkpoints have 80')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'{args.src} does not exist')
    # the official checkpoints also pickle the training arguments
    with allowed_globals([argparse.Namespace]):
        try:
            checkpoint = load_from_local_safely(args.src, map_location='cpu')
        except (UntrustedCheckpointError, NotACheckpointError) as e:
            print(f'error: {e}', file=sys.stderr)
            return 1
        except (RuntimeError, EOFError) as e:  # torch's reader: corrupt
            print(f'error: {args.src} cannot be read ({e})', file=sys.stderr)
            return 1
    try:
        converted = convert_checkpoint(checkpoint, args.num_classes)
    except (UnknownLayoutError, ValueError) as e:
        print(f'error: {args.src}: {e}', file=sys.stderr)
        return 1
    torch.save(converted, args.dst)
    meta = converted['meta']
    print(f'wrote {args.dst}: {len(converted["state_dict"])} tensors, '
          f'{meta["summary"]}\nuse with configs/{meta["config"]}')
    for config in meta.get('alternatives', []):
        print(f'  or configs/{config}')
    if 'config_note' in meta:
        print(f'({meta["config_note"]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
