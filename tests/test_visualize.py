# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""What a decoder layer attends to: the inspection hooks, collect_attention
and tools/visualize_salient_points.py."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmdet.apis import init_detector

from conftest import REPO
from mmdet_samdetr.apis import collect_attention
from test_inference import fresh, make_family


def _image(h=96, w=96, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3),
                                                dtype=np.uint8)


@pytest.fixture(scope='module', params=['sam-detr-smca',
                                        'sam-detr-pp-smca-dn'])
def smca_model(request, tmp_path_factory):
    cfg, ckpt = make_family(request.param,
                            tmp_path_factory.mktemp(request.param))
    return cfg, ckpt, init_detector(fresh(cfg), ckpt, device='cpu')


def test_inspection_points_see_the_attention_and_change_nothing(
        smca_model):
    cfg, ckpt, model = smca_model
    attn = model.decoder.layers[0].cross_attn
    seen = {}
    handles = [
        attn.attn_probs.register_forward_hook(
            lambda m, a, out: seen.__setitem__('probs', out)),
        attn.smca_bias.register_forward_hook(
            lambda m, a, out: seen.__setitem__('bias', out))
    ]
    inputs = torch.rand(1, 3, 96, 96)
    from conftest import det_sample
    samples = [det_sample((96, 96))]
    with torch.no_grad():
        hooked = model.predict(inputs, samples)[0].pred_instances
    for h in handles:
        h.remove()
    with torch.no_grad():
        plain = model.predict(inputs, [det_sample((96, 96))])[0].pred_instances
    torch.testing.assert_close(hooked.bboxes, plain.bboxes)
    probs = seen['probs']
    assert probs.shape[:3] == (1, 8, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 8, 10))
    assert seen['bias'].shape == probs.shape and (seen['bias'] <= 0).all()


@pytest.mark.parametrize('size', [(96, 96), (60, 150)])
def test_collect_attention_frames_agree(smca_model, size):
    cfg, ckpt, model = smca_model
    out = collect_attention(model, _image(*size), layer=-1, num_queries=3)
    h, w = size
    q = len(out['queries'])
    assert q == 3 and out['attention'].shape == (3, 8, h, w)
    assert out['smca'].shape == (3, 8, h, w) and out['points'].shape == (3, 8,
                                                                         2)
    # the salient points lie in their reference boxes (same frame)
    x0, y0, x1, y1 = [out['ref_boxes'][:, None, i] for i in range(4)]
    px, py = out['points'][..., 0], out['points'][..., 1]
    assert ((px >= x0 - 1e-3) & (px <= x1 + 1e-3) & (py >= y0 - 1e-3) &
            (py <= y1 + 1e-3)).all()
    # each head's Gaussian peaks at its salient point (same frame as the
    # maps): within about one feature cell
    fh, fw = out['level_shape']
    cell = max(h / fh, w / fw) + 1  # pixels per feature cell, and some
    for i in range(q):
        for head in range(8):
            x, y = out['points'][i, head]
            if not (0 <= x < w and 0 <= y < h):
                continue  # a point off the image: its peak is cut off
            peak = np.unravel_index(out['smca'][i, head].argmax(), (h, w))
            assert abs(peak[1] + 0.5 - x) <= 1.5 * cell
            assert abs(peak[0] + 0.5 - y) <= 1.5 * cell
    # chosen queries
    chosen = collect_attention(model, _image(*size), query_ids=[4, 7])
    assert chosen['queries'].tolist() == [4, 7]


def test_tool_draws_one_picture_per_query(smca_model, tmp_path):
    cfg, ckpt, model = smca_model
    cfg_path = tmp_path / 'cfg.py'
    fresh(cfg).dump(str(cfg_path))
    img = tmp_path / 'img.png'
    import mmcv
    mmcv.imwrite(_image(80, 120), str(img))
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools',
                                  'visualize_salient_points.py'),
         str(cfg_path), ckpt, str(img), '--out-dir', str(tmp_path / 'vis'),
         '--num-queries', '2', '--layer', '0'],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    pictures = sorted((tmp_path / 'vis').glob('img_layer0_query*.png'))
    assert len(pictures) == 2
    drawn = mmcv.imread(str(pictures[0]))
    assert drawn.shape[0] > 200 and drawn.shape[1] > 8 * 200  # 2 rows, 9
