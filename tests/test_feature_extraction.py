"""The shared feature extractor and the spectral baseline upstream."""

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import repr_asr
from repr_asr import AudioError, ReprFeatureExtractor, SpectralConfig, SpectralModel
from repr_asr.models import load_upstream


def test_padding_and_attention_mask():
    fe = ReprFeatureExtractor()
    a, b = np.random.randn(16000).astype(np.float32), np.random.randn(7000).astype(np.float32)
    batch = fe([a, b], sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (2, 16000)
    assert batch["attention_mask"].sum(-1).tolist() == [16000, 7000]
    np.testing.assert_array_equal(batch["input_values"][1, :7000].numpy(), b)
    assert torch.all(batch["input_values"][1, 7000:] == 0)


def test_single_utterance_is_batched():
    batch = ReprFeatureExtractor()(np.zeros(100, np.float32), sampling_rate=16000, return_tensors="pt")
    assert batch["input_values"].shape == (1, 100)


def test_normalisation_uses_real_samples_only():
    fe = ReprFeatureExtractor(do_normalize=True)
    short = (3.0 + 2.0 * np.random.randn(4000)).astype(np.float32)
    alone = fe(short, sampling_rate=16000)["input_values"][0]
    padded = fe([short, np.zeros(9000, np.float32)], sampling_rate=16000)["input_values"][0][:4000]
    np.testing.assert_allclose(alone, padded, atol=1e-6)
    assert abs(alone.mean()) < 1e-4 and abs(alone.std() - 1) < 1e-3


def test_wrong_sampling_rate_is_refused():
    fe = ReprFeatureExtractor()
    with pytest.raises(ValueError, match="8000 Hz.*16000"):
        fe(np.zeros(100, np.float32), sampling_rate=8000)
    with pytest.raises(ValueError, match="sampling_rate"):
        fe(np.zeros(100, np.float32))


def test_bad_arrays_are_refused():
    fe = ReprFeatureExtractor()
    with pytest.raises(AudioError, match="input 1.*NaN"):
        fe([np.zeros(10, np.float32), np.array([0.0, np.nan], np.float32)], sampling_rate=16000)
    with pytest.raises(AudioError, match="empty"):
        fe([np.zeros(0, np.float32)], sampling_rate=16000)


def test_round_trip_through_auto_class(tmp_path):
    ReprFeatureExtractor(do_normalize=True).save_pretrained(tmp_path)
    SpectralConfig().save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, ReprFeatureExtractor) and loaded.do_normalize


@pytest.mark.parametrize("kind,dim", [("fbank", 80), ("mfcc", 39)])
def test_spectral_upstream_padding_invariance(kind, dim):
    model = load_upstream(kind).eval()
    fe = ReprFeatureExtractor()
    a, b = np.random.randn(16000).astype(np.float32), np.random.randn(6000).astype(np.float32)
    batch = fe([a, b], sampling_rate=16000, return_tensors="pt")
    batch["input_values"][1, 6000:] = 0.5  # whatever the padding holds
    out = model(**batch, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 101, dim)
    assert out.frame_lengths.tolist() == [101, 38]
    assert model.frame_rate() == 100.0
    alone = model(torch.from_numpy(b)[None]).last_hidden_state[0]
    # Zero-padded centred windows: the real frames are the same alone and in the batch.
    torch.testing.assert_close(out.last_hidden_state[1, :38], alone, atol=1e-4, rtol=1e-4)
    assert torch.all(out.last_hidden_state[1, 38:] == 0)
    assert len(out.hidden_states) == len(model.probe_points) == 1


def test_spectral_config_round_trip(tmp_path):
    SpectralConfig(input_features="mfcc").save_pretrained(tmp_path)
    model = AutoModel.from_config(repr_asr.SpectralConfig.from_pretrained(tmp_path))
    assert isinstance(model, SpectralModel) and model.config.input_features == "mfcc"
    with pytest.raises(ValueError, match="input_features"):
        SpectralConfig(input_features="spectrogram")


def test_channels_last_array_is_one_downmixed_utterance():
    fe = ReprFeatureExtractor()
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, size=(3000, 2)).astype(np.float32)  # soundfile's layout
    batch = fe(stereo, sampling_rate=16000)
    assert len(batch["input_values"]) == 1  # not 3000 utterances of two samples
    np.testing.assert_allclose(batch["input_values"][0], stereo.mean(axis=1), atol=1e-7)
    from_tensor = fe(torch.from_numpy(stereo), sampling_rate=16000)["input_values"]
    np.testing.assert_array_equal(from_tensor[0], batch["input_values"][0])
    # Inside a list, either layout is one utterance.
    listed = fe([stereo, stereo.T], sampling_rate=16000)["input_values"]
    np.testing.assert_allclose(listed[0], listed[1], atol=1e-7)
    np.testing.assert_allclose(listed[0], stereo.mean(axis=1), atol=1e-7)


def test_two_dimensional_batch_convention_is_kept_and_ambiguity_refused():
    fe = ReprFeatureExtractor()
    batch = np.random.default_rng(1).uniform(-0.5, 0.5, size=(3, 500)).astype(np.float32)  # (batch, samples)
    values = fe(batch, sampling_rate=16000, return_tensors="np")["input_values"]
    np.testing.assert_array_equal(values, batch)
    with pytest.raises(AudioError, match=r"shape \(4, 4\).*list of 1-D arrays"):
        fe(np.zeros((4, 4), np.float32), sampling_rate=16000)


def test_integer_pcm_is_scaled():
    fe = ReprFeatureExtractor()
    pcm = np.array([0, 16384, -32768, 32767], np.int16)
    values = fe([pcm, pcm.astype(np.int32) << 16], sampling_rate=16000)["input_values"]
    expected = np.array([0.0, 0.5, -1.0, 32767 / 32768], np.float32)
    np.testing.assert_allclose(values[0], expected, atol=1e-7)
    np.testing.assert_allclose(values[1], expected, atol=1e-7)  # int32 PCM on the same scale
    with pytest.raises(AudioError, match="input 0: integer samples of dtype int64"):
        fe(np.arange(100), sampling_rate=16000)
