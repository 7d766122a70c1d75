"""Probes: frame labels at 50 / 100 Hz, pooling of log-mel targets, held-out splits, probes that learn
what the features encode and no more, feature extraction (batched = one by one, cache), and the recipe."""

import json
from pathlib import Path

import numpy as np
import pytest

from repr_asr.evaluation.features import extract_features, length_batches
from repr_asr.evaluation.probes import (
    IGNORE,
    ProbeConfig,
    held_out_speakers,
    held_out_utterances,
    log_mel_targets,
    pool_to_frames,
    run_probes,
    segment_frame_labels,
)
from repr_asr.models import load_upstream
from tone_corpus import build_tone_corpus, random_phones

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")

SR = 16000
FAST = ProbeConfig(epochs=15, patience=3, batch_size=32, learning_rate=1e-2)


def test_phone_labels_at_100_and_50_hz():
    starts, ends, labels = [0.0, 0.1], [0.1, 0.25], [3, 7]
    at100 = segment_frame_labels(starts, ends, labels, 30, 100.0)  # centres 0.005, 0.015, ...
    assert at100.tolist() == [3] * 10 + [7] * 15 + [IGNORE] * 5
    at50 = segment_frame_labels(starts, ends, labels, 14, 50.0)  # centres 0.01, 0.03, ..., 0.27
    assert at50.tolist() == [3] * 5 + [7] * 7 + [IGNORE] * 2
    # A gap between segments is ignored, not given to a neighbour.
    gap = segment_frame_labels([0.0, 0.1], [0.05, 0.2], [1, 2], 20, 100.0)
    assert gap[4] == 1 and gap[5:10].tolist() == [IGNORE] * 5 and gap[10] == 2
    assert segment_frame_labels([], [], [], 4, 100.0).tolist() == [IGNORE] * 4


def test_pool_to_frames_averages_each_span():
    values = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)  # (20, 3) at 100 Hz
    at50 = pool_to_frames(values, 100.0, 10, 50.0)
    assert np.allclose(at50[:, 0], [(2 * t + 2 * t + 1) / 2 for t in range(10)])
    at100 = pool_to_frames(values, 100.0, 20, 100.0)
    assert np.allclose(at100, values)
    at200 = pool_to_frames(values, 100.0, 40, 200.0)  # faster than the source: nearest frame
    assert at200.shape == (40, 3) and np.isfinite(at200).all()
    targets = log_mel_targets(np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32), 25, 50.0)
    assert targets.shape == (25, 80) and np.isfinite(targets).all()


def test_held_out_splits():
    speakers = ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2
    genders = ["F"] * 6 + ["M"] * 4
    test = held_out_speakers(speakers, 0.5, seed=0, strata=genders)
    held = {s for s, t in zip(speakers, test) if t}
    kept = {s for s, t in zip(speakers, test) if not t}
    assert not held & kept  # no speaker on both sides
    for gender in "FM":  # each gender on both sides
        assert any(t for t, g in zip(test, genders) if g == gender) and any(not t for t, g in zip(test, genders) if g == gender)
    assert held_out_speakers(["a", "a", "b"], 0.5, 0, strata=["F", "F", "M"]) is None  # one speaker per gender
    by_utt = held_out_utterances(speakers, 0.25, seed=0)
    for s in set(speakers):  # every speaker on both sides
        side = [t for sp, t in zip(speakers, by_utt) if sp == s]
        assert any(side) and not all(side)


def _rows_and_labels(rng, n_speakers=6, utts=4, frames=60):
    """Rows with phone timings at 100 Hz, speakers with alternating gender, and the frame labels."""
    rows, phone_frames = [], []
    for s in range(n_speakers):
        for u in range(utts):
            labels = np.repeat(rng.integers(0, 5, size=frames // 6), 6)
            starts = np.arange(len(labels)) / 100.0
            rows.append({"id": f"{s}-{u}", "speaker_id": f"spk{s}", "gender": "FM"[s % 2],
                         "phones": {"phone": [f"P{k}" for k in labels], "start": starts.tolist(), "end": (starts + 0.01).tolist()}})
            phone_frames.append(labels)
    return rows, phone_frames


def test_probes_learn_encoded_labels_and_nothing_from_noise():
    rng = np.random.default_rng(0)
    rows, phone_frames = _rows_and_labels(rng, n_speakers=10, utts=3)
    speaker_codes = rng.standard_normal((10, 6))
    encoded = []
    for row, labels in zip(rows, phone_frames):
        s = int(row["speaker_id"][3:])
        phone = np.eye(5)[labels] * 3
        gender = np.full((len(labels), 1), 2.0 if row["gender"] == "F" else -2.0)
        code = np.concatenate([phone, np.tile(speaker_codes[s], (len(labels), 1)), gender], 1)  # (frames, 12)
        encoded.append(code + 0.3 * rng.standard_normal(code.shape))
    encoded = [e.astype(np.float32) for e in encoded]
    good = run_probes(encoded, 100.0, rows, ("phone", "speaker", "gender"), FAST)
    assert good["phone"]["held_out"] == "speakers" and good["phone"]["accuracy"] > 95
    assert good["speaker"]["held_out"] == "utterances" and good["speaker"]["accuracy"] > 90
    assert good["gender"]["held_out"] == "speakers" and good["gender"]["accuracy"] > 95
    assert good["phone"]["classes"] == 5 and good["phone"]["test_frames"] > 0

    noise = [rng.standard_normal(e.shape).astype(np.float32) for e in encoded]
    bad = run_probes(noise, 100.0, rows, ("phone", "speaker", "gender"), FAST)
    assert bad["phone"]["accuracy"] < 35  # chance is 20 % over 5 phones
    assert bad["speaker"]["accuracy"] < 25  # chance is 1/10
    assert bad["gender"]["accuracy"] < 70  # chance is 50 %


def test_fbank_probe_regresses_log_mel():
    rng = np.random.default_rng(1)
    rows, waveforms, features, noise = [], [], [], []
    for s in range(4):
        for u in range(3):
            wave = (0.1 * rng.standard_normal(SR // 2) * np.sin(np.linspace(0, 20 * (u + 1), SR // 2))).astype(np.float32)
            rows.append({"id": f"{s}-{u}", "speaker_id": f"spk{s}", "gender": "", "phones": {"phone": [], "start": [], "end": []}})
            waveforms.append(wave)
            targets = log_mel_targets(wave, 25, 50.0)
            features.append(targets + 0.01 * rng.standard_normal(targets.shape).astype(np.float32))
            noise.append(rng.standard_normal((25, 16)).astype(np.float32))
    config = ProbeConfig(hidden_size=0, epochs=30, patience=5, batch_size=64, learning_rate=1e-2)  # log-mel + noise: a linear map
    good = run_probes(features, 50.0, rows, ("fbank", "phone", "gender"), config, waveforms)["fbank"]
    assert good["r2"] > 0.8 and good["mse"] < good["baseline_mse"]
    bad = run_probes(noise, 50.0, rows, ("fbank",), config, waveforms)
    assert bad["fbank"]["r2"] < 0.2
    skipped = run_probes(features, 50.0, rows, ("phone", "gender"), config, waveforms)
    assert "skipped" in skipped["phone"] and "skipped" in skipped["gender"]


def test_length_batches_bound_padding():
    lengths = [5, 100, 7, 30, 31, 200, 6]
    batches = length_batches(lengths, max_samples=100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100


# --- a tiny corpus, extraction and the recipe ------------------------------------------------------


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))
    # 4 speakers × 2 utterances of random tone sequences (tests/tone_corpus.py), pitches close enough that the
    # speaker is not trivial.
    build_tone_corpus(tmp_path / "corpus", phones=random_phones, shifts=(1.0, 1.1, 0.8, 0.85))
    return f"librispeech:{tmp_path / 'corpus'}"


def test_extraction_batched_equals_alone_and_cache(corpus, tmp_path):
    from repr_asr.evaluation.features import load_split

    dataset = load_split(corpus, "dev")
    model = load_upstream("mfcc")
    batched = extract_features(model, dataset, max_batch_seconds=100.0)
    alone = extract_features(model, dataset, max_batch_seconds=0.01)  # one utterance per batch
    assert batched.ids == alone.ids == list(dataset["id"])
    for a, b, duration in zip(batched.features["features"], alone.features["features"], dataset["duration"]):
        assert a.shape == b.shape and a.shape[0] == 1 + int(round(duration * SR)) // 160
        assert np.allclose(a, b, atol=1e-4)
    cached = extract_features(model, dataset, cache_dir=tmp_path / "fc", cache_key="mfcc|dev")
    again = extract_features(model, dataset, cache_dir=tmp_path / "fc", cache_key="mfcc|dev")
    assert all(np.array_equal(x, y) for x, y in zip(cached.features["features"], again.features["features"]))
    with pytest.raises(ValueError, match="probe point"):
        extract_features(model, dataset, probe_points=["nope"])


def test_probe_recipe_results(corpus, tmp_path):
    from recipe_modules import assert_results_header, load_recipe

    recipe = load_recipe("probe")
    out = tmp_path / "run"
    recipe.main(["--upstream", "fbank", "--data", corpus, "--output_dir", str(out), "--epochs", "10", "--learning_rate", "0.01"])
    results = json.loads((out / "results.json").read_text())
    assert_results_header(results, "probe")
    assert results["task"] == "probe" and results["upstream"] == "fbank" and results["split"] == "dev"
    assert results["probe_points"] == ["features"] and results["num_speakers"] == 4 and results["frozen"] is True
    assert results["config"]["epochs"] == 10
    assert results["feature_extractor"]["do_normalize"] is False and len(results["weights_sha256"]) == 64
    metrics = results["metrics"]["features"]
    assert metrics["frame_rate"] == 100.0 and metrics["dim"] == 80
    assert set(metrics) >= {"phone", "speaker", "gender", "fbank"}
    assert metrics["phone"]["accuracy"] > metrics["phone"]["majority_baseline"] + 20  # tones are easy to tell apart
    assert metrics["fbank"]["r2"] > 0.5
    assert 0 <= metrics["gender"]["accuracy"] <= 100 and metrics["gender"]["held_out"] == "speakers"
