# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""What a SAM-DETR decoder layer looks at, for chosen detections.

Everything comes from mmdet's detector API (``extract_feat``,
``forward_transformer``, the head's forward) and from forward hooks on
documented inspection points of the model (``attn_probs`` and
``smca_bias`` of :class:`SalientPointCrossAttention`, the memory map and
valid size that :class:`SemanticsAligner` receives); no forward pass is
edited for it.
"""
from typing import Dict, List, Optional, Union

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import Compose
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import get_test_pipeline_cfg


def inference_pipeline(cfg, from_array: bool = False) -> Compose:
    """The config's test pipeline without annotations, as mmdet's
    ``DetInferencer`` builds it; ``from_array``: it loads a BGR array
    (``img``) instead of a file (``img_path``)."""
    steps = [
        step for step in get_test_pipeline_cfg(cfg)
        if 'LoadAnnotations' not in step['type']
    ]
    if from_array:
        steps[0] = dict(steps[0], type='mmdet.LoadImageFromNDArray')
    return Compose(steps)


@torch.no_grad()
def collect_attention(model,
                      image: Union[str, np.ndarray],
                      layer: int = -1,
                      num_queries: int = 3,
                      query_ids: Optional[List[int]] = None) -> Dict:
    """Reference boxes, salient points and per-head attention of one decoder
    layer for the top-scoring (or chosen) queries of one image.

    Args:
        model: A SAM-DETR / SAM-DETR++ detector from ``init_detector``.
        image (str | ndarray): Path or BGR array.
        layer (int): Decoder layer (negative: from the last).
        num_queries (int): Top-scoring queries (max class score of the last
            layer) when ``query_ids`` is None.
        query_ids (list[int], optional): Queries to show.

    Returns:
        dict: in original-image pixels: ``image`` (H, W, 3) BGR,
        ``queries`` (Q,), ``scores`` (Q,), ``labels`` (Q,), ``boxes``
        (Q, 4) xyxy predicted by the last layer, ``ref_boxes`` (Q, 4) xyxy
        the layer's reference boxes, ``points`` (Q, M, 2) its salient
        points, ``attention`` (Q, heads, H, W) its attention probabilities
        resampled to the image, ``smca`` (Q, heads, H, W) its SMCA Gaussians
        (exp of the bias; None without SMCA), and ``level_shape`` (h, w) of
        the feature map it reads.
    """
    model.eval()
    num_layers = len(model.decoder.layers)
    layer = layer % num_layers
    from_array = isinstance(image, np.ndarray)
    data = dict(img=image) if from_array else dict(img_path=image)
    data = inference_pipeline(model.cfg, from_array)(dict(data, img_id=0))
    data = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    inputs, samples = data['inputs'], data['data_samples']

    captured = {}
    target = model.decoder.layers[layer]
    hooks = [
        target.cross_attn.attn_probs.register_forward_hook(
            lambda m, a, out: captured.__setitem__('probs', out)),
        target.cross_attn.smca_bias.register_forward_hook(
            lambda m, a, out: captured.__setitem__('bias', out)),
        # the aligner's inputs: (query, memory_2d, reference_points,
        # valid_sizes)
        target.semantics_aligner.register_forward_pre_hook(
            lambda m, args: captured.update(memory=args[1],
                                            valid_sizes=args[3]))
    ]
    try:
        head_inputs = model.forward_transformer(
            model.extract_feat(inputs), samples)
    finally:
        for hook in hooks:
            hook.remove()
    cls_scores, bbox_preds = model.bbox_head(head_inputs['hidden_states'],
                                             head_inputs['references'])
    scores, labels = cls_scores[-1, 0].sigmoid().max(-1)
    if query_ids is None:
        query_ids = scores.topk(min(num_queries, len(scores)))[1].tolist()
    queries = torch.as_tensor(query_ids, dtype=torch.long)

    meta = samples[0].metainfo
    img_h, img_w = meta['img_shape']
    scale = np.array(meta['scale_factor'], dtype=np.float32)  # (w, h)
    size = torch.tensor([img_w, img_h], dtype=torch.float32)

    def to_image_xyxy(cxcywh):
        return (bbox_cxcywh_to_xyxy(cxcywh) *
                size.repeat(2)).numpy() / np.tile(scale, 2)

    ref = head_inputs['references'][layer, 0, queries].float().cpu()
    points = head_inputs['salient_points'][layer, 0, queries].float().cpu()
    h, w = captured['memory'].shape[-2:]
    # (W, H) feature cells covering the image, as the layer used them
    valid_w, valid_h = captured['valid_sizes'][0].long().tolist()
    ori_h, ori_w = meta['ori_shape']

    def to_image_maps(maps):  # (Q, heads, h * w) -> (Q, heads, ori_h, ori_w)
        maps = maps[:, :, :h * w].reshape(len(queries), -1, h, w)
        maps = maps[..., :valid_h, :valid_w].float().cpu()
        return F.interpolate(maps, size=(ori_h, ori_w), mode='bilinear',
                             align_corners=False).numpy()

    probs = captured['probs'][0][:, queries].transpose(0, 1)
    smca = None
    if 'bias' in captured:
        smca = to_image_maps(captured['bias'][0][:, queries].transpose(
            0, 1).exp())
    return dict(
        image=image if isinstance(image, np.ndarray) else mmcv.imread(image),
        queries=queries.numpy(),
        scores=scores[queries].cpu().numpy(),
        labels=labels[queries].cpu().numpy(),
        boxes=to_image_xyxy(bbox_preds[-1, 0, queries].float().cpu()),
        ref_boxes=to_image_xyxy(ref),
        points=(points * size).numpy() / scale,
        attention=to_image_maps(probs),
        smca=smca,
        level_shape=(h, w))
