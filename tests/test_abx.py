"""ABX: batched DTW against a plain DP, item files, error on structured / random features, speaker
grouping, parity with the reference evaluator (zerospeech-libriabx2), and the recipe on a tiny corpus."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tone_corpus import SR, build_tone_corpus
from repr_asr.evaluation.abx import (
    ITEM_HEADER,
    Item,
    abx_error,
    dtw_batch,
    make_items,
    read_item_file,
    token_frame_range,
    write_item_file,
)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_dtw(d: np.ndarray) -> float:
    """Textbook DTW on one (n, m) matrix, normalised by the length of the back-traced path
    (ties: diagonal, then left, then up)."""
    n, m = d.shape
    cost = np.zeros((n, m), dtype=np.float32)
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                cost[i, j] = d[0, 0]
            elif i == 0:
                cost[i, j] = d[i, j] + cost[i, j - 1]
            elif j == 0:
                cost[i, j] = d[i, j] + cost[i - 1, j]
            else:
                cost[i, j] = d[i, j] + min(cost[i - 1, j], cost[i - 1, j - 1], cost[i, j - 1])
    i, j, steps = n - 1, m - 1, 1
    while i > 0 and j > 0:
        up, left, diag = cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1]
        if diag <= left and diag <= up:
            i, j = i - 1, j - 1
        elif left <= up:
            j -= 1
        else:
            i -= 1
        steps += 1
    steps += i + j
    return float(np.float32(float(cost[n - 1, m - 1]) / steps))


@pytest.mark.parametrize("integer", [False, True])
def test_dtw_batch_matches_plain_dp(integer):
    rng = np.random.default_rng(0 + integer)
    sizes = [(1, 1), (1, 5), (6, 1), (3, 4), (7, 7), (9, 2), (5, 8)]
    lx, ly = max(s[0] for s in sizes), max(s[1] for s in sizes)
    # Integer distances make many ties, which decide the path length and so the score.
    d = rng.integers(0, 3, size=(len(sizes), lx, ly)).astype(np.float32) if integer else rng.random((len(sizes), lx, ly), dtype=np.float32)
    got = dtw_batch(torch.from_numpy(d), torch.tensor([s[0] for s in sizes]), torch.tensor([s[1] for s in sizes]))
    want = [reference_dtw(d[k, : s[0], : s[1]]) for k, s in enumerate(sizes)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)


def test_dtw_of_identical_sequences_is_zero_and_rejects_empty():
    x = torch.nn.functional.normalize(torch.randn(1, 6, 4), dim=-1)
    d = (x @ x.transpose(1, 2)).clamp(-1, 1).acos() / math.pi
    assert dtw_batch(d, torch.tensor([6]), torch.tensor([6])).item() == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="at least one frame"):
        dtw_batch(d, torch.tensor([0]), torch.tensor([6]))


@pytest.mark.parametrize("rate", [100.0, 50.0])
def test_token_frames_follow_the_reference_cut(rate):
    start, end = token_frame_range(0.1, 0.2, rate, 1000)
    centres = (np.arange(start, end) + 0.5) / rate
    assert (start, end) == ((10, 19) if rate == 100 else (5, 9))
    assert np.all((centres >= 0.1) & (centres <= 0.2))
    assert token_frame_range(5.0, 6.0, rate, 10)[1] <= token_frame_range(5.0, 6.0, rate, 10)[0]  # past the end


def test_item_file_format_and_round_trip(tmp_path):
    rows = [
        {"id": "1-2-0000", "speaker_id": "1", "phones": {"phone": ["SIL", "HH", "AH", "SIL"], "start": [0.0, 0.05, 0.12, 0.2], "end": [0.05, 0.12, 0.2, 0.3]}},
        {"id": "1-2-0001", "speaker_id": "1", "phones": {"phone": [], "start": [], "end": []}},
    ]
    items = make_items(rows)
    assert [(i.phone, i.prev, i.next) for i in items] == [("HH", "SIL", "AH"), ("AH", "HH", "SIL")]
    path = write_item_file(tmp_path / "dev.item", items)
    lines = path.read_text().splitlines()
    assert lines[0] == ITEM_HEADER == "#file onset offset #phone prev-phone next-phone speaker"
    assert lines[1].split() == ["1-2-0000", "0.0500", "0.1200", "HH", "SIL", "AH", "1"]
    assert read_item_file(path) == items
    (tmp_path / "bad.item").write_text(ITEM_HEADER + "\nf 0.1 0.2 A B\n")
    with pytest.raises(ValueError, match="bad.item:2"):
        read_item_file(tmp_path / "bad.item")


def _items_and_features(rng, phone_vectors, speakers=("s1", "s2", "s3"), files_per_speaker=2, tokens=16, noise=0.0, dim=8):
    """Files of back-to-back 50 ms tokens at 100 Hz; phone_vectors(speaker, phone) gives a token's frame vector."""
    items, features = [], {}
    for s in speakers:
        for f in range(files_per_speaker):
            fid = f"{s}-{f}"
            labels = rng.choice(["a", "b", "c"], size=tokens)
            frames = []
            for k, p in enumerate(labels):
                items.append(Item(fid, 0.05 * k, 0.05 * (k + 1), str(p), "x", "y", s))
                frames.append(np.tile(phone_vectors(s, p), (5, 1)) + noise * rng.standard_normal((5, dim)))
            features[fid] = np.concatenate(frames).astype(np.float32)
    return items, features


def test_separable_features_score_zero_and_random_features_half():
    rng = np.random.default_rng(0)
    basis = {p: np.eye(8)[i] for i, p in enumerate("abc")}
    items, features = _items_and_features(rng, lambda s, p: basis[p], noise=0.05)
    scores = abx_error(features, items, 100.0)
    assert scores["within"] == pytest.approx(0.0, abs=1e-9) and scores["across"] == pytest.approx(0.0, abs=1e-9)
    assert scores["cells"]["within"] > 0 and scores["cells"]["across"] > 0

    noise = {fid: rng.standard_normal(f.shape).astype(np.float32) for fid, f in features.items()}
    scores = abx_error(noise, items, 100.0)
    assert 0.4 < scores["within"] < 0.6 and 0.4 < scores["across"] < 0.6


def test_within_and_across_speaker_grouping():
    """Speaker s1 codes phone a as u and b as v; s2 swaps them. Within a speaker every triplet is
    right; across speakers every one is wrong — only if X comes from the other speaker and A, B from one."""
    rng = np.random.default_rng(1)
    u, v = np.eye(4)[0], np.eye(4)[1]
    code = {("s1", "a"): u, ("s1", "b"): v, ("s2", "a"): v, ("s2", "b"): u}
    items, features = [], {}
    for s in ("s1", "s2"):
        labels = ["a", "b"] * 6
        features[s] = np.concatenate([np.tile(code[(s, p)], (4, 1)) + 0.01 * rng.standard_normal((4, 4)) for p in labels]).astype(np.float32)
        items += [Item(s, 0.04 * k, 0.04 * (k + 1), p, "x", "y", s) for k, p in enumerate(labels)]
    scores = abx_error(features, items, 100.0)
    assert scores["within"] == pytest.approx(0.0) and scores["across"] == pytest.approx(1.0)
    # Contexts: tokens of different contexts are never compared.
    split = [Item(i.file, i.onset, i.offset, i.phone, "x" if i.phone == "a" else "z", "y", i.speaker) for i in items]
    assert abx_error(features, split, 100.0)["within"] is None
    assert abx_error(features, split, 100.0, context_mode="any")["within"] == pytest.approx(0.0)


def test_missing_features_name_the_file():
    with pytest.raises(KeyError, match="nofile"):
        abx_error({}, [Item("nofile", 0.0, 0.1, "a", "x", "y", "s")], 100.0)


@pytest.mark.parametrize("context_mode", ["within", "any"])
def test_parity_with_reference_evaluator(tmp_path, context_mode):
    """Same scores as zerospeech-libriabx2 on random features, subsampling included (one feature file,
    so both evaluators see the tokens in the same order)."""
    eval_abx = pytest.importorskip("zrc_abx2.eval_ABX")
    rng = np.random.default_rng(3)
    features = rng.standard_normal((1600, 6)).astype(np.float32)
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "one.npy", features)
    items, t = [], 0.03
    for _ in range(150):
        duration = rng.uniform(0.03, 0.12)
        items.append(Item("one", t, t + duration, str(rng.choice(list("abc"))), str(rng.choice(list("xy"))), "z", str(rng.choice([f"s{k}" for k in range(6)]))))
        t += duration + 0.004
    write_item_file(tmp_path / "t.item", items)
    mine = abx_error({"one": features}, read_item_file(tmp_path / "t.item"), 100.0, context_mode=context_mode, max_size_group=4, max_x_across=2)
    args = eval_abx.EvalArgs(path_data=str(tmp_path / "feats"), path_item_file=str(tmp_path / "t.item"), feature_size=0.01,
                             context_mode=context_mode, max_size_group=4, max_x_across=2)
    theirs = {r["abx-s-condition"]: r["score"] for r in eval_abx.EvalABX().eval_abx(args)}
    assert mine["within"] == pytest.approx(theirs["within"], abs=1e-5)
    assert mine["across"] == pytest.approx(theirs["across"], abs=1e-5)


# --- the recipe on a tiny corpus -------------------------------------------------------------------

from recipe_modules import assert_results_header, load_recipe as _recipe  # noqa: E402


def test_abx_recipe_writes_results_and_items(tmp_path, monkeypatch):
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))
    build_tone_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    _recipe("abx").main(["--upstream", "fbank", "--data", f"librispeech:{tmp_path / 'corpus'}", "--output_dir", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert_results_header(results, "abx")
    assert results["task"] == "abx" and results["upstream"] == "fbank" and results["split"] == "dev"
    metrics = results["metrics"]["features"]
    assert metrics["frame_rate"] == 100.0
    assert 0.0 <= metrics["within"] < 10.0 and 0.0 <= metrics["across"] < 25.0  # percent: tones are easy
    items = read_item_file(out / "dev.item")
    assert len(items) == results["num_items"] > 0 and {i.phone for i in items} == {"AA", "IY", "M"}
    # results.json says which audio preparation and weights produced the numbers.
    assert results["feature_extractor"]["do_normalize"] is False and results["feature_extractor"]["sampling_rate"] == SR
    assert len(results["weights_sha256"]) == 64
    (cached,) = (out / "features").glob("features-features-*.safetensors")  # keyed by content, not by path
    stamp = cached.stat().st_mtime_ns
    # A second run reads the cached features (file untouched) and scores the same.
    _recipe("abx").main(["--upstream", "fbank", "--data", f"librispeech:{tmp_path / 'corpus'}", "--output_dir", str(out),
                         "--item_file", str(out / "dev.item")])
    again = json.loads((out / "results.json").read_text())
    assert again["metrics"]["features"]["within"] == metrics["within"] and again["metrics"]["features"]["across"] == metrics["across"]
    assert cached.stat().st_mtime_ns == stamp and again["weights_sha256"] == results["weights_sha256"]


def test_export_is_scored_alike_by_the_reference_evaluator(tmp_path, monkeypatch):
    """--export writes what zerospeech-libriabx2 reads, and it agrees with our score within 0.5 points."""
    eval_abx = pytest.importorskip("zrc_abx2.eval_ABX")
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))
    build_tone_corpus(tmp_path / "corpus")
    out, export = tmp_path / "run", tmp_path / "export"
    results = _recipe("abx").main(["--upstream", "mfcc", "--data", f"librispeech:{tmp_path / 'corpus'}", "--output_dir", str(out),
                                   "--export", str(export)])
    metrics = results["metrics"]["features"]
    assert metrics["frame_step_seconds"] == pytest.approx(0.01)
    assert metrics["export"]["files"] == 8 and len(list((export / "features").glob("*.npy"))) == 8
    assert read_item_file(export / "features" / "dev.item") == read_item_file(out / "dev.item")
    array = np.load(export / "features" / "101-1-0000.npy")
    assert array.dtype == np.float32 and array.ndim == 2 and array.shape[1] == 39  # 13 MFCCs with deltas and double deltas
    args = eval_abx.EvalArgs(path_data=str(export / "features"), path_item_file=str(export / "features" / "dev.item"),
                             file_extension=".npy", feature_size=metrics["frame_step_seconds"], context_mode="within")
    theirs = {r["abx-s-condition"]: 100.0 * r["score"] for r in eval_abx.EvalABX().eval_abx(args)}
    assert abs(theirs["within"] - metrics["within"]) <= 0.5 and abs(theirs["across"] - metrics["across"]) <= 0.5
