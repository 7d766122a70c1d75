"""Shared frozen-feature extraction: the upstream's saved feature extractor is used, caches are keyed by
what decides the features (weights, extractor, probe point, audio), the model stays where and as it was,
work is split across processes, and load_upstream names bad paths and corrupt weight files."""

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
import torch

from repr_asr import CPCConfig, CPCModel, MaskedReconConfig, MaskedReconModel, ReprFeatureExtractor
from repr_asr.evaluation.features import (
    extract_features,
    model_device,
    model_digest,
    reassemble,
    shard_indices,
)
from repr_asr.models import load_feature_extractor, load_upstream

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TINY = dict(n_mels=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)

pytestmark = pytest.mark.usefixtures("one_thread")


def write_wave(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.2 * np.sin(2 * np.pi * (200 + 100 * seed) * t) + 0.01 * rng.standard_normal(t.size) + 0.05  # DC offset too
    soundfile.write(str(path), wave.astype(np.float32), SR, subtype="FLOAT")


def make_split(folder: Path, count: int = 4) -> datasets.Dataset:
    """A corpus split of ``count`` utterances of different lengths stored as audio files."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {"id": [], "audio": [], "duration": []}
    for k in range(count):
        path = folder / f"utt{k}.wav"
        seconds = 0.3 + 0.1 * k
        write_wave(path, seconds, k)
        rows["id"].append(f"utt{k}")
        rows["audio"].append(str(path))
        rows["duration"].append(seconds)
    return datasets.Dataset.from_dict(rows)


def save_upstream(folder: Path, model, extractor=None) -> Path:
    model.save_pretrained(str(folder))
    if extractor is not None:
        extractor.save_pretrained(str(folder))
    return folder


def count_calls(model) -> list:
    """A list that grows by one each time the model's forward runs."""
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(1))
    return calls


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to the largest value (an untrained model's features can be tiny)."""
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))


def tiny_recon() -> MaskedReconModel:
    torch.manual_seed(0)
    return MaskedReconModel(MaskedReconConfig(**TINY))


# --- item 1: the extractor saved with the upstream ----------------------------------------------


def test_saved_feature_extractor_is_used(tmp_path):
    split = make_split(tmp_path / "audio")
    # CPC reads the waveform; without conv normalisation its features follow the input's scale.
    torch.manual_seed(0)
    raw = CPCModel(CPCConfig(conv_dim=16, context_hidden_size=24, prediction_steps=3, num_negatives=6, conv_norm="none"))
    folder = save_upstream(tmp_path / "up", raw, ReprFeatureExtractor(do_normalize=True))
    model = load_upstream(str(folder))
    point = model.default_probe_point

    assert load_feature_extractor(str(folder)).do_normalize is True
    found = extract_features(model, split)  # no extractor passed: found from the model's folder
    normalised = extract_features(model, split, feature_extractor=ReprFeatureExtractor(do_normalize=True))
    plain = extract_features(model, split, feature_extractor=ReprFeatureExtractor(do_normalize=False))
    for utt, a, b, c, cell in zip(split["id"], found.features[point], normalised.features[point],
                                  plain.features[point], split["audio"]):
        assert relative_difference(a, b) < 1e-5
        assert relative_difference(a, c) > 0.05, utt
        # Independently of the extractor: the model run on the normalised waveform.
        wave = soundfile.read(cell, dtype="float32")[0]
        wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        with torch.no_grad():
            direct = model(torch.from_numpy(wave)[None]).last_hidden_state[0].numpy()
        assert a.shape == direct.shape and relative_difference(a, direct) < 1e-4
    assert found.info["feature_extractor"]["do_normalize"] is True  # recorded for results.json

    # The recipes' extractor for each kind of --upstream.
    assert load_feature_extractor("fbank").do_normalize is False
    bare = save_upstream(tmp_path / "bare", raw)  # config.json only: defaults, at the config's rate
    extractor = load_feature_extractor(str(bare))
    assert isinstance(extractor, ReprFeatureExtractor) and not extractor.do_normalize and extractor.sampling_rate == SR
    with pytest.raises(FileNotFoundError, match="no/such/folder"):
        load_feature_extractor(str(tmp_path / "no" / "such" / "folder"))



def test_resolve_upstream_gives_the_model_its_extractor_and_the_one_display_name(tmp_path, monkeypatch):
    from repr_asr.evaluation.html_report import name_of
    from repr_asr.evaluation.report import representation_label
    from repr_asr.models import resolve_upstream, upstream_display_name

    folder = save_upstream(tmp_path / "runs" / "recon" / "final", tiny_recon(), ReprFeatureExtractor(do_normalize=True))
    model, extractor, name = resolve_upstream(str(folder))
    assert (name, model.config.model_type, extractor.do_normalize) == ("recon", "masked_recon", True)
    # The halves give the same model and extractor, and only what is asked for is loaded.
    assert model_digest(load_upstream(str(folder))) == model_digest(model)
    assert load_feature_extractor(str(folder)).to_dict() == extractor.to_dict()
    assert resolve_upstream(str(folder), model=False).model is None
    assert resolve_upstream(str(folder), feature_extractor=False).feature_extractor is None
    assert resolve_upstream("mfcc").name == "mfcc"
    # A path that names only the export: the model's type.
    monkeypatch.chdir(folder.parent)
    assert resolve_upstream("final").name == "masked_recon" == upstream_display_name("./final/", "masked_recon")
    # The reports name results that lack upstream_name by the same rule.
    assert name_of(tmp_path, {"upstream": str(folder) + "/"}) == "recon"
    assert representation_label({"upstream": str(folder), "probe_point": "layer_1"}) == "recon / layer_1 (frozen)"
    assert upstream_display_name("org/encoder") == "encoder"

# --- item 2: caches keyed by content -------------------------------------------------------------


def test_cache_is_keyed_by_weights_extractor_and_data(tmp_path):
    split = make_split(tmp_path / "audio")
    folder = save_upstream(tmp_path / "up", tiny_recon(), ReprFeatureExtractor())
    cache = tmp_path / "cache"

    model = load_upstream(str(folder))
    calls = count_calls(model)
    first = extract_features(model, split, cache_dir=cache)
    files = sorted(cache.glob("*.safetensors"))
    assert calls and len(files) == len(model.probe_points)
    stamps = {f: f.stat().st_mtime_ns for f in files}

    # Nothing changed (a fresh load of the same folder): every probe point is read back.
    model = load_upstream(str(folder))
    calls = count_calls(model)
    again = extract_features(model, split, cache_dir=cache)
    assert not calls and {f: f.stat().st_mtime_ns for f in files} == stamps
    for point in first.features:
        assert all(np.array_equal(a, b) for a, b in zip(first.features[point], again.features[point]))

    # The same folder trained further: new weights, new features.
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    model.save_pretrained(str(folder))
    model = load_upstream(str(folder))
    calls = count_calls(model)
    retrained = extract_features(model, split, cache_dir=cache)
    last = model.default_probe_point
    assert calls and any(not np.allclose(a, b) for a, b in zip(first.features[last], retrained.features[last]))

    # Another extractor setting, the caller's key, or the audio itself: recomputed too.
    calls.clear()
    extract_features(model, split, cache_dir=cache, feature_extractor=ReprFeatureExtractor(do_normalize=True))
    assert calls
    calls.clear()
    extract_features(model, split, cache_dir=cache, cache_key="ctc")
    assert calls
    calls.clear()
    extract_features(model, split, cache_dir=cache)
    assert not calls  # back to the earlier settings: a hit
    write_wave(Path(split["audio"][0]), 0.45, seed=9)  # same path, new content
    extract_features(model, split, cache_dir=cache)
    assert calls
    # What results.json records.
    assert set(first.info["cache"].values()) == {"computed"} and set(again.info["cache"].values()) == {"hit"}
    assert again.info["weights_sha256"] == first.info["weights_sha256"] != retrained.info["weights_sha256"]


def test_corrupt_cache_is_recomputed_with_a_warning(tmp_path, caplog):
    split = make_split(tmp_path / "audio", count=2)
    model = load_upstream("mfcc")
    cache = tmp_path / "cache"
    first = extract_features(model, split, cache_dir=cache)
    (path,) = cache.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:40])  # truncated
    calls = count_calls(model)
    with caplog.at_level(logging.WARNING, logger="repr_asr.evaluation.features"):
        again = extract_features(model, split, cache_dir=cache)
    assert calls and path.name in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(first.features["features"], again.features["features"]))
    calls.clear()
    extract_features(model, split, cache_dir=cache)
    assert not calls  # rewritten whole


def test_model_digest_follows_weights_and_config(tmp_path):
    model = tiny_recon()
    digest = model_digest(model)
    folder = save_upstream(tmp_path / "up", model)
    assert model_digest(load_upstream(str(folder))) == digest  # same weights wherever they were loaded from
    with torch.no_grad():
        next(model.parameters()).data.add_(1.0)  # an edit no autograd version counter sees
    assert model_digest(model) != digest
    assert model_digest(load_upstream("fbank")) != model_digest(load_upstream("mfcc"))  # no weights: the config decides


# --- item 3: device and processes ---------------------------------------------------------------


def test_model_keeps_its_device_and_mode(tmp_path):
    split = make_split(tmp_path / "audio", count=2)
    model = tiny_recon().train()
    extract_features(model, split)
    assert model.training and model_device(model) == torch.device("cpu")
    assert model_device(load_upstream("fbank")) == torch.device("cpu")  # no parameters at all
    broken = datasets.Dataset.from_dict({"id": ["gone"], "audio": [str(tmp_path / "gone.wav")], "duration": [0.5]})
    with pytest.raises(ValueError, match="gone"):  # fails inside the extraction loop
        extract_features(model, broken)
    assert model.training  # put back in training mode all the same


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_features_equal_cpu_and_model_stays(tmp_path):
    split = make_split(tmp_path / "audio")
    model = tiny_recon()
    on_cpu = extract_features(model, split)
    model.to("cuda")
    on_cuda = extract_features(model, split)  # device=None: where the model is
    assert model_device(model).type == "cuda"
    for point in on_cpu.features:
        for a, b in zip(on_cpu.features[point], on_cuda.features[point]):
            np.testing.assert_allclose(a, b, atol=1e-4)
    model.to("cpu")
    lent = extract_features(model, split, device="cuda")  # moved for the call only
    assert model_device(model) == torch.device("cpu")
    for a, b in zip(on_cpu.features[model.default_probe_point], lent.features[model.default_probe_point]):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_shards_cover_every_utterance_once_and_reassemble_in_order():
    lengths = [50, 10, 40, 20, 30, 60, 5]
    shards = [shard_indices(lengths, rank, 3) for rank in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(len(lengths)))
    totals = [sum(lengths[i] for i in s) for s in shards]
    assert max(totals) - min(totals) <= max(lengths)  # strided in length order: balanced
    gathered = [(i, np.full((1, 1), i)) for s in reversed(shards) for i in s]
    assert [int(a[0, 0]) for a in reassemble(gathered, len(lengths))] == list(range(len(lengths)))
    with pytest.raises(RuntimeError, match="indices"):
        reassemble(gathered[1:], len(lengths))


WORKER = """
import json, sys
import datasets, numpy as np, torch
from accelerate import PartialState
from repr_asr.evaluation.features import extract_features
from repr_asr.models import load_upstream

torch.set_num_threads(1)
state = PartialState(cpu=True)
split = datasets.load_from_disk(sys.argv[1])
model = load_upstream("mfcc")
seen = []
model.register_forward_hook(lambda module, args, output: seen.append(int(args[0].shape[0])))
out = extract_features(model, split, accelerator=state, cache_dir=sys.argv[3])
np.savez(f"{sys.argv[2]}/rank{state.process_index}.npz", **out.as_dict("features"))
json.dump({"utterances": sum(seen)}, open(f"{sys.argv[2]}/rank{state.process_index}.json", "w"))
state.destroy_process_group()  # gloo's threads abort the interpreter's exit otherwise
"""


def test_two_processes_split_the_work_and_both_get_everything(tmp_path):
    split = make_split(tmp_path / "audio", count=5)
    split.save_to_disk(str(tmp_path / "split"))
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(tmp_path / "worker.py"), str(tmp_path / "split"), str(tmp_path), str(tmp_path / "cache")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    alone = extract_features(load_upstream("mfcc"), split).as_dict("features")
    work = [json.loads((tmp_path / f"rank{r}.json").read_text())["utterances"] for r in range(2)]
    assert sum(work) == len(split) and all(w > 0 for w in work)  # each utterance extracted once, by one rank
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz")
        assert sorted(got.files) == sorted(alone)
        for utt, array in alone.items():
            np.testing.assert_allclose(got[utt], array, atol=1e-5)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1  # written once, by rank 0


# --- item 12 (part): paths and weight files ----------------------------------------------------


def test_load_upstream_names_missing_paths(tmp_path):
    for missing in ("/no/such/path", "./no_such_folder", str(tmp_path / "a" / "b")):
        with pytest.raises(FileNotFoundError, match=re.escape(missing.lstrip("./"))):
            load_upstream(missing)
    empty = tmp_path / "run"
    (empty / "final").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_upstream(str(empty))
    save_upstream(empty / "final", tiny_recon())
    with pytest.raises(FileNotFoundError, match="final"):  # a run folder: point at its export
        load_upstream(str(empty))
    # A hub-style name still goes to from_pretrained (offline here), and the error names it.
    with pytest.raises(OSError, match="no-such-org/no-such-model") as error:
        load_upstream("no-such-org/no-such-model", local_files_only=True)
    assert "hub" in str(error.value) and "Repo id must be" not in str(error.value)


def test_truncated_weights_name_the_file(tmp_path):
    folder = save_upstream(tmp_path / "up", tiny_recon())
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(str(weights))):
        load_upstream(str(folder))
