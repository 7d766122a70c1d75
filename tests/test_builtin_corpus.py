"""The built-in corpus generator: layout, subsets, speakers, phone timings, determinism, reuse.

One tiny corpus (0.02 h, 9 speakers) is built per module with two workers, and a second copy with
one worker to check that the result depends only on the seed.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from repr_asr.data import builtin
from repr_asr.data.builtin import SPLIT_DIRS, CorpusExistsError, build_corpus, choose_labeled_subsets, plan_corpus
from repr_asr.data.phones import PHONES, read_alignments
from repr_asr.data.synthesis.effects import quantize_segments
from repr_asr.data.synthesis.phonesets import ESPEAK_TO_ARPABET, FESTIVAL_TO_ARPABET


HOURS, SEED = 0.02, 3


@pytest.fixture(scope="module")
def corpus(synthesiser, tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin") / "corpus"
    manifest = build_corpus(root, hours=HOURS, seed=SEED, num_workers=2, progress=False)
    return root, manifest


@pytest.fixture(scope="module")
def corpus_again(synthesiser, tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin_again") / "corpus"
    build_corpus(root, hours=HOURS, seed=SEED, num_workers=1, progress=False)
    return root


def _tree(base: Path):
    """{utt_id: (flac path, transcript)} of a SPK/CH tree, checking LibriSpeech naming on the way."""
    out = {}
    for trans in sorted(base.glob("*/*/*.trans.txt")):
        spk, ch = trans.parent.parent.name, trans.parent.name
        assert trans.name == f"{spk}-{ch}.trans.txt"
        assert spk.isdigit() and ch.isdigit()
        for line in trans.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            assert re.fullmatch(rf"{spk}-{ch}-\d{{4}}", utt_id), utt_id
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", text), f"{trans}: {text!r} is not LibriSpeech-normalised"
            out[utt_id] = (trans.parent / f"{utt_id}.flac", text)
    flacs = {p.stem for p in base.glob("*/*/*.flac")}
    assert flacs == set(out), f"{base}: audio files and transcript lines differ"
    return out


def _speakers_txt(root: Path):
    rows = {}
    for line in (root / "SPEAKERS.TXT").read_text().splitlines():
        if line.startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        assert len(fields) == 5, line
        rows[fields[0]] = (fields[1], fields[2], float(fields[3]), fields[4])
    return rows


def _subset_ids(root: Path):
    fin = root / "librispeech_finetuning"
    folds = [set(_tree(fin / "1h" / str(k) / "clean")) for k in range(6)]
    return folds, set(_tree(fin / "9h" / "clean"))


def test_layout_and_speakers_file(corpus):
    root, manifest = corpus
    speakers = _speakers_txt(root)
    for split, directory in SPLIT_DIRS.items():
        utts = _tree(root / directory)
        assert utts, f"{directory} is empty"
        assert manifest["splits"][directory]["utterances"] == len(utts)
        for spk in {u.split("-")[0] for u in utts}:
            sex, subset, minutes, name = speakers[spk]
            assert sex in ("M", "F") and subset == directory and minutes > 0 and name
    listed = {spk for spk in speakers}
    on_disk = {p.name for d in SPLIT_DIRS.values() for p in (root / d).iterdir()}
    assert listed == on_disk


def test_held_out_speakers_and_sentences(corpus):
    root, _ = corpus
    trees = {d: _tree(root / d) for d in SPLIT_DIRS.values()}
    spk = {d: {u.split("-")[0] for u in t} for d, t in trees.items()}
    texts = {d: {text for _, text in t.values()} for d, t in trees.items()}
    assert not spk["dev-clean"] & spk["test-clean"]
    for held_out in ("dev-clean", "test-clean"):
        assert not spk[held_out] & spk["train-clean-100"]
        assert not texts[held_out] & texts["train-clean-100"], "a dev/test sentence also occurs in training"
        genders = {_speakers_txt(root)[s][0] for s in spk[held_out]}
        assert genders == {"M", "F"}, f"{held_out} should hold both genders"
    assert {_speakers_txt(root)[s][0] for s in spk["train-clean-100"]} == {"M", "F"}


@pytest.fixture(scope="module")
def labeled_corpus(labeled_corpus_dir):
    """A corpus whose pool holds a little over 10 minutes: train-10min, but no train-1h (conftest's)."""
    return labeled_corpus_dir, json.loads((labeled_corpus_dir / "manifest.json").read_text())


def test_labeled_subsets_are_as_long_as_their_names(labeled_corpus):
    root, manifest = labeled_corpus
    pool = _tree(root / "train-clean-100")
    folds, nine = _subset_ids(root)
    assert folds[0] and not any(folds[1:]) and not nine
    assert set(folds[0]) <= set(pool)
    durations = {u: soundfile.info(str(path)).duration for u, (path, _) in pool.items()}
    assert sum(durations[u] for u in folds[0]) == pytest.approx(600.0, rel=0.05)
    # Files of the subsets are the pool's files (hard links or copies with the same content).
    some = sorted(folds[0])[0]
    spk, ch, _ = some.split("-")
    linked = root / "librispeech_finetuning" / "1h" / "0" / "clean" / spk / ch / f"{some}.flac"
    assert linked.read_bytes() == pool[some][0].read_bytes()
    assert manifest["labeled_subsets"]["train-10min"]["utterances"] == len(folds[0])
    assert manifest["labeled_subsets"]["train-10min"]["hours"] == pytest.approx(1 / 6, rel=0.05)
    assert set(manifest["missing_labeled_subsets"]) == {"train-1h", "train-10h"}
    assert "needs 60 min" in manifest["missing_labeled_subsets"]["train-1h"]
    assert (root / "librispeech_finetuning" / "phones" / "10min_phones.txt").exists()
    assert not (root / "librispeech_finetuning" / "phones" / "1h_phones.txt").exists()


def test_a_corpus_too_small_for_ten_minutes_has_no_labeled_subset(corpus):
    root, manifest = corpus
    assert not (root / "librispeech_finetuning" / "1h").exists()
    assert set(manifest["missing_labeled_subsets"]) == {"train-10min", "train-1h", "train-10h"}


@pytest.mark.parametrize("pool_hours, offered", [(11.0, {"train-10min", "train-1h", "train-10h"}),
                                                  (1.2, {"train-10min", "train-1h"}),
                                                  (0.7, {"train-10min"}), (0.1, set())])
def test_choose_labeled_subsets_durations_at_scale(pool_hours, offered):
    rng = np.random.default_rng(0)
    durations, total = {}, 0.0
    while total < pool_hours * 3600:
        durations[f"u{len(durations)}"] = d = float(rng.uniform(2, 16))
        total += d
    subsets = choose_labeled_subsets(list(durations), durations, seed=0)
    splits = builtin.labeled_splits(subsets)
    assert set(splits) == offered
    seconds = lambda ids: sum(durations[u] for u in ids)  # noqa: E731
    nominal = {"train-10min": 600, "train-1h": 3600, "train-10h": 36000}
    for name, ids in splits.items():
        assert seconds(ids) == pytest.approx(nominal[name], rel=0.05), name
        assert len(set(ids)) == len(ids)
    if "train-1h" in splits:  # nested as in Libri-light
        assert set(splits["train-10min"]) < set(splits["train-1h"])
    if "train-10h" in splits:
        assert set(splits["train-1h"]) < set(splits["train-10h"])
    assert set(builtin.missing_subsets(total, subsets)) == set(nominal) - offered


def test_phone_alignments_cover_every_utterance(corpus):
    root, _ = corpus
    alignments = read_alignments(root / "librispeech_finetuning" / "phones")
    for directory in SPLIT_DIRS.values():
        for utt_id, (path, text) in _tree(root / directory).items():
            seg = alignments[utt_id]
            duration = soundfile.info(str(path)).duration
            assert seg["start"][0] == 0.0
            assert seg["start"][1:] == seg["end"][:-1], f"{utt_id}: segments are not contiguous"
            assert abs(seg["end"][-1] - duration) <= 0.01, f"{utt_id}: alignment ends at {seg['end'][-1]}, audio at {duration}"
            assert set(seg["phone"]) <= set(PHONES)
            speech = [p for p in seg["phone"] if p != "SIL"]
            assert len(speech) >= len(text.split()), f"{utt_id}: fewer phones than words"


def test_exact_tiling_in_synthesis_records(corpus):
    root, _ = corpus
    for record_file in sorted((root / ".synthesis" / "tasks").glob("*.json")):
        for record in json.loads(record_file.read_text()):
            phones = record["phones"]
            assert phones[0][1] == 0.0 and phones[-1][2] == pytest.approx(record["duration"], abs=1e-6)
            assert all(a[2] == b[1] for a, b in zip(phones, phones[1:]))
            assert all(e > s for _, s, e in phones)


def test_audio_is_16k_mono_finite_and_not_silent(corpus):
    root, _ = corpus
    for path in sorted(root.glob("*/*/*/*.flac")):
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16"), path
        audio, _ = soundfile.read(str(path), dtype="float32")
        assert np.isfinite(audio).all() and 0.05 < np.abs(audio).max() <= 1.0, path


def test_same_seed_same_corpus(corpus, corpus_again):
    root, _ = corpus
    assert (root / "SPEAKERS.TXT").read_text() == (corpus_again / "SPEAKERS.TXT").read_text()
    for directory in SPLIT_DIRS.values():
        first, second = _tree(root / directory), _tree(corpus_again / directory)
        assert {u: t for u, (_, t) in first.items()} == {u: t for u, (_, t) in second.items()}
        for utt_id in sorted(first)[:3]:
            a, _ = soundfile.read(str(first[utt_id][0]), dtype="int16")
            b, _ = soundfile.read(str(second[utt_id][0]), dtype="int16")
            assert np.array_equal(a, b), f"{utt_id}: audio differs between two builds with the same seed"


@pytest.mark.needs_synthesiser  # plan_corpus reads Festival's dictionaries
def test_other_seed_other_corpus():
    a, b = plan_corpus(HOURS, seed=SEED), plan_corpus(HOURS, seed=SEED + 1)
    assert [u.text for u in a.utterances] != [u.text for u in b.utterances]
    assert [s.speaker_id for s in a.speakers] != [s.speaker_id for s in b.speakers]


def test_rerun_reuses_and_repairs(corpus):
    root, _ = corpus
    files = sorted(root.glob("train-clean-100/*/*/*.flac"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    victim = files[0]
    content = victim.read_bytes()
    victim.unlink()
    build_corpus(root, hours=HOURS, seed=SEED, num_workers=1, progress=False)
    assert victim.read_bytes() == content, "a re-synthesised utterance differs from the first build"
    unchanged = [p for p in files if p.stat().st_mtime_ns == stamps[p]]
    # Only the work item (one speaker's chunk) holding the deleted file was synthesised again.
    assert len(unchanged) >= len(files) - builtin.TASK_SIZE


def test_other_arguments_are_refused(corpus, tmp_path):
    root, _ = corpus
    with pytest.raises(CorpusExistsError, match="hours"):
        build_corpus(root, hours=HOURS * 2, seed=SEED, progress=False)
    foreign = tmp_path / "librispeech"
    (foreign / "train-clean-100").mkdir(parents=True)
    with pytest.raises(CorpusExistsError, match="did not write"):
        build_corpus(foreign, hours=HOURS, seed=SEED, progress=False)


@pytest.mark.needs_synthesiser  # plan_corpus reads Festival's dictionaries
def test_speakers_vary_and_acoustics_vary():
    plan = plan_corpus(1.0, seed=0)
    speakers = plan.speakers
    assert len(speakers) >= 30 and {s.gender for s in speakers} == {"M", "F"}
    assert {s.backend for s in speakers} == {"festival", "espeak"}
    assert len({(s.voice, round(s.rate, 3), round(s.vtl, 3)) for s in speakers}) == len(speakers)
    assert np.std([s.vtl for s in speakers]) > 0.02 and np.std([s.rate for s in speakers]) > 0.05
    effects = [u.effects for u in plan.utterances]
    noisy = [e for e in effects if e.noise is not None]
    assert 0.3 < len(noisy) / len(effects) < 0.9 and np.std([e.snr_db for e in noisy]) > 3
    assert 0.1 < sum(e.rt60 is not None for e in effects) / len(effects) < 0.6
    assert plan.vocabulary_size > 3000


def test_phone_maps_land_in_the_shared_inventory():
    for table in (FESTIVAL_TO_ARPABET, ESPEAK_TO_ARPABET):
        for source, target in table.items():
            assert target is None or set(target) <= set(PHONES), source
    assert set(PHONES) - {"SIL"} <= {p for t in FESTIVAL_TO_ARPABET.values() if t for p in t}


def test_quantize_segments_tiles_exactly():
    segments = [("SIL", 0.0, 0.1003), ("AH", 0.1003, 0.10031), ("T", 0.10031, 0.5), ("SIL", 0.5, 0.61)]
    out = quantize_segments(segments, num_samples=9999, sampling_rate=16000)
    assert out[0][1] == 0.0 and out[-1][2] == 9999 / 16000
    assert all(a[2] == b[1] and b[2] > b[1] for a, b in zip(out, out[1:]))
    assert [p for p, _, _ in out] == ["SIL", "AH", "T", "SIL"] or [p for p, _, _ in out] == ["SIL", "T", "SIL"]


def test_the_loader_offers_only_the_subsets_the_corpus_fills(labeled_corpus):
    from repr_asr.data import MissingSplitError, load_corpus

    root, manifest = labeled_corpus
    corpus = load_corpus(f"builtin:{root}")
    assert len(corpus["train-10min"]) == manifest["labeled_subsets"]["train-10min"]["utterances"]
    assert sum(corpus["train-10min"]["duration"]) == pytest.approx(600.0, rel=0.05)
    for name in ("train-1h", "train-10h"):
        with pytest.raises(MissingSplitError, match="needs .* min"):
            corpus[name]
