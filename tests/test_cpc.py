"""CPC upstream: lengths, padding invariance, causality, InfoNCE, negatives, Auto round trip, configs."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

import repr_asr  # noqa: F401  (registers the Auto classes)
from repr_asr import CPCConfig, CPCModel, ReprFeatureExtractor
from repr_asr.models.cpc import training_step_flops

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"


def tiny_config(**overrides):
    kwargs = dict(conv_dim=16, context_hidden_size=24, prediction_steps=3, num_negatives=6)
    kwargs.update(overrides)
    return CPCConfig(**kwargs)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return CPCModel(tiny_config(**overrides)).eval()


def expected_frames(samples, config):
    """Conv arithmetic written out independently of the model."""
    frames = samples
    for kernel, stride, padding in zip(config.conv_kernel, config.conv_stride, config.conv_padding):
        frames = max(0, (frames + 2 * padding - kernel) // stride + 1)
    return frames


def last_sample_read(frame, config):
    """Index of the last input sample that output frame ``frame`` depends on (right edge of its field)."""
    position = frame
    for kernel, stride, padding in reversed(list(zip(config.conv_kernel, config.conv_stride, config.conv_padding))):
        position = position * stride - padding + kernel - 1
    return position


# ----- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(conv_stride=[5, 4, 2, 2]), "conv_stride has 4 entries"),
        (dict(conv_padding=[3, 2, 1, 1, 9]), "conv_padding[4]"),
        (dict(context_type="transformer"), "context_type"),
        (dict(negative_sampling="corpus"), "negative_sampling"),
        (dict(num_negatives=0), "num_negatives"),
        (dict(probe_points=["enc", "bottleneck"]), "probe_points"),
        (dict(probe_points=["enc"]), "default_probe_point"),
        (dict(predictor_dropout=1.0), "predictor_dropout"),
        (dict(predictor_type="transformer", context_hidden_size=24, predictor_heads=5), "predictor_heads"),
    ],
)
def test_config_rejects_bad_fields_by_name(overrides, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        CPCConfig(**overrides)


def test_default_frame_rate_is_100_hz():
    model = CPCModel(tiny_config())
    assert model.samples_per_frame("enc") == model.samples_per_frame("ctx") == 160
    assert model.frame_rate() == 100.0
    assert model.probe_dims() == {"enc": 16, "ctx": 24}


def test_probe_points_are_those_of_the_config():
    model = tiny_model(probe_points=["ctx"])
    out = model(torch.randn(2, 1600), output_hidden_states=True)
    assert len(out.hidden_states) == 1 and torch.equal(out.hidden_states[0], out.last_hidden_state)
    with pytest.raises(ValueError, match=r"CPCModel has no probe point 'enc'; it has \['ctx'\]"):
        model.frame_lengths(torch.tensor([1600]), "enc")
    with pytest.raises(ValueError, match="no probe point 'enc'"):
        model.frame_rate("enc")


# ----- lengths ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layout",
    [
        {},  # the modified-CPC default: kernels 10/8/4/4/4, strides 5/4/2/2/2, padding 3/2/1/1/1
        dict(conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2], conv_padding=[0, 0, 0]),  # unpadded, wav2vec-like
    ],
)
def test_frame_lengths_are_conv_arithmetic_and_match_outputs(layout):
    model = tiny_model(**layout)
    config = model.config
    lengths = [0, 1, 5, 159, 160, 161, 1000, 3333, 4800]
    computed = model.frame_lengths_at(torch.tensor(lengths), "ctx").tolist()
    assert computed == [expected_frames(n, config) for n in lengths]
    assert model.frame_lengths_at(torch.tensor([0]), "enc").tolist() == [0]  # zero-length input is clamped, not negative
    for n in lengths:
        if computed[lengths.index(n)] == 0:
            continue
        out = model(torch.randn(1, n), output_hidden_states=True)
        assert out.last_hidden_state.shape[1] == computed[lengths.index(n)]
        assert out.frame_lengths.tolist() == [computed[lengths.index(n)]]
        assert all(h.shape[1] == computed[lengths.index(n)] for h in out.hidden_states)
    if not layout:
        assert model.frame_lengths_at(torch.tensor([160 * 7, 20480]), "enc").tolist() == [7, 128]


def test_empty_and_too_short_inputs_give_zero_frames():
    model = tiny_model()
    waveform = torch.randn(3, 1600)
    mask = torch.zeros(3, 1600, dtype=torch.long)
    mask[0, :1600] = 1
    mask[1, :2] = 1  # shorter than the first kernel
    out = model(waveform, attention_mask=mask, compute_loss=True)
    assert out.frame_lengths.tolist() == [10, 0, 0]
    assert torch.isfinite(out.loss)
    assert out.last_hidden_state[1:].abs().sum() == 0  # nothing real, nothing written
    tiny = model(torch.randn(2, 3))  # a whole batch shorter than the encoder's minimum
    assert tiny.frame_lengths.tolist() == [0, 0]


# ----- padding and causality ------------------------------------------------------------------------
@pytest.mark.parametrize("context_type", ["lstm", "gru"])
def test_padded_batch_equals_one_by_one(context_type):
    model = tiny_model(context_type=context_type)
    lengths = [4800, 3001, 1234]
    torch.manual_seed(1)
    waves = [torch.randn(n) for n in lengths]
    batch = torch.randn(len(lengths), max(lengths)) * 5.0  # garbage, not zeros, in the padding
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
        mask[i, : len(w)] = 1
    with torch.no_grad():
        batched = model(batch, attention_mask=mask, output_hidden_states=True)
        for i, w in enumerate(waves):
            alone = model(w[None], output_hidden_states=True)
            frames = int(batched.frame_lengths[i])
            assert frames == alone.last_hidden_state.shape[1] == model.frame_lengths_at(torch.tensor([len(w)]), "ctx").item()
            for probe, (b, a) in zip(model.probe_points, zip(batched.hidden_states, alone.hidden_states)):
                torch.testing.assert_close(b[i, :frames], a[0], atol=1e-5, rtol=1e-4, msg=f"probe {probe}, item {i}")


def test_context_is_causal():
    model = tiny_model()
    config = model.config
    torch.manual_seed(2)
    x = torch.randn(1, 4800)
    change_from = 2500
    y = x.clone()
    y[:, change_from:] = torch.randn(1, 4800 - change_from)
    with torch.no_grad():
        a = model(x, output_hidden_states=True).hidden_states
        b = model(y, output_hidden_states=True).hidden_states
    untouched = [f for f in range(a[0].shape[1]) if last_sample_read(f, config) < change_from]
    assert len(untouched) > 5
    cut = untouched[-1] + 1
    for name, ha, hb in zip(model.probe_points, a, b):
        torch.testing.assert_close(ha[:, :cut], hb[:, :cut], msg=f"probe {name} saw the future")
        assert not torch.allclose(ha[:, cut:], hb[:, cut:]), f"probe {name} ignores its input"
    # The context frame right after the cut changes even though its own encoder frame alone could not
    # tell it from before: the recurrence carries the change forward only, never backward.
    assert not torch.allclose(a[1][:, -1], b[1][:, -1])


TRANSFORMER = dict(predictor_type="transformer", predictor_heads=4, predictor_ffn_dim=32)


@pytest.mark.parametrize("predictor", [{}, TRANSFORMER], ids=["linear", "transformer"])
def test_predictions_never_see_the_frames_they_predict(predictor):
    model = tiny_model(**predictor)
    torch.manual_seed(6)
    ctx = torch.randn(2, 20, 24)
    changed = ctx.clone()
    changed[:, 12:] = torch.randn(2, 8, 24)
    with torch.no_grad():
        a, b = model.predict(ctx), model.predict(changed)
    assert a.shape == (2, 20, 3, 16)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


# ----- InfoNCE -----------------------------------------------------------------------------------
@pytest.mark.parametrize("predictor", [{}, TRANSFORMER], ids=["linear", "transformer"])
def test_infonce_at_init_and_metrics(predictor):
    model = tiny_model(num_negatives=20, prediction_steps=4, **predictor)
    torch.manual_seed(3)
    out = model(torch.randn(4, 3200), compute_loss=True, speaker_ids=torch.tensor([0, 0, 1, 2]))
    chance = math.log(20 + 1)
    assert abs(out.loss.item() - chance) < 0.25 * chance  # small predictions: every candidate nearly equal
    assert set(out.metrics) == {"loss", "accuracy", "acc_step_1", "acc_step_2", "acc_step_3", "acc_step_4"}
    for name, value in out.metrics.items():
        assert value.dim() == 0 and not value.requires_grad, name
        if name != "loss":
            assert 0.0 <= value.item() <= 1.0, name


def test_infonce_falls_when_optimised_on_a_fixed_batch():
    model = tiny_model(seed=4, negative_sampling="utterance").train()
    t = torch.arange(3200) / 16000.0
    # Two chirps: every frame differs from the others of its utterance, and the future is predictable.
    waves = torch.stack([torch.sin(2 * math.pi * (f0 * t + 0.5 * rate * t**2)) for f0, rate in ((200.0, 8000.0), (3000.0, -10000.0))])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, accuracies = [], []
    for step in range(25):
        torch.manual_seed(100 + step)
        out = model(waves, compute_loss=True)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        losses.append(out.loss.item())
        accuracies.append(out.metrics["accuracy"].item())
    assert sum(losses[-3:]) / 3 < 0.85 * sum(losses[:3]) / 3, losses
    assert sum(accuracies[-5:]) / 5 > sum(accuracies[:3]) / 3 + 0.1, accuracies


def test_loss_ignores_padding():
    model = tiny_model(negative_sampling="batch")
    waveform = torch.randn(2, 3200, requires_grad=True)
    mask = torch.ones(2, 3200, dtype=torch.long)
    mask[1, 1700:] = 0
    out = model(waveform, attention_mask=mask, compute_loss=True)
    out.loss.backward()
    assert waveform.grad[1, 1700:].abs().sum() == 0
    assert waveform.grad[1, :1700].abs().sum() > 0


def test_negatives_are_real_frames_from_the_right_pool():
    lengths = torch.tensor([40, 3, 0, 25])
    speakers = torch.tensor([7, 7, 7, -1])
    frames = 40
    for mode in ("utterance", "speaker", "batch"):
        model = tiny_model(negative_sampling=mode, num_negatives=64)
        torch.manual_seed(5)
        utterance, frame = model.sample_negatives(lengths, frames, speakers)
        assert utterance.shape == frame.shape == (4, frames, 64)
        for row in (0, 1, 3):  # row 2 has no real frame and no valid prediction
            assert (frame[row] < lengths[utterance[row]]).all(), f"{mode}: padding drawn as a negative"
            assert (lengths[utterance[row]] > 0).all()
            drawn = set(utterance[row].unique().tolist())
            if mode == "utterance":
                assert drawn == {row}
            elif mode == "speaker":
                assert drawn == ({0, 1} if row in (0, 1) else {3})  # speaker 7's real frames; -1 is unknown
            else:
                assert drawn == {0, 1, 3}
        if mode == "batch":  # uniform over the 68 real frames: utterance 0 holds 40 of them
            share = (utterance[0] == 0).float().mean().item()
            assert abs(share - 40 / 68) < 0.05


def test_speaker_negatives_without_speaker_ids_fall_back_to_the_utterance():
    model = tiny_model(negative_sampling="speaker")
    utterance, _ = model.sample_negatives(torch.tensor([10, 10]), 10, None)
    assert (utterance == torch.arange(2)[:, None, None]).all()


# ----- outputs and persistence --------------------------------------------------------------------
def test_hidden_states_follow_probe_points_order():
    model = tiny_model(probe_points=["ctx", "enc"], default_probe_point="enc")
    out = model(torch.randn(2, 1600), output_hidden_states=True)
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, 10, 24), (2, 10, 16)]
    assert out.last_hidden_state is out.hidden_states[1]
    assert model(torch.randn(2, 1600)).hidden_states is None


def test_save_load_round_trip_through_auto_classes(tmp_path):
    model = tiny_model(context_type="gru", context_layers=2, **TRANSFORMER)
    model.save_pretrained(tmp_path)
    ReprFeatureExtractor().save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "cpc"
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, CPCModel) and isinstance(extractor, ReprFeatureExtractor)
    assert loaded.config.to_dict()["conv_kernel"] == model.config.conv_kernel
    batch = extractor([torch.randn(2000).numpy(), torch.randn(1200).numpy()], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        a = model(**batch, output_hidden_states=True)
        b = loaded(**batch, output_hidden_states=True)
    assert a.frame_lengths.tolist() == b.frame_lengths.tolist() == [12, 7]
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(ha, hb)
    reloaded = loaded.state_dict()
    for name, tensor in model.state_dict().items():  # the predictors too, which features never use
        torch.testing.assert_close(reloaded[name], tensor, msg=name)


def test_trainer_batch_with_speaker_ids_is_accepted():
    model = tiny_model()
    batch = {
        "input_values": torch.randn(2, 1600),
        "attention_mask": torch.ones(2, 1600, dtype=torch.long),
        "speaker_ids": torch.tensor([3, 3]),
    }
    out = model(**batch, compute_loss=True)
    assert out.loss.requires_grad


# ----- shipped configs ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cpc.yaml", "cpc_tiny.yaml"])
def test_shipped_configs_build(name):
    spec = yaml.safe_load((CONFIGS / name).read_text())
    assert spec["model_type"] == "cpc"
    config = CPCConfig(**spec["model"])
    assert config.samples_per_frame == 160
    assert {"max_steps", "batch_size", "learning_rate"} <= set(spec["training"])
    assert spec["data"]["crop_samples"] > 0
    if name == "cpc.yaml":  # the published modified-CPC sizes
        assert (config.conv_dim, config.context_hidden_size, config.prediction_steps, config.num_negatives) == (256, 256, 12, 128)
        assert spec["data"]["crop_samples"] == 20480


def test_flop_counter_sees_every_part():
    small = training_step_flops(tiny_config(), batch_size=2, num_samples=1600)
    wider_context = training_step_flops(tiny_config(context_hidden_size=48), batch_size=2, num_samples=1600)
    more_steps = training_step_flops(tiny_config(prediction_steps=6), batch_size=2, num_samples=1600)
    assert 0 < small < wider_context and small < more_steps
