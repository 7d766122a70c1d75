"""WaveNetAEModel: shapes and frame counts, padding invariance, loss and metrics, save/load through the
Auto classes, optimisation, resynthesis, config validation."""

import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import repr_asr  # noqa: F401  (registers the Auto classes)
from repr_asr import ReprFeatureExtractor, WaveNetAEConfig, WaveNetAEModel

TINY = dict(
    encoder_hidden_size=24, encoder_num_ff_layers=2, latent_dim=8, codebook_size=16, conditioning_channels=12,
    decoder_layers=4, decoder_dilation_cycles=2, residual_channels=8, gate_channels=8, skip_channels=8,
    decoder_output_channels=16,
)


def tiny(**kw):
    torch.manual_seed(0)
    return WaveNetAEModel(WaveNetAEConfig(**{**TINY, **kw}))


def speechlike(batch, samples, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    f0 = 100 + 100 * torch.rand(batch, 1, generator=g)
    wav = 0.3 * torch.sin(2 * torch.pi * f0 * t) * torch.sin(2 * torch.pi * 3 * t) + 0.02 * torch.randn(batch, samples, generator=g)
    return wav.float()


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 8000, 16000])
def test_one_frame_per_320_samples(samples):
    model = tiny().eval()
    out = model(speechlike(1, samples), output_hidden_states=True)
    assert out.last_hidden_state.shape == (1, 1 + samples // 320, 8)
    assert out.frame_lengths.tolist() == [1 + samples // 320]
    assert model.frame_lengths(torch.tensor([samples])).tolist() == [1 + samples // 320]
    assert model.frame_rate() == 50.0 and model.samples_per_frame("enc") == 320


def test_lower_frame_rates():
    for down, rate in ((4, 25.0), (8, 12.5)):
        model = tiny(encoder_downsampling=down).eval()
        out = model(speechlike(1, 16000))
        assert model.frame_rate() == rate
        assert out.last_hidden_state.shape[1] == 1 + 16000 // (160 * down) == int(model.frame_lengths(torch.tensor([16000])))


def test_hidden_states_order_and_shapes():
    model = tiny(bottleneck="vae").eval()
    out = model(speechlike(2, 4000), output_hidden_states=True)
    assert model.probe_points == ["enc", "proj", "bn", "cond"]
    dims = model.probe_dims()
    assert dims == {"enc": 24, "proj": 16, "bn": 8, "cond": 12}
    assert [tuple(h.shape) for h in out.hidden_states] == [(2, 13, dims[p]) for p in model.probe_points]
    assert torch.equal(out.last_hidden_state, out.hidden_states[2])
    assert out.loss is None and out.metrics is None
    cond_model = tiny(default_probe_point="cond").eval()
    assert cond_model(speechlike(1, 4000)).last_hidden_state.shape == (1, 13, 12)


def test_feature_extraction_never_runs_the_decoder():
    model = tiny().eval()
    calls = []
    model.decoder.register_forward_hook(lambda *a: calls.append(1))
    model(speechlike(1, 4000), output_hidden_states=True)
    assert calls == []
    model(speechlike(1, 4000), compute_loss=True)
    assert calls == [1]


@pytest.mark.parametrize("features", ["mfcc", "fbank", "waveform"])
def test_padding_invariance(features):
    model = tiny(input_features=features, bottleneck="none").eval()
    wav = speechlike(2, 12800, seed=1)
    short = 7000
    alone = model(wav[:1, :short], output_hidden_states=True)
    padded = wav.clone()
    padded[0, short:] = 0.7  # padding content must not matter
    mask = torch.ones_like(padded, dtype=torch.long)
    mask[0, short:] = 0
    batch = model(padded, attention_mask=mask, output_hidden_states=True)
    n = int(alone.frame_lengths[0])
    assert int(batch.frame_lengths[0]) == n == 1 + short // 320
    for a, b in zip(alone.hidden_states, batch.hidden_states):  # every latent, the last ones included
        torch.testing.assert_close(b[0, :n], a[0, :n], rtol=1e-4, atol=1e-4)
        assert torch.all(b[0, n:] == 0)
    # the full-length row equals its own lone result
    full = model(wav[1:], output_hidden_states=True)
    torch.testing.assert_close(batch.last_hidden_state[1], full.last_hidden_state[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("features", ["mfcc", "fbank"])
def test_near_silent_input_gives_bounded_encoder_input(features):
    # A quiet crop has a tiny feature variance; normalised over all its real frames, no value can exceed
    # sqrt(frames) (an earlier version left edge frames out of the statistics and blew them up 1000-fold).
    model = tiny(input_features=features).eval()
    wav = 1e-4 * speechlike(2, 3200, seed=2)
    wav[1] = speechlike(1, 3200, seed=3)[0]
    normalised, lengths = model._features(wav, torch.tensor([3200, 3200]))
    assert float(normalised.abs().max()) <= float(lengths.max()) ** 0.5 + 1e-3


def test_zero_length_utterance_is_clamped():
    model = tiny().eval()
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1] = 0
    out = model(speechlike(2, 4000), attention_mask=mask, compute_loss=True)
    assert out.frame_lengths.tolist() == [13, 1]
    assert torch.isfinite(out.loss) and torch.isfinite(out.last_hidden_state).all()


@pytest.mark.parametrize("bottleneck", ["vq", "vae", "none"])
def test_loss_and_metrics(bottleneck):
    model = tiny(bottleneck=bottleneck).train()
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 2500:] = 0
    out = model(speechlike(2, 4000), attention_mask=mask, compute_loss=True)
    m = out.metrics
    assert torch.isfinite(out.loss) and out.loss.dim() == 0
    assert m["bits_per_sample"] == pytest.approx(float(m["nll_nats"]) / 0.6931471805599453, rel=1e-5)
    assert 0 < float(m["nll_nats"]) < 10
    if bottleneck == "vq":
        assert {"vq_commit", "vq_codebook", "codebook_perplexity", "codebook_usage"} <= set(m)
        assert float(m["bitrate"]) == pytest.approx(4 * 50)  # log2(16) bits at 50 Hz
        assert 0 < float(m["codebook_usage"]) <= 1
    elif bottleneck == "vae":
        assert float(m["kl"]) >= 0
        assert float(m["bitrate"]) == pytest.approx(float(m["kl"]) / 0.6931471805599453 * 50, rel=1e-5)
    else:
        assert float(m["bitrate"]) == pytest.approx(8 * 32 * 50)
    out.loss.backward()
    enc_grad = sum(p.grad.abs().sum() for p in model.encoder.parameters())
    assert enc_grad > 0  # straight-through / reparameterisation reach the encoder


def test_loss_ignores_padded_samples():
    model = tiny(jitter_prob=0.0).eval()
    wav = speechlike(1, 3000)
    alone = model(wav, compute_loss=True).metrics["nll_nats"]
    padded = torch.cat([wav, torch.rand(1, 1000)], dim=1)
    mask = torch.cat([torch.ones(1, 3000), torch.zeros(1, 1000)], dim=1).long()
    batch = model(padded, attention_mask=mask, compute_loss=True).metrics["nll_nats"]
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)


def test_kl_warmup_schedule():
    model = tiny(bottleneck="vae", kl_weight=0.5, kl_warmup_steps=10)
    assert model.on_train_step(0)["kl_weight"] == 0.0
    assert model.on_train_step(5)["kl_weight"] == pytest.approx(0.25)
    assert model.on_train_step(50)["kl_weight"] == pytest.approx(0.5)
    out = model.train()(speechlike(1, 2000), compute_loss=True)
    assert float(out.metrics["kl_weight"]) == pytest.approx(0.5)


def test_optimisation_lowers_loss():
    model = tiny(jitter_prob=0.0, vq_dead_code_threshold=0.1).train()
    wav = speechlike(2, 1600)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(25):
        model.on_train_step(step)
        loss = model(wav, compute_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.25, losses


def test_save_load_round_trip(tmp_path):
    model = tiny(vq_ema=True, vq_dead_code_threshold=0.5, speaker_conditioning=True, speakers=["s1", "s2"]).train()
    wav = speechlike(2, 4000)
    ids = torch.tensor([0, 1])
    model(wav, speaker_ids=ids, compute_loss=True)  # moves EMA / usage buffers off their init
    model.on_train_step(1)
    model.eval()
    model.save_pretrained(tmp_path)
    ReprFeatureExtractor().save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is WaveNetAEModel and loaded.config.speakers == ["s1", "s2"]
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path), ReprFeatureExtractor)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    torch.manual_seed(1)
    out_a = model(wav, speaker_ids=ids, output_hidden_states=True, compute_loss=True)
    torch.manual_seed(1)
    out_b = loaded(wav, speaker_ids=ids, output_hidden_states=True, compute_loss=True)
    for x, y in zip(out_a.hidden_states, out_b.hidden_states):
        assert torch.equal(x, y)
    assert torch.equal(out_a.loss, out_b.loss)


def test_speaker_conditioning_and_resynthesis():
    model = tiny(speaker_conditioning=True, speakers=["a", "b"], speaker_embedding_dim=4).eval()
    with torch.no_grad():
        model.conditioning.speaker_embedding.weight.mul_(20.0)  # an untrained model barely listens to it
    wav = speechlike(1, 700)
    with pytest.raises(ValueError, match="speaker_ids"):
        model(wav, compute_loss=True)
    with pytest.raises(ValueError, match="out of range"):
        model(wav, speaker_ids=torch.tensor([2]), compute_loss=True)
    mask = torch.ones(1, 700, dtype=torch.long)
    mask[0, 600:] = 0
    g = torch.Generator().manual_seed(0)
    same = model.resynthesize(wav, mask, speaker_ids=torch.tensor([0]), temperature=0.0)
    other = model.resynthesize(wav, mask, speaker_ids=torch.tensor([1]), temperature=0.0)
    sampled = model.resynthesize(wav, mask, speaker_ids=torch.tensor([0]), generator=g)
    assert same.shape == other.shape == sampled.shape == (1, 700)
    assert same.abs().max() <= 1.0 and torch.all(same[0, 600:] == 0)
    assert not torch.equal(same[:, :600], other[:, :600])  # voice conversion changes the output
    # -1: the average training speaker, exactly a model whose only speaker has the mean embedding.
    average = model.resynthesize(wav, mask, speaker_ids=torch.tensor([-1]), temperature=0.0)
    with torch.no_grad():
        model.conditioning.speaker_embedding.weight[0] = model.conditioning.speaker_embedding.weight.mean(0)
    assert torch.equal(average, model.resynthesize(wav, mask, speaker_ids=torch.tensor([0]), temperature=0.0))
    with pytest.raises(ValueError, match="out of range"):
        model.resynthesize(wav, mask, speaker_ids=torch.tensor([-2]))


def test_resynthesis_greedy_matches_teacher_forced_argmax():
    model = tiny(jitter_prob=0.0).double().eval()
    wav = speechlike(1, 400).double()
    generated = model.resynthesize(wav, temperature=0.0)
    classes = repr_asr.mu_law_encode(generated.float())  # exact: decode then encode round-trips
    with torch.no_grad():
        enc = model.encode(wav, torch.tensor([400]))
        cond = model.decoder_condition(model.condition(enc["bn"], enc["lengths"]), None)[:, :2]
        prev = torch.nn.functional.pad(classes, (1, 0), value=128)[:, :640]
        prev = torch.nn.functional.pad(prev, (0, 640 - prev.shape[1]), value=128)
        logits = model.decoder.head(model.decoder(prev, cond))[:, :400]
    assert torch.equal(logits.argmax(-1), classes)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="bottleneck"):
        WaveNetAEConfig(bottleneck="gumbel")
    with pytest.raises(ValueError, match="encoder_downsampling"):
        WaveNetAEConfig(encoder_downsampling=3)
    with pytest.raises(ValueError, match="speakers"):
        WaveNetAEConfig(speaker_conditioning=True)
    with pytest.raises(ValueError, match="only apply to bottleneck='vq'"):
        WaveNetAEConfig(bottleneck="vae", vq_ema=True)
    with pytest.raises(ValueError, match="decoder_dilation_cycles"):
        WaveNetAEConfig(decoder_layers=5, decoder_dilation_cycles=2)
    with pytest.raises(ValueError, match="default_probe_point"):
        WaveNetAEConfig(default_probe_point="logits")
    config = WaveNetAEConfig()
    assert config.dilations == [2**i for i in range(10)] * 2 and config.samples_per_latent == 320


def test_documented_defaults_match_code():
    import inspect
    import re

    doc = WaveNetAEConfig.__doc__
    params = inspect.signature(WaveNetAEConfig.__init__).parameters
    documented = dict(re.findall(r"^\s{8}(\w+) \(`[^`]+`, defaults to `?([^`)]*)`?\)", doc, re.M))
    names = [n for n in params if n not in ("self", "kwargs")]
    assert set(names) == set(documented), set(names) ^ set(documented)
    config = WaveNetAEConfig()
    for name in names:
        assert repr(getattr(config, name)).replace("'", '"') == documented[name].replace("'", '"') or str(getattr(config, name)) == documented[name], name


@pytest.mark.parametrize("name", ["wavenet_vq", "wavenet_vae", "wavenet_ae", "wavenet_vq_tiny", "wavenet_vae_tiny", "wavenet_ae_tiny"])
def test_shipped_yaml_configs_build(name):
    from pathlib import Path

    from repr_asr.training.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / f"{name}.yaml"
    run = load_config(path)
    kwargs = dict(run.model)
    if kwargs.get("speaker_conditioning"):
        kwargs["speakers"] = ["spk1", "spk2"]  # the pretraining recipe fills them from the training split
    config = WaveNetAEConfig(**kwargs)
    assert run.model_type == "wavenet_ae" and config.samples_per_latent == 320
