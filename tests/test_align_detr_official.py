# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""Released Align-DETR checkpoints: converted weights give the official
model's outputs, and fine-tune on another class count.

``fixtures/align_detr_official_outputs.json`` holds the official model's
outputs (FelixCaae/AlignDETR ``aligndetr_k=2_r50_4scale_12ep`` on detrex,
CPU, float32) for synthetic weights that its header defines by a rule (a
seeded generator per key, from the key list alone, which the file also
holds) on one image it defines. Here the weights are regenerated, converted
with our converter, loaded strictly and run through mmdet's pipeline.
"""
import json
import math
import os.path as osp
import zlib

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import RUNNERS

from conftest import REPO, config_path
from mmdet_samdetr.utils import UnknownLayoutError, convert_checkpoint
from mmdet_samdetr.utils.convert_official import align_detr_official_keys

FIXTURE = osp.join(REPO, 'tests', 'fixtures',
                   'align_detr_official_outputs.json')
CONFIG = 'align_detr/align-detr-ia-bce-4scale_r50_8xb2-12e_coco.py'
TOL = 1e-4  # logits, normalised boxes, scores
HEAD_COPIES = ('transformer.decoder.class_embed.',
               'transformer.decoder.bbox_embed.')


@pytest.fixture(scope='module')
def fixture():
    with open(FIXTURE) as f:
        return json.load(f)


def official_weights(keys):
    """The fixture's weight rule (its header, ``weight_rule``): one seeded
    generator per entry; the decoder's copies of the heads are the same
    tensors as the heads."""
    state = {}
    for name, shape in keys:
        src = name[len('transformer.decoder.'):] if name.startswith(
            HEAD_COPIES) else name
        g = torch.Generator().manual_seed(zlib.crc32(src.encode()))
        if name == 'transformer.tgt_embed.weight':
            state[name] = torch.randn(shape[1:], generator=g).repeat(
                shape[0], 1)
            continue
        r = torch.randn(shape, generator=g)
        if name.endswith('running_var'):
            value = 1 + 0.1 * r.abs()
        elif name.endswith('running_mean'):
            value = 0.1 * r
        elif len(shape) == 1 and name.endswith('weight'):
            value = 1 + 0.1 * r
        elif len(shape) == 1 and name.endswith('bias'):
            value = 0.1 * r
        elif src in ('label_enc.weight', 'transformer.level_embeds'):
            value = r
        else:
            value = r / math.sqrt(r.numel() / shape[0])
        state[name] = value
    return state


def official_keys(fixture):
    """``[(name, shape)]`` of the official state dict, in its order."""
    keys = []
    for line, _, _ in fixture['official_state_dict']:
        name, *shape = line.split()
        keys.append((name, tuple(int(s) for s in shape)))
    return keys


@pytest.fixture(scope='module')
def official(fixture):
    """The official state dict (634 entries, head copies included), checked
    against the fixture's per-entry sums and first elements."""
    entries = fixture['official_state_dict']
    state = official_weights(official_keys(fixture))
    assert len(state) == len(entries) == 634
    for (line, total, first), value in zip(entries, state.values()):
        assert math.isclose(
            value.double().sum().item(), total, rel_tol=1e-5,
            abs_tol=1e-4), line
        assert math.isclose(value.flatten()[0].item(), first,
                            rel_tol=1e-6), line
    return state


@pytest.fixture(scope='module')
def converted(official):
    return convert_checkpoint(dict(model=official, iteration=89999))


def build_model(num_classes=80):
    cfg = Config.fromfile(config_path(CONFIG)).model
    cfg.backbone.init_cfg = None
    cfg.bbox_head.num_classes = num_classes
    return MODELS.build(cfg)


def test_converter_accepts_detectron2_and_bare_state_dicts(
        official, converted):
    assert converted['meta']['num_classes'] == 80
    assert converted['meta']['official_iteration'] == 89999
    # detectron2's iteration 89999 of a batch-16 run: the 12-epoch schedule
    assert converted['meta']['config'] == \
        'align_detr/align-detr-ia-bce-4scale_r50_8xb2-12e_coco.py'
    assert converted['meta']['alternatives'] == [
        'align_detr/align-detr-4scale_r50_8xb2-12e_coco.py'
    ]
    state = converted['state_dict']
    # 578 distinct tensors + mmdet's 53 BatchNorm step counters
    assert len(state) == 631
    bare = convert_checkpoint(
        {k: v
         for k, v in official.items() if not k.startswith(HEAD_COPIES)})
    assert list(bare['state_dict']) == list(state)
    for key, value in bare['state_dict'].items():
        assert torch.equal(value, state[key]), key
    # no iteration: both schedules offered
    assert bare['meta']['alternatives'] == [
        'align_detr/align-detr-ia-bce-4scale_r50_8xb2-24e_coco.py',
        'align_detr/align-detr-4scale_r50_8xb2-12e_coco.py',
        'align_detr/align-detr-4scale_r50_8xb2-24e_coco.py'
    ]


def test_the_converters_key_list_is_the_official_one(fixture):
    keys = [name for name, _ in official_keys(fixture)]
    assert align_detr_official_keys() == [
        k for k in keys if not k.startswith(HEAD_COPIES)
    ]


def tiny_official(fixture):
    """The official keys with small tensors (the converter reads names, the
    class, level and query counts): entry i is ``shape[0]`` times i, the
    head copies equal to the heads."""
    state = {
        name: torch.full(shape[:1], float(i))
        for i, (name, shape) in enumerate(official_keys(fixture))
    }
    for name in state:
        if name.startswith(HEAD_COPIES):
            state[name] = state[name[len('transformer.decoder.'):]]
    return state


def refused(state, match, error=UnknownLayoutError):
    with pytest.raises(error) as info:
        convert_checkpoint(state)
    assert match in str(info.value), str(info.value)


def test_converter_refuses_what_it_does_not_know(fixture):
    state = tiny_official(fixture)
    # entries the official layout does not have: the first is named
    extra = dict(state)
    extra['transformer.decoder.layers.2.attentions.2.value_proj.weight'] = \
        torch.zeros(1)
    extra['transformer.extra.weight'] = torch.zeros(1)
    refused(
        dict(model=extra), "2 keys unknown to the official Align-DETR "
        "(detrex DINO-4scale R50) layout, the first: 'transformer.decoder."
        "layers.2.attentions.2.value_proj.weight'")
    # a 5-scale DINO: its fifth neck level is not in the layout
    five = dict(state)
    five['transformer.level_embeds'] = torch.zeros(5, 256)
    five['neck.convs.3.conv.weight'] = torch.zeros(256)
    refused(five, "the first: 'neck.convs.3.conv.weight'")
    del five['neck.convs.3.conv.weight']
    refused(five, 'feature levels: the checkpoint has 5 (level_embed '
            '(5, 256)), the Align-DETR configs 4')
    fewer = dict(state, **{'transformer.tgt_embed.weight': torch.zeros(300)})
    refused(fewer, 'queries: the checkpoint has 300')
    # an incomplete file: the first missing key is named
    partial = {k: v for k, v in state.items() if '.layers.5.' not in k}
    refused(
        partial, "38 keys of the official Align-DETR (detrex DINO-4scale R50)"
        " layout are missing, the first: 'transformer.encoder.layers.5.")
    # a head copy that is not the head, or without its head
    copy = dict(state)
    copy['transformer.decoder.class_embed.3.bias'] = torch.zeros(1)
    refused(copy, 'differs from class_embed.3.bias')
    del copy['class_embed.3.bias']
    refused(copy, 'class_embed.3.bias is missing')
    with pytest.raises(ValueError, match='80 classes'):
        convert_checkpoint(dict(model=state), num_classes=91)
    # not an official state dict at all
    refused({'stem.w': torch.zeros(1)}, "first key is 'stem.w'")
    refused(dict(model=dict(model=state)), "'model' is a builtins.dict")
    refused(dict(model={'w': torch.zeros(1).numpy()}),
            "'w' is a numpy.ndarray, not a tensor")
    refused(dict(state_dict=state, meta={}), 'converted already?')
    refused([state], 'got list')


def test_cli_converts_what_detrex_saves_and_names_bad_files(
        fixture, tmp_path, capsys):
    from tools.convert_official_checkpoint import main
    src, dst = tmp_path / 'model_final.pth', tmp_path / 'ours.pth'
    state = tiny_official(fixture)
    # detrex's train_net.py: DetectionCheckpointer(model, trainer=trainer)
    torch.save(
        dict(
            model=state,
            trainer=dict(
                iteration=179999,
                hooks={},
                optimizer=dict(state={}, param_groups=[dict(lr=1e-5)])),
            iteration=179999), src)
    assert main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'Align-DETR (detrex DINO-4scale R50), 80 classes, 24 epochs' in out
    assert ('use with configs/align_detr/align-detr-ia-bce-4scale_r50_8xb2-'
            '24e_coco.py\n  or configs/align_detr/align-detr-4scale_r50_'
            '8xb2-24e_coco.py\n') in out
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['official_iteration'] == 179999
    from mmdet.datasets import CocoDataset
    assert converted['meta']['dataset_meta']['classes'] == \
        CocoDataset.METAINFO['classes']
    ours = converted['state_dict']
    assert torch.equal(ours['bbox_head.reg_branches.6.4.bias'],
                       state['bbox_embed.6.layers.2.bias'])
    assert torch.equal(ours['backbone.layer4.2.bn3.running_var'],
                       state['backbone.res5.2.conv3.norm.running_var'])
    assert main([str(src), str(dst), '--num-classes', '91']) == 1
    assert '80 classes' in capsys.readouterr().err
    # what a download link's page or a cut download gives
    page = tmp_path / 'page.pth'
    page.write_text('<!DOCTYPE html><html><head><title>Google Drive')
    assert main([str(page), str(dst)]) == 1
    err = capsys.readouterr().err
    assert f'{page} is not a checkpoint written by torch.save: an HTML ' \
        'page' in err
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(src.read_bytes()[:4096])
    assert main([str(cut), str(dst)]) == 1
    assert 'an incomplete zip archive' in capsys.readouterr().err


def test_converted_weights_give_the_official_outputs(fixture, converted):
    """Logits, boxes, encoder proposals and detections within 1e-4 of the
    official model's (the fixture's tolerances: scores 1e-4, boxes 1e-4 of
    the image size)."""
    model = build_model().eval()
    result = model.load_state_dict(converted['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # released configs: detectron2's inverse_sigmoid clamp in the head
    assert model.bbox_head.inverse_sigmoid_eps == 1e-3

    captured = {}

    def head_hook(module, args, output):
        captured['references'] = args[1]
        captured['logits'], captured['boxes'] = output

    def proposal_hook(module, args, output):
        captured.setdefault('encoder_logits', output)

    hooks = [
        model.bbox_head.register_forward_hook(head_hook),
        model.bbox_head.cls_branches[6].register_forward_hook(proposal_hook)
    ]
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 320, 480, generator=g) * 255  # RGB, float
    assert math.isclose(img.double().sum().item(),
                        fixture['header']['input_check']['sum'],
                        rel_tol=1e-6)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(320, 480), ori_shape=(320, 480),
            scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        # mmdet loads BGR; the preprocessor flips to RGB as detectron2 reads
        results = model.test_step(
            dict(inputs=[img.flip(0)], data_samples=[sample]))
    for hook in hooks:
        hook.remove()

    # encoder proposals: mmdet's query j starts from token rank[j]
    encoder_logits = captured['encoder_logits'][0]
    assert encoder_logits.shape == (3190, 80)
    rank = encoder_logits.max(-1).values.topk(900).indices
    proposals = fixture['encoder_proposals']
    assert rank[:20].tolist() == proposals['token']
    torch.testing.assert_close(
        encoder_logits[rank[:20]],
        torch.tensor(proposals['top_logits']),
        atol=TOL,
        rtol=0)
    torch.testing.assert_close(
        captured['references'][0][0, :20],
        torch.tensor(proposals['top_boxes_cxcywh']),
        atol=TOL,
        rtol=0)

    # last decoder layer: summaries, and the 50 best queries by token
    logits, boxes = captured['logits'][-1][0], captured['boxes'][-1][0]
    for name, ours in (('pred_logits', logits), ('pred_boxes', boxes)):
        stored = fixture['last_layer'][name]
        ours = ours.double()
        scale = stored['abs_sum'] * 1e-5
        assert abs(ours.sum().item() - stored['sum']) < scale, name
        assert abs(ours.abs().sum().item() - stored['abs_sum']) < scale
        assert abs(ours.max().item() - stored['max']) < TOL, name
        assert abs(ours.min().item() - stored['min']) < TOL, name
    query_of_token = {t: j for j, t in enumerate(rank.tolist())}
    top = fixture['top_queries']
    queries = [query_of_token[t] for t in top['token']]
    torch.testing.assert_close(
        logits[queries], torch.tensor(top['logits']), atol=TOL, rtol=0)
    torch.testing.assert_close(
        boxes[queries], torch.tensor(top['boxes_cxcywh']), atol=TOL, rtol=0)

    # detections: the official top 100, matched by label and box (near ties
    # in score may swap ranks)
    pred = results[0].pred_instances
    assert len(pred) == 300
    detections = fixture['detections']
    size = torch.tensor([480., 320., 480., 320.])
    for score, label, box in zip(detections['scores'], detections['labels'],
                                 detections['boxes_xyxy_px']):
        same_label = (pred.labels == label).nonzero()[:, 0]
        distance = (pred.bboxes[same_label] - torch.tensor(box)).abs()
        distance = (distance / size).amax(-1)
        nearest = same_label[distance.argmin()]
        assert distance.min() < TOL, (label, box)
        assert abs(pred.scores[nearest].item() - score) < TOL, (label, box)


def test_fine_tuning_on_another_class_count(converted, tmp_path):
    """``load_from`` a converted checkpoint with 3 classes: everything but
    the class rows (7 heads) and the denoising label embedding is loaded;
    those keep their initialisation (mmdet's size-mismatch rule)."""
    checkpoint = tmp_path / 'align_detr_converted.pth'
    torch.save(converted, checkpoint)
    cfg = Config.fromfile(config_path(CONFIG))
    cfg.model.backbone.init_cfg = None
    cfg.model.bbox_head.num_classes = 3
    cfg.load_from = str(checkpoint)
    cfg.work_dir = str(tmp_path / 'work')
    runner = RUNNERS.build(cfg)
    model = runner.model
    model.init_weights()
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    runner.load_or_resume()
    reinitialised = {
        f'bbox_head.cls_branches.{i}.{p}'
        for i in range(7) for p in ('weight', 'bias')
    } | {'dn_query_generator.label_embedding.weight'}
    source = converted['state_dict']
    for key, value in model.state_dict().items():
        if key in reinitialised:
            assert value.shape[0] == 3, key
            assert torch.equal(value, fresh[key]), key
        else:
            assert torch.equal(value, source[key]), key
    # the class heads start from the focal-loss prior (bias -log(99))
    torch.testing.assert_close(model.bbox_head.cls_branches[6].bias,
                               torch.full((3, ), -math.log(99)))
