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
