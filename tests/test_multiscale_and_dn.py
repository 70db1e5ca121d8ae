# Copyright (c) mmdet_samdetr contributors. All rights reserved.
"""SAM-DETR++ (multi-scale) and denoising training (DN)."""
import pytest
import torch
from mmdet.models.detectors import DETR, DeformableDETR
from mmdet.models.layers import DeformableDetrTransformerEncoder
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs

from conftest import det_sample, tiny_model_cfg, tiny_multiscale_cfg
from mmdet_samdetr.models.detectors import SAMDETR, SAMDETRPlusPlus


def _build(cfg, dropout=False):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    if not dropout:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    return model


ONE_GT = dict(boxes=[[23.6, 23.8, 88.6, 71.8]], labels=[2])
TWO_GT = dict(boxes=[[10., 12., 50., 60.], [40., 30., 100., 90.]],
              labels=[1, 3])
MODELS_UNDER_TEST = {
    'ss': lambda **kw: tiny_model_cfg(**kw),
    'ms': lambda **kw: tiny_multiscale_cfg(**kw),
}


# ---------------------------------------------------------------- levels

def _levels_read(model, img, samples):
    """(H, W) of the memory each decoder layer's aligner receives."""
    shapes = []
    hooks = [
        layer.semantics_aligner.register_forward_pre_hook(
            lambda m, args: shapes.append(tuple(args[1].shape[-2:])))
        for layer in model.decoder.layers
    ]
    with torch.no_grad():
        model.forward_transformer(model.extract_feat(img), samples)
    for hook in hooks:
        hook.remove()
    return shapes


def test_detectors_are_members_of_mmdets_detr_family():
    """SAM-DETR++ is a DeformableDETR (its encoder side runs natively) and
    SAM-DETR a DETR; Deformable DETR's own query layers are not built."""
    assert issubclass(SAMDETR, DETR) and issubclass(SAMDETRPlusPlus,
                                                    DeformableDETR)
    for name in ('forward_encoder', 'get_valid_ratio'):
        assert getattr(SAMDETRPlusPlus, name) is getattr(DeformableDETR, name)
    model = _build(tiny_multiscale_cfg()).eval()
    for name in ('reference_points_fc', 'memory_trans_fc', 'pos_trans_fc'):
        assert not hasattr(model, name)
    assert model.query_embedding.weight.shape == (10, 4)
    img, samples = torch.rand(1, 3, 96, 128), [det_sample((96, 128))]
    with torch.no_grad():
        feats = model.extract_feat(img)
        ours = model.pre_transformer(feats, samples)
        mmdets = DeformableDETR.pre_transformer(model, feats, samples)
    for key, value in mmdets[0].items():
        assert value is None or torch.equal(value, ours[0][key]), key
    assert ours[1]['memory_pos'] is ours[0]['feat_pos']


def test_each_decoder_layer_reads_its_level():
    model = _build(tiny_multiscale_cfg(layer_levels=(2, 2, 1, 0))).eval()
    img = torch.rand(1, 3, 96, 128)
    # strides 4, 8, 16 -> C3 24x32, C4 12x16, C5 6x8
    samples = [det_sample((96, 128))]
    assert _levels_read(model, img, samples) == [(6, 8), (6, 8), (12, 16),
                                                 (24, 32)]
    model.decoder.layer_levels = (0, 1, 2, 2)  # the schedule is a config
    assert _levels_read(model, img, samples) == [(24, 32), (12, 16), (6, 8),
                                                 (6, 8)]


def test_only_layers_reading_a_changed_level_change():
    """Change one level of the memory: the layers before the first layer
    reading it keep their output, that layer's output changes."""
    model = _build(tiny_multiscale_cfg(layer_levels=(2, 1, 0))).eval()
    img = torch.rand(1, 3, 96, 128)
    samples = [det_sample((96, 128))]
    with torch.no_grad():
        enc_in, dec_in = model.pre_transformer(model.extract_feat(img),
                                               samples)
        enc_out = model.forward_encoder(**enc_in)
        dec_in.update(model.pre_decoder(**enc_out)[0])
        base = model.forward_decoder(**dec_in)['hidden_states']
        starts = [0, 24 * 32, 24 * 32 + 12 * 16, 24 * 32 + 12 * 16 + 6 * 8]
        for level, first_layer in ((2, 0), (1, 1), (0, 2)):
            memory = dec_in['memory'].clone()
            memory[:, starts[level]:starts[level + 1]] += 1.0
            out = model.forward_decoder(**dict(dec_in, memory=memory))
            out = out['hidden_states']
            for layer in range(first_layer):
                torch.testing.assert_close(out[layer], base[layer])
            assert (out[first_layer] - base[first_layer]).abs().max() > 1e-3


def test_multiscale_gradients_reach_the_encoder_sampling_offsets():
    model = _build(tiny_multiscale_cfg(with_smca=True))
    losses = model.loss(torch.rand(1, 3, 96, 128),
                        [det_sample((96, 128), **ONE_GT)])
    sum(losses.values()).backward()
    for layer in model.encoder.layers:
        attn = layer.self_attn
        assert attn.sampling_offsets.weight.grad.abs().max() > 0
        assert attn.attention_weights.weight.grad.abs().max() > 0
    assert model.level_embed.grad.abs().max() > 0


def test_encoder_with_integer_sizes_is_mmdets_encoder():
    """The encoder given the level sizes as integers (as while exporting)
    computes what mmdet's encoder computes from the spatial_shapes tensor,
    on a padded batch; its reference points are mmdet's bit for bit."""
    model = _build(tiny_multiscale_cfg()).eval()
    packed = demo_mm_inputs(2, [[3, 96, 128], [3, 56, 72]], num_classes=4)
    data = model.data_preprocessor(packed, False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        enc_in, _ = model.pre_transformer(feats, data['data_samples'])
        sizes = [tuple(feat.shape[-2:]) for feat in feats]
        assert enc_in['spatial_shapes'].tolist() == [list(s) for s in sizes]
        assert (enc_in['valid_ratios'] < 1).any()  # the second is padded
        mmdet_points = DeformableDetrTransformerEncoder.\
            get_encoder_reference_points(enc_in['spatial_shapes'],
                                         enc_in['valid_ratios'], 'cpu')
        for shapes in (enc_in['spatial_shapes'], sizes):
            assert torch.equal(
                model.encoder.get_encoder_reference_points(
                    shapes, enc_in['valid_ratios'], 'cpu'), mmdet_points)
        memory = model.forward_encoder(**enc_in)['memory']
        memory_ints = model.forward_encoder(
            **dict(enc_in, spatial_shapes=sizes))['memory']
    torch.testing.assert_close(memory_ints, memory, rtol=0, atol=1e-6)


@pytest.mark.parametrize('with_smca', [False, True])
def test_multiscale_images_of_different_sizes(with_smca):
    """A 24x40 image (1x2 cells at stride 16, smaller than 1 cell at stride
    32 in R50 terms) padded next to a 128x144 one trains and predicts."""
    model = _build(tiny_multiscale_cfg(with_smca=with_smca))
    packed = demo_mm_inputs(2, [[3, 128, 144], [3, 24, 40]], num_classes=4)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v).all() for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    data = model.data_preprocessor(packed, False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert all(torch.isfinite(r.pred_instances.bboxes).all()
               for r in results)
    small = results[1].pred_instances.bboxes
    assert (small[:, 2] <= 40 + 1e-4).all() and (small[:, 3] <= 24 +
                                                 1e-4).all()


# ---------------------------------------------------------------- DN

@pytest.mark.parametrize('kind', ['ss', 'ms'])
@pytest.mark.parametrize('with_smca', [False, True])
def test_dn_losses_present_finite_and_reach_the_label_embedding(
        kind, with_smca):
    model = _build(MODELS_UNDER_TEST[kind](with_smca=with_smca,
                                           with_dn=True))
    losses = model.loss(torch.rand(2, 3, 96, 112),
                        [det_sample(**TWO_GT), det_sample(**ONE_GT)])
    num_layers = len(model.decoder.layers)
    names = {'loss_cls', 'loss_bbox', 'loss_iou'}
    expected = set(names) | {'dn_' + n for n in names}
    for layer in range(num_layers - 1):
        expected |= {f'd{layer}.{n}' for n in names}
        expected |= {f'd{layer}.dn_{n}' for n in names}
    assert set(losses) == expected
    for key, value in losses.items():
        assert torch.isfinite(value).all() and value.item() > 0, key
    sum(losses.values()).backward()
    assert model.dn_query_generator.label_embedding.weight.grad.abs().max(
    ) > 0


@pytest.mark.parametrize('kind', ['ss', 'ms'])
@pytest.mark.parametrize('empty', ['all', 'one'])
def test_dn_with_empty_ground_truth(kind, empty):
    model = _build(MODELS_UNDER_TEST[kind](with_dn=True))
    first = det_sample() if empty == 'all' else det_sample(**TWO_GT)
    losses = model.loss(torch.rand(2, 3, 96, 112), [first, det_sample()])
    assert 'dn_loss_cls' in losses
    for key, value in losses.items():
        assert torch.isfinite(value).all(), key
        if empty == 'all' and 'cls' not in key:
            assert value.item() == 0, key
    sum(v.sum() for v in losses.values()).backward()


def _decoder_run(model, dn_query, dn_ref, dn_mask, img, samples):
    """Decoder hidden states for given denoising queries."""
    with torch.no_grad():
        enc_in, dec_in = model.pre_transformer(model.extract_feat(img),
                                               samples)
        enc_out = model.forward_encoder(**enc_in)
        dec = model.pre_decoder(**enc_out)[0]  # eval: matching only
        dec['query'] = torch.cat([dn_query, dec['query']], 1)
        dec['reference_points_unact'] = torch.cat(
            [dn_ref, dec['reference_points_unact']], 1)
        dec['dn_mask'] = dn_mask
        dec_in.update(dec)
        return model.forward_decoder(**dec_in)['hidden_states']


@pytest.mark.parametrize('kind', ['ss', 'ms'])
def test_dn_attention_mask_keeps_groups_and_matching_apart(kind):
    """Matching queries do not see DN queries; DN groups do not see each
    other (a change of group 1 changes group 1 only)."""
    model = _build(MODELS_UNDER_TEST[kind](with_smca=True, with_dn=True))
    samples = [det_sample(**TWO_GT), det_sample(**ONE_GT)]
    torch.manual_seed(1)
    dn_query, dn_ref, dn_mask, dn_meta = model.dn_query_generator(samples)
    assert dn_meta['num_denoising_groups'] == 3  # 6 dn queries / 2 GT
    group = 2 * 2  # 2 x max GT per image (positive + negative)
    num_dn = dn_meta['num_denoising_queries']
    assert num_dn == 3 * group
    model.eval()
    img = torch.rand(2, 3, 96, 112)
    base = _decoder_run(model, dn_query, dn_ref, dn_mask, img, samples)
    changed_query, changed_ref = dn_query.clone(), dn_ref.clone()
    changed_query[:, group:2 * group] += torch.randn(2, group, 32)
    changed_ref[:, group:2 * group] += 0.5
    out = _decoder_run(model, changed_query, changed_ref, dn_mask, img,
                       samples)
    torch.testing.assert_close(out[:, :, :group], base[:, :, :group])
    torch.testing.assert_close(out[:, :, 2 * group:], base[:, :, 2 * group:])
    assert (out[:, :, group:2 * group] -
            base[:, :, group:2 * group]).abs().max() > 1e-3
    # without the mask, the change leaks into every query
    leak = _decoder_run(model, changed_query, changed_ref, None, img,
                        samples)
    base_open = _decoder_run(model, dn_query, dn_ref, None, img, samples)
    assert (leak[:, :, num_dn:] - base_open[:, :, num_dn:]).abs().max() > 0


@pytest.mark.parametrize('kind', ['ss', 'ms'])
def test_dn_is_dropped_at_test_time(kind, monkeypatch):
    model = _build(MODELS_UNDER_TEST[kind](with_dn=True)).eval()

    def refuse(*args, **kwargs):
        raise AssertionError('denoising queries built at test time')

    monkeypatch.setattr(type(model.dn_query_generator), '__call__', refuse)
    img = torch.rand(1, 3, 96, 112)
    with torch.no_grad():
        heads = model.forward_transformer(model.extract_feat(img),
                                          [det_sample(**TWO_GT)])
        result = model.predict(img, [det_sample(**TWO_GT)])[0]
    assert heads['hidden_states'].shape[2] == model.num_queries
    assert 'dn_meta' not in heads
    assert len(result.pred_instances.bboxes) == model.num_queries


def test_dn_cfg_keys_set_by_the_detector_are_refused():
    cfg = tiny_model_cfg(with_dn=True)
    cfg.dn_cfg = dict(cfg.dn_cfg, num_classes=4)
    with pytest.raises(ValueError, match='dn_cfg.num_classes'):
        MODELS.build(cfg)
