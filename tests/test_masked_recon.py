"""Masked reconstruction upstream (Mockingjay / TERA): masking statistics, inference without masking,
padding independence, loss positions, learning, save/load, probe points and lengths."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import repr_asr
from repr_asr import MaskedReconConfig, MaskedReconModel, ReprFeatureExtractor
from repr_asr.models.masked_recon.modeling_masked_recon import masked_l1, sample_time_spans

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def tiny_model(**overrides) -> MaskedReconModel:
    torch.manual_seed(0)
    return MaskedReconModel(MaskedReconConfig(**{**TINY, **overrides}))


def speechy(samples: int, seed: int) -> torch.Tensor:
    """A chirp with noise: changing spectra, so reconstruction has something to learn."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    f0 = 150 + 100 * seed
    wave = torch.sin(2 * math.pi * (f0 * t + 400 * t**2)) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t))
    return wave + 0.05 * torch.randn(samples, generator=g)


def padded_batch(lengths, seed=0):
    width = max(lengths)
    values = torch.zeros(len(lengths), width)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        values[i, :n] = speechy(n, seed + i)
        mask[i, :n] = 1
    return values, mask


# ---- masking statistics -----------------------------------------------------------------------


def test_time_spans_fraction_length_and_no_padding():
    torch.manual_seed(0)
    lengths = torch.tensor([300, 171, 64, 7, 3, 1])
    span_id = sample_time_spans(lengths, 320, proportion=0.15, span=7)
    real = torch.arange(320)[None] < lengths[:, None]
    assert not (span_id[~real] >= 0).any(), "a padded frame was masked"
    for b, length in enumerate(lengths.tolist()):
        expected = min(round(length * 0.15 / 7), length // 7)
        ids = span_id[b][span_id[b] >= 0]
        assert len(ids.unique()) == expected
        for s in ids.unique():  # every span: 7 consecutive frames, so spans never overlap
            where = (span_id[b] == s).nonzero().flatten()
            assert len(where) == 7 and (where.diff() == 1).all()


def test_time_mask_fraction_and_80_10_10_over_many_draws():
    model = tiny_model(freq_mask_proportion=0.0, noise_proportion=0.0)
    lengths = torch.tensor([200, 143, 97, 60])
    features = torch.randn(4, 200, 80) * (torch.arange(200)[None, :, None] < lengths[:, None, None])
    torch.manual_seed(1)
    masked_frames = real_frames = 0
    actions = torch.zeros(3)
    first_frames_masked = torch.zeros(200)
    for _ in range(300):
        m = model.mask_features(features, lengths)
        real = torch.arange(200)[None] < lengths[:, None]
        assert not m.time_mask[~real].any() and not m.loss_mask[~real].any()
        assert torch.equal(m.inputs[~real], features[~real]), "padding was changed"
        masked_frames += int(m.time_mask.sum())
        real_frames += int(real.sum())
        actions += torch.bincount(m.time_action[m.time_mask], minlength=3)
        first_frames_masked += m.time_mask[0].float()
        zeroed = m.time_action == 0
        assert (m.inputs[zeroed] == 0).all()
        kept = m.time_action == 2
        assert torch.equal(m.inputs[kept], features[kept])
        # every dim of a time-masked frame is a loss position, nothing else (no freq masking here)
        assert torch.equal(m.loss_mask, m.time_mask[..., None].expand_as(m.loss_mask))
    fraction = masked_frames / real_frames
    assert abs(fraction - 0.15) < 0.01, fraction
    split = actions / actions.sum()  # spans, counted by frame; 300 draws × ~12 spans per batch
    assert abs(split[0] - 0.8) < 0.04 and abs(split[1] - 0.1) < 0.03 and abs(split[2] - 0.1) < 0.03, split
    # spans land everywhere, edges included
    assert first_frames_masked[0] > 0 and first_frames_masked[199] > 0


def test_random_spans_take_real_frames_of_the_same_utterance():
    model = tiny_model(freq_mask_proportion=0.0, noise_proportion=0.0, mask_zero_prob=0.0, mask_random_prob=1.0)
    lengths = torch.tensor([120, 50])
    # frame t of utterance b is the constant 1000 * b + t, so a replacement says where it came from
    features = (1000 * torch.arange(2)[:, None, None] + torch.arange(120)[None, :, None]).float().expand(2, 120, 80)
    features = features * (torch.arange(120)[None, :, None] < lengths[:, None, None])
    torch.manual_seed(2)
    m = model.mask_features(features.clone(), lengths)
    assert (m.time_action[m.time_mask] == 1).all()
    for b in range(2):
        source = m.inputs[b][m.time_mask[b]][:, 0] - 1000 * b
        assert ((source >= 0) & (source < lengths[b])).all()


def test_frequency_band_and_noise():
    model = tiny_model(mask_proportion=0.0, freq_mask_proportion=0.2, noise_proportion=0.5, noise_std=0.2,
                       downsample_rate=2)
    lengths = torch.tensor([40, 25])
    real = torch.arange(40)[None] < lengths[:, None]
    features = torch.randn(2, 40, 160) * real[..., None]
    torch.manual_seed(3)
    widths, noised = [], []
    for _ in range(400):
        m = model.mask_features(features, lengths)
        bands = m.band_mask.view(2, 2, 80)  # (B, stacked frames, n_mels): same band in each sub-frame
        assert torch.equal(bands[:, 0], bands[:, 1])
        for b in range(2):
            where = bands[b, 0].nonzero().flatten()
            widths.append(len(where))
            if len(where):
                assert (where.diff() == 1).all(), "the band is contiguous"
        assert torch.equal(m.loss_mask, m.band_mask[:, None, :] & real[..., None])
        assert torch.equal(m.inputs[~real], features[~real])
        clean_rows = ~m.noised
        zeroed = m.band_mask[:, None, :] & real[..., None]
        assert (m.inputs[clean_rows][zeroed[clean_rows]] == 0).all()
        noised.append(m.noised.float().mean().item())
    widths = torch.tensor(widths, dtype=torch.float)
    assert widths.max() <= 16 and widths.min() == 0
    assert abs(widths.mean() / 80 - 0.1) < 0.01  # uniform 0..16 bands: mean 8 of 80
    assert abs(np.mean(noised) - 0.5) < 0.05
    noisy = m.inputs - features.masked_fill(m.band_mask[:, None, :] & real[..., None], 0.0)
    for b in range(2):
        if m.noised[b]:
            assert abs(noisy[b][real[b]].std().item() - 0.2) < 0.02


# ---- inference, padding, lengths, probes ---------------------------------------------------------


def test_no_masking_at_inference_and_deterministic_in_eval():
    model = tiny_model(hidden_dropout=0.0, attention_dropout=0.0)
    values, mask = padded_batch([16000, 12000])
    model.eval()
    first = model(values, attention_mask=mask, output_hidden_states=True)
    again = model(values, attention_mask=mask, output_hidden_states=True)
    assert first.loss is None and first.metrics is None
    for a, b in zip(first.hidden_states, again.hidden_states):
        assert torch.equal(a, b)
    clean, lengths = model.log_mel(values, mask)
    assert torch.allclose(first.last_hidden_state, model.encode(clean, lengths)[-1])
    model.train()  # train mode without dropout: still no masking unless compute_loss=True
    train_out = model(values, attention_mask=mask)
    assert torch.allclose(train_out.last_hidden_state, first.last_hidden_state, atol=1e-6)
    trained = model(values, attention_mask=mask, compute_loss=True)
    assert not torch.allclose(trained.last_hidden_state, first.last_hidden_state, atol=1e-3)


@pytest.mark.parametrize("overrides", [{}, {"downsample_rate": 3, "pre_layer_norm": True, "position_embedding": "learned"}])
def test_padding_never_leaks(overrides):
    model = tiny_model(**overrides).eval()
    lengths = [16000, 9377, 2500, 200]
    values, mask = padded_batch(lengths, seed=5)
    values = values + 3.0 * (1 - mask)  # padding that is not even zero
    batched = model(values, attention_mask=mask, output_hidden_states=True)
    for i, n in enumerate(lengths):
        alone = model(values[i : i + 1, :n], output_hidden_states=True)
        frames = int(alone.frame_lengths[0])
        assert int(batched.frame_lengths[i]) == frames
        for name, a, b in zip(model.probe_points, alone.hidden_states, batched.hidden_states):
            assert torch.allclose(a[0], b[i, :frames], atol=1e-5, rtol=1e-5), (name, i)
            assert (b[i, frames:] == 0).all()


def test_frame_lengths_and_probe_points():
    model = tiny_model(num_hidden_layers=3, downsample_rate=3).eval()
    assert model.probe_points == ["input", "layer_1", "layer_2", "layer_3"]
    assert model.default_probe_point == "layer_3"
    assert model.probe_dims() == {p: 32 for p in model.probe_points}
    assert model.samples_per_frame() == 480 and model.frame_rate("input") == pytest.approx(16000 / 480)
    samples = torch.tensor([16000, 160, 0, 479, 480])
    mel = 1 + samples // 160
    assert model.frame_lengths(samples).tolist() == ((mel + 2) // 3).tolist()
    values, mask = padded_batch([16000, 4000])
    out = model(values, attention_mask=mask, output_hidden_states=True)
    assert out.frame_lengths.tolist() == model.frame_lengths(torch.tensor([16000, 4000])).tolist()
    assert len(out.hidden_states) == 4
    for h in out.hidden_states:
        assert h.shape == (2, math.ceil(101 / 3), 32)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    # the input probe is what enters the Transformer: a different tensor from every layer
    assert not torch.allclose(out.hidden_states[0], out.hidden_states[1])
    picked = tiny_model(num_hidden_layers=3, probe_points=["layer_1", "input"], default_probe_point="layer_1").eval()
    out = picked(values, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == 2 and torch.equal(out.hidden_states[0], out.last_hidden_state)


def test_empty_and_very_short_utterances():
    model = tiny_model().eval()
    values = torch.randn(3, 1600)
    mask = torch.zeros(3, 1600, dtype=torch.long)
    mask[0] = 1
    mask[1, :100] = 1  # shorter than one STFT half-window
    out = model(values, attention_mask=mask)
    assert out.frame_lengths.tolist() == [11, 1, 1]
    assert torch.isfinite(out.last_hidden_state).all()
    model.train()
    loss = model(values, attention_mask=mask, compute_loss=True).loss
    assert torch.isfinite(loss)


# ---- the loss ------------------------------------------------------------------------------------


def test_loss_only_over_masked_positions():
    model = tiny_model().eval()  # eval: no dropout, so the composed pieces equal forward exactly
    values, mask = padded_batch([16000, 11000])
    torch.manual_seed(4)
    out = model(values, attention_mask=mask, compute_loss=True)
    clean, lengths = model.log_mel(values, mask)
    torch.manual_seed(4)
    masked = model.mask_features(clean, lengths)
    predicted = model.reconstruction_head(model.encode(masked.inputs, lengths)[-1])
    loss = masked_l1(predicted, clean, masked.loss_mask)
    assert torch.allclose(loss, out.loss)
    assert masked.loss_mask.any() and (~masked.loss_mask).any()
    changed_elsewhere = clean + 5.0 * (~masked.loss_mask)
    assert torch.allclose(masked_l1(predicted, changed_elsewhere, masked.loss_mask), loss)
    changed_inside = clean + 5.0 * masked.loss_mask
    assert not torch.allclose(masked_l1(predicted, changed_inside, masked.loss_mask), loss)
    metrics = out.metrics
    assert set(metrics) >= {"l1_masked", "l1_unmasked", "time_mask_fraction", "freq_mask_fraction"}
    assert 0.05 < float(metrics["time_mask_fraction"]) < 0.25
    assert all(v.ndim == 0 for v in metrics.values())


def test_loss_falls_over_a_few_steps():
    model = tiny_model(noise_proportion=0.0).train()
    values, mask = padded_batch([8000, 6000], seed=7)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        torch.manual_seed(0)  # the same masks every step: the loss measures learning only
        loss = model(values, attention_mask=mask, compute_loss=True, speaker_ids=torch.tensor([0, 1])).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ---- config and persistence ----------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    model = tiny_model(downsample_rate=3, position_embedding="learned", max_position_embeddings=64).eval()
    model.save_pretrained(tmp_path)
    ReprFeatureExtractor().save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded) is MaskedReconModel and isinstance(extractor, ReprFeatureExtractor)
    saved, reloaded = model.config.to_dict(), loaded.config.to_dict()
    for d in (saved, reloaded):
        d.pop("_name_or_path")
    assert saved == reloaded
    waves = [speechy(16000, 1).numpy(), speechy(7000, 2).numpy()]
    batch = extractor(waves, sampling_rate=16000, return_tensors="pt")
    a = model(**batch, output_hidden_states=True)
    b = loaded(**batch, output_hidden_states=True)
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert torch.equal(x, y)
    too_long = torch.randn(1, 64 * 3 * 160 + 480)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        loaded(too_long)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "hidden_size"),
        ({"mask_zero_prob": 0.9, "mask_random_prob": 0.2}, "mask_random_prob"),
        ({"freq_mask_proportion": 1.5}, "freq_mask_proportion"),
        ({"downsample_rate": 0}, "downsample_rate"),
        ({"position_embedding": "rotary"}, "position_embedding"),
        ({"probe_points": ["input", "layer_9"]}, "probe_points"),
        ({"default_probe_point": "nowhere"}, "default_probe_point"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"MaskedReconConfig.{field}"):
        MaskedReconConfig(**{**TINY, **kwargs})


def test_paper_scale_defaults_and_yaml_configs():
    import pathlib

    import yaml

    config = MaskedReconConfig()
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (3, 768, 12, 3072)
    assert config.probe_points == ["input", "layer_1", "layer_2", "layer_3"]
    root = pathlib.Path(repr_asr.__file__).parent.parent / "configs" / "pretrain"
    for name in ("masked_recon.yaml", "masked_recon_tiny.yaml"):
        spec = yaml.safe_load((root / name).read_text())
        assert spec["model_type"] == "masked_recon"
        MaskedReconConfig(**spec["model"])  # every key is a valid, consistent field
        assert {"max_steps", "batch_size", "learning_rate"} <= set(spec["training"])
        crop = spec["data"].get("crop_samples", spec["data"].get("crop_seconds"))
        assert crop is not None and crop > 0
