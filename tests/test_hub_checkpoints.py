"""The committed upstreams under hub/ (exported by `make study`): each loads with the Auto classes right
after install, is small, has a model card that says what it was trained on and measured, and still
computes the features it computed when it was exported (hub/NAME/fingerprint.json)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import repr_asr  # noqa: F401  (registers the model types with the Auto classes)
from repr_asr.training.hub import feature_fingerprint

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "hub"
EXPORTED = sorted(p.parent.name for p in HUB.glob("*/config.json"))
STUDY_UPSTREAMS = list(yaml.safe_load((ROOT / "configs/study/default.yaml").read_text())["pretrain"]["upstreams"])


def test_every_exported_upstream_is_one_of_the_study():
    assert EXPORTED, "no checkpoint under hub/ (make study exports them)"
    assert set(EXPORTED) <= set(STUDY_UPSTREAMS)


@pytest.mark.parametrize("name", EXPORTED)
def test_hub_checkpoint_loads_and_computes_its_features(name, one_thread):
    from transformers import AutoFeatureExtractor, AutoModel

    folder = HUB / name
    weights = folder / "model.safetensors"
    assert weights.stat().st_size < 20 * 2**20, f"{weights} is {weights.stat().st_size / 2**20:.1f} MB"
    results = json.loads((folder / "results.json").read_text())
    card = (folder / "README.md").read_text()
    assert "FLOPs" in card and f"{results['steps']}" in card and "builtin:" in card
    assert "## Measured in the study" in card  # the scores, written by the study's report stage
    model = AutoModel.from_pretrained(folder)
    assert model.config.model_type == results["model_type"]
    fingerprint = feature_fingerprint(model, AutoFeatureExtractor.from_pretrained(folder))
    expected = json.loads((folder / "fingerprint.json").read_text())
    assert list(fingerprint) == list(expected) == list(model.config.probe_points)
    for point, values in expected.items():
        assert fingerprint[point]["shape"] == values["shape"], point
        for stat in ("mean", "std"):
            got, want = np.asarray(fingerprint[point][stat]), np.asarray(values[stat])
            assert np.all(np.isfinite(got)), f"{name} {point}: non-finite features"
            assert np.allclose(got, want, rtol=1e-3, atol=1e-4), f"{name} {point} {stat}: features changed since export"


def _study_means(name: str) -> dict:
    """``{(metric, subset): (mean %, seeds)}`` straight from docs/study's results.json files."""
    means = {}
    for folder, metric in (("ctc", "cer"), ("ctc_phone", "per")):
        for subset_dir in sorted((ROOT / "docs" / "study" / folder / name).glob("*")):
            values = [100 * json.loads(p.read_text())["metrics"]["test"][metric] for p in sorted(subset_dir.glob("seed*/results.json"))]
            if values:
                means[(metric, f"train-{subset_dir.name}")] = (sum(values) / len(values), len(values))
    return means


@pytest.mark.parametrize("name", EXPORTED)
def test_hub_card_model_index_holds_the_study_scores(name):
    """The card's model-index (as the hub reads it) holds the study's test CER and PER per labeled subset,
    mean over seeds, of the docs/study results it was made from."""
    from huggingface_hub import ModelCard, metadata_load

    card_path = HUB / name / "README.md"
    index = metadata_load(card_path)["model-index"]
    assert index[0]["name"] == name and index[0]["results"][0]["task"]["type"] == "automatic-speech-recognition"
    results = ModelCard.load(card_path).data.eval_results
    assert {r.dataset_split for r in results} == {"test"} and {r.dataset_type for r in results} == {"repr-asr-builtin"}
    got = {(r.metric_type, r.metric_args["labeled_subset"]): (r.metric_value, r.metric_args["seeds"]) for r in results}
    expected = _study_means(name)
    assert expected and set(got) == set(expected)
    for key, (mean, seeds) in expected.items():
        assert got[key][0] == pytest.approx(mean, abs=0.005) and got[key][1] == seeds, key


def test_card_model_index_is_rewritten_from_the_results_it_is_given(tmp_path):
    """The study's code path on a card of its own: the scores go into the model-index, the text stays, and
    a second call replaces the first's numbers."""
    from huggingface_hub import ModelCard

    from repr_asr.evaluation.study_report import downstream_scores
    from repr_asr.training.model_card import set_study_results

    results = tmp_path / "study"
    for seed, cer in enumerate((0.60, 0.64)):
        path = results / "ctc" / "cpc" / "10min" / f"seed{seed}" / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"seed": seed, "data": "builtin:data/study", "study": {"corpus": {"hours": 4.0, "seed": 0}},
                                    "metrics": {"test": {"cer": cer, "wer": 1.0}}}))
    card = tmp_path / "README.md"
    card.write_text("---\nlibrary_name: transformers\ntags:\n- repr-asr\n---\n\n# cpc\n\nSome text.\n")
    set_study_results(card, "cpc", downstream_scores("cpc", results))
    (result,) = ModelCard.load(card).data.eval_results
    assert (result.metric_type, result.metric_value, result.metric_args["labeled_subset"]) == ("cer", 62.0, "train-10min")
    assert result.dataset_args == {"corpus_hours": 4.0, "corpus_seed": 0} and ModelCard.load(card).text.strip().endswith("Some text.")
    (results / "ctc" / "cpc" / "10min" / "seed1" / "results.json").unlink()
    set_study_results(card, "cpc", downstream_scores("cpc", results))
    assert [r.metric_value for r in ModelCard.load(card).data.eval_results] == [60.0]
