#!/usr/bin/env python
# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Draw what a SAM-DETR decoder layer looks at (CVPR paper Fig. 4).

For each image and each chosen query (the top-scoring ones by default): the
layer's reference box (dashed), the final predicted box, the 8 salient
points, and one panel per attention head with that head's cross-attention
map over the image (head h queries with salient point h, marked); with SMCA
a second row shows each head's Gaussian prior.

    python tools/visualize_salient_points.py CONFIG CHECKPOINT img1.jpg \\
        [img2.jpg ...] --out-dir vis [--layer -1] [--num-queries 3] \\
        [--query-ids 5 17] [--device cpu]

Writes ``<out-dir>/<image>_layer<l>_query<q>.png``.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np

COLOURS = ['#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#911eb4',
           '#46f0f0', '#f032e6', '#bcf60c', '#fabebe']


def draw(result, index, path, class_names=None, layer=-1, dpi=110):
    """One figure for query ``index`` of :func:`collect_attention`'s
    result."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    image = result['image'][..., ::-1]  # BGR -> RGB
    attention = result['attention'][index]
    smca = result['smca']
    heads = len(attention)
    rows = 2 if smca is not None else 1
    fig, axes = plt.subplots(
        rows, heads + 1, figsize=(2.2 * (heads + 1), 2.4 * rows),
        squeeze=False)
    points = result['points'][index]
    label = int(result['labels'][index])
    name = class_names[label] if class_names else str(label)

    def boxes_and_points(ax, head=None):
        ax.imshow(image)
        x0, y0, x1, y1 = result['ref_boxes'][index]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                               ls='--', lw=1.2, ec='white'))
        if head is None:
            x0, y0, x1, y1 = result['boxes'][index]
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                   lw=1.5, ec='lime'))
        for h, (x, y) in enumerate(points):
            if head is None or h == head:
                ax.scatter([x], [y], s=28 if head is None else 40,
                           c=COLOURS[h % len(COLOURS)], edgecolors='black',
                           linewidths=0.6, zorder=3)
        ax.set_xlim(0, image.shape[1])
        ax.set_ylim(image.shape[0], 0)
        ax.set_axis_off()

    boxes_and_points(axes[0, 0])
    axes[0, 0].set_title(f'q{result["queries"][index]} {name} '
                         f'{result["scores"][index]:.2f}', fontsize=8)
    for h in range(heads):
        ax = axes[0, h + 1]
        boxes_and_points(ax, h)
        ax.imshow(attention[h], cmap='jet', alpha=0.55)
        ax.set_title(f'head {h} attention', fontsize=8)
    if smca is not None:
        axes[1, 0].set_axis_off()
        axes[1, 0].text(0.5, 0.5, f'SMCA priors\n(layer {layer})',
                        ha='center', va='center', fontsize=9)
        for h in range(heads):
            ax = axes[1, h + 1]
            boxes_and_points(ax, h)
            ax.imshow(smca[index][h], cmap='viridis', alpha=0.55)
            ax.set_title(f'head {h} Gaussian', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('images', nargs='+')
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--layer', type=int, default=-1,
                        help='decoder layer (default: the last)')
    parser.add_argument('--num-queries', type=int, default=3,
                        help='top-scoring queries per image')
    parser.add_argument('--query-ids', type=int, nargs='+',
                        help='these queries instead of the top-scoring')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dpi', type=int, default=110)
    args = parser.parse_args(argv)

    from mmdet.apis import init_detector

    from mmdet_samdetr.apis import collect_attention
    from mmdet_samdetr.engine import safe_checkpoint_loading

    with safe_checkpoint_loading():
        model = init_detector(args.config, args.checkpoint,
                              device=args.device)
    classes = (model.dataset_meta or {}).get('classes')
    layer = args.layer % len(model.decoder.layers)
    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    for image in args.images:
        result = collect_attention(model, image, layer, args.num_queries,
                                   args.query_ids)
        stem = osp.splitext(osp.basename(image))[0]
        for i, query in enumerate(result['queries']):
            path = osp.join(args.out_dir,
                            f'{stem}_layer{layer}_query{query}.png')
            draw(result, i, path, classes, layer, args.dpi)
            written.append(path)
    print('\n'.join(written))
    return 0


if __name__ == '__main__':
    np.seterr(all='ignore')
    sys.exit(main())
