"""Speaker identification (repr_asr/downstream/speaker_id.py): utterance selection and held-out splits,
a classifier on mean-pooled frozen features that reads distinguishable speakers, the results header,
determinism, refused probe points, and its place in the registry, the study's analyses and tables."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repr_asr.downstream import REGISTRY, get_task, results_header, task_of_kind
from repr_asr.downstream import speaker_id as sid
from repr_asr.downstream.speaker_id import SpeakerIDConfig, evaluate_speaker_id, mean_pool, select_utterances, split_utterances
from tone_corpus import build_tone_corpus

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(epochs=150, patience=20, learning_rate=0.02)

pytestmark = pytest.mark.usefixtures("one_thread")


from recipe_modules import load_recipe as _recipe  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A pretraining pool (train-clean-100) of 4 tone speakers, each shifting every pitch by its own factor,
    × 16 utterances (fewer let a linear classifier on 24 dimensions fit the noise of its few training ones)."""
    root = tmp_path_factory.mktemp("sid") / "corpus"
    build_tone_corpus(root, subset="train-clean-100", utterances=16)
    return f"librispeech:{root}"


@pytest.fixture(scope="module")
def tiny_upstream(tmp_path_factory):
    """A randomly initialised tiny WaveNet-AE (probe points enc 24, proj 8, bn 8, cond 12: proj and bn mix)."""
    from repr_asr.models.wavenet_ae import WaveNetAEConfig, WaveNetAEModel

    torch.manual_seed(0)
    model = WaveNetAEModel(WaveNetAEConfig(
        encoder_hidden_size=24, encoder_num_ff_layers=2, latent_dim=8, codebook_size=16, conditioning_channels=12,
        decoder_layers=4, decoder_dilation_cycles=2, residual_channels=8, gate_channels=8, skip_channels=8, decoder_output_channels=16))
    folder = tmp_path_factory.mktemp("up") / "wavenet_vq"
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))


def test_selection_caps_drops_and_shares_out_evenly():
    speakers = ["a"] * 30 + ["b"] * 12 + ["c"] * 3 + [""] * 2 + ["d"] * 9
    config = SpeakerIDConfig(max_utterances_per_speaker=10, max_utterances=24, min_utterances_per_speaker=4)
    chosen, left_out = select_utterances(speakers, config)
    counts = {s: sum(speakers[i] == s for i in chosen) for s in "abcd"}
    assert counts == {"a": 8, "b": 8, "c": 0, "d": 8}  # 24 shared out evenly; c has too few
    assert left_out["speakers_too_few_utterances"] == 1 and left_out["dropped_speakers"] == ["c"]
    assert left_out["utterances_without_speaker"] == 2 and chosen == sorted(chosen)
    assert select_utterances(speakers, config) == (chosen, left_out)  # seeded
    assert select_utterances(speakers, SpeakerIDConfig(**{**config.__dict__, "seed": 1}))[0] != chosen
    # Too many speakers for the minimum each: a seeded subset of the speakers is kept, each with the minimum.
    many = [f"s{k}" for k in range(10) for _ in range(5)]
    chosen, left_out = select_utterances(many, SpeakerIDConfig(max_utterances=12, min_utterances_per_speaker=4))
    kept = {many[i] for i in chosen}
    assert len(kept) == 3 and len(chosen) == 12 and left_out["speakers_left_out_by_max_utterances"] == 7
    with pytest.raises(ValueError, match="min_utterances_per_speaker"):
        SpeakerIDConfig(min_utterances_per_speaker=1)


def test_split_holds_out_every_speakers_utterances_on_both_sides():
    speakers = np.repeat(["a", "b", "c"], [8, 4, 2])
    sides = split_utterances(speakers, SpeakerIDConfig(held_out_fraction=0.25, validation_fraction=0.2))
    for speaker in "abc":
        mine = sides[speakers == speaker]
        assert (mine == "test").any() and (mine == "train").any()
    assert (sides[speakers == "a"] == "validation").sum() >= 1
    assert (split_utterances(speakers, SpeakerIDConfig(held_out_fraction=0.25, validation_fraction=0.2)) == sides).all()


def test_mean_pool_flags_features_normalised_per_utterance():
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((50, 4)) + k for k in range(3)]
    pooled, constant = mean_pool(frames)
    assert pooled.shape == (3, 4) and not constant and np.allclose(pooled[:, 0], [f[:, 0].mean() for f in frames], atol=1e-6)
    normalised = [(f - f.mean(0)) / f.std(0) for f in frames]
    pooled, constant = mean_pool(normalised)
    assert constant and not pooled.any()


def test_reads_speakers_from_a_tiny_upstream_and_records_everything(corpus, tiny_upstream, tmp_path, monkeypatch):
    seen = []  # what the classifier was trained and stopped on
    real = sid.train_probe

    def spy(x_train, y_train, x_val, y_val, *args, **kwargs):
        seen.append((len(x_train), len(x_val)))
        return real(x_train, y_train, x_val, y_val, *args, **kwargs)

    monkeypatch.setattr(sid, "train_probe", spy)
    out = tmp_path / "run"
    _recipe("speaker_id").main(["--upstream", tiny_upstream, "--data", corpus, "--output_dir", str(out),
                                "--epochs", "150", "--learning_rate", "0.02"])
    results = json.loads((out / "results.json").read_text())
    header = results_header("speaker_id", tiny_upstream)
    assert list(results)[: len(header)] == list(header)  # the shared header comes first, in its order
    assert results["task"] == results["kind"] == "speaker_id" and results["split"] == "pretrain" and results["subset"] is None
    assert results["upstream_name"] == "wavenet_vq" and results["model_type"] == "wavenet_ae" and len(results["weights_sha256"]) == 64
    assert results["data"] == corpus and results["seed"] == 0 and {"torch", "transformers", "python"} <= set(results["versions"])
    assert results["probe_points"] == ["enc", "proj", "bn", "cond", "weighted_sum"] == list(results["metrics"])
    assert results["num_speakers"] == 4 and results["num_utterances"] == 64 and results["speakers_too_few_utterances"] == 0

    ids = results["utterance_ids"]
    train, validation, test = (set(ids[side]) for side in ("train", "validation", "test"))
    assert not (train & test) and not (validation & test) and not (train & validation)
    assert len(train | validation | test) == 64 and {i.split("-")[0] for i in test} == {"101", "102", "201", "202"}
    assert results["utterances"] == {"train": len(train), "validation": len(validation), "test": len(test)}
    assert seen == [(len(train), len(validation))] * 5  # held-out utterances never reach the classifier

    enc = results["metrics"]["enc"]
    assert enc["majority_rate"] == 25.0 and enc["accuracy"] >= enc["majority_rate"] + 40  # pitch tells the speakers apart
    mix = results["metrics"]["weighted_sum"]
    assert mix["mixed_points"] == ["proj", "bn"] and sum(mix["layer_weights"]) == pytest.approx(1.0)
    assert "frame_rate" not in mix and results["metrics"]["bn"]["dim"] == 8 and not enc["constant_features"]


def test_same_seed_same_result_and_spectral_features_normalised_per_utterance(corpus, tmp_path):
    config = SpeakerIDConfig(**FAST)
    first = evaluate_speaker_id("fbank", corpus, config=config, cache_dir=str(tmp_path / "features"), progress=False)
    again = evaluate_speaker_id("fbank", corpus, config=config, cache_dir=str(tmp_path / "features"), progress=False)
    assert first["metrics"] == again["metrics"] and first["utterance_ids"] == again["utterance_ids"]
    other = evaluate_speaker_id("fbank", corpus, config=SpeakerIDConfig(**FAST, seed=1), cache_dir=str(tmp_path / "features"),
                                progress=False)
    assert other["utterance_ids"]["test"] != first["utterance_ids"]["test"]
    # Filterbanks are mean / variance normalised per utterance: their averages carry no speaker.
    features = first["metrics"]["features"]
    assert features["constant_features"] and features["accuracy"] <= features["majority_rate"]


def test_probe_points_the_upstream_lacks_are_refused_by_name(corpus, tiny_upstream):
    with pytest.raises(ValueError, match=r"\['nope'\] not offered.*'enc'"):
        evaluate_speaker_id(tiny_upstream, corpus, probe_points=["bn", "nope"])
    with pytest.raises(ValueError, match=r"\['weighted_sum'\] not offered.*no weighted_sum"):
        evaluate_speaker_id("fbank", corpus, probe_points=["weighted_sum"])
    with pytest.raises(KeyError, match="no data for split 'test'"):
        evaluate_speaker_id("fbank", corpus, split="test")


def test_registry_analysis_runner_and_tables(corpus, tmp_path):
    from repr_asr.evaluation.analysis import ANALYSES, applies, run_analysis
    from repr_asr.evaluation.html_report import write_html_report
    from repr_asr.evaluation.study_report import scores_section, write_report

    assert get_task("speaker_id") is REGISTRY["speaker_id"] is task_of_kind("speaker_id")
    assert get_task("ctc").higher_is_better is False and get_task("speaker_id").metric == "accuracy"
    with pytest.raises(ValueError, match="unknown downstream task 'asr'"):
        get_task("asr")
    assert "speaker_id" in ANALYSES and applies("speaker_id", "fbank", {})
    spec = {"split": "pretrain", "max_utterances_per_speaker": 6, **FAST}
    results = run_analysis("speaker_id", "fbank", corpus, spec, None, str(tmp_path / "features"), str(tmp_path))
    assert results["task"] == "speaker_id" and results["num_utterances"] == 24 and results["config"]["max_utterances_per_speaker"] == 6
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['epoch'\]"):
        run_analysis("speaker_id", "fbank", corpus, {"epoch": 3}, None, str(tmp_path), str(tmp_path))

    # The study's README and report.html show it per representation × probe point.
    study = tmp_path / "study"
    for name, metrics in (("fbank", results["metrics"]),
                          ("wavenet_vq", {"enc": {"accuracy": 90.0, "majority_rate": 5.0}, "bn": {"accuracy": 30.0, "majority_rate": 5.0}})):
        folder = study / "speaker_id" / name
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({**results, "upstream_name": name, "metrics": metrics}))
    spec = {"corpus": {"hours": 1.0, "seed": 0}, "baselines": ["fbank"], "pretrain": {"upstreams": {"wavenet_vq": {}}}}
    text = Path(write_report(study, spec, 1.0, tmp_path / "hub")).read_text()
    assert "## Speaker identification (pretrain speakers" in text and "| wavenet_vq | bn | 30.0 | 5.0 | 4 |" in text
    assert "| fbank | features | 25.0 * |" in text and "From `enc` to `bn`: wavenet_vq 90.0 → 30.0 (-60.0)" in text
    assert "speaker identification at `bn`: 30.0 % (majority 5.0 %" in scores_section("wavenet_vq", study)
    page = Path(write_html_report([study], tmp_path / "report.html")).read_text()
    assert "Who is speaking: speaker identification" in page and "wavenet_vq / enc" in page and "2 speaker_id" in page
