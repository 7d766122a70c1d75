"""hf: corpora — a save_to_disk folder with its own column and split names."""

import io

import datasets
import numpy as np
import pytest
import soundfile

from repr_asr.audio import decode_audio
from repr_asr.data import SPLITS, load_corpus
from repr_asr.data.librispeech import CorpusError

SR = 16000


def _wave(seconds, seed):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def _flac_bytes(wave):
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, SR, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _save(tmp_path, with_test=True):
    """train: 20 utterances of 0.2-0.585 s as embedded FLAC bytes; validation (and test) as file paths."""
    waves = {}

    def rows(split, n, as_path):
        out = {"utt": [], "sound": [], "sentence": [], "client": [], "sex": []}
        for i in range(n):
            utt = f"{split}-{i}"
            wave = _wave(0.2 + 0.02 * i, hash(utt) % 1000)
            waves[utt] = wave
            if as_path:
                path = tmp_path / "wav" / f"{utt}.wav"
                path.parent.mkdir(exist_ok=True)
                soundfile.write(str(path), wave, SR, subtype="FLOAT")
                cell = {"path": str(path), "bytes": None}
            else:
                cell = {"path": f"{utt}.flac", "bytes": _flac_bytes(wave)}
            out["utt"].append(utt)
            out["sound"].append(cell)
            out["sentence"].append(f"It's number {i}, isn't it?")
            out["client"].append(f"spk{i % 3}")
            out["sex"].append(["female", "male", None][i % 3])
        return datasets.Dataset.from_dict(out).cast_column("sound", datasets.Audio(sampling_rate=SR))

    source = {"train": rows("train", 20, False), "validation": rows("validation", 3, True)}
    if with_test:
        source["test"] = rows("test", 2, True)
    folder = tmp_path / "saved"
    datasets.DatasetDict(source).save_to_disk(str(folder))
    return folder, waves


OPTIONS = dict(audio_column="sound", text_column="sentence", id_column="utt", speaker_column="client", gender_column="sex")


def test_save_to_disk_round_trip_with_renamed_columns(tmp_path):
    folder, waves = _save(tmp_path)
    before = sorted(p.name for p in folder.rglob("*"))
    corpus = load_corpus(f"hf:{folder}", **OPTIONS)
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing written into the source folder
    assert corpus["train"].features["audio"] == datasets.Audio(decode=False)
    for split in SPLITS:
        assert set(corpus[split].column_names) == {"id", "audio", "text", "speaker_id", "gender", "duration", "phones"}
    assert corpus["dev"]["id"] == ["validation-0", "validation-1", "validation-2"]
    assert corpus["validation"]["id"] == corpus["dev"]["id"]  # source name kept
    assert corpus["test"]["id"] == ["test-0", "test-1"]
    row = corpus["train"][4]
    assert row["id"] == "train-4"
    assert row["text"] == "IT'S NUMBER 4 ISN'T IT"
    assert row["speaker_id"] == "spk1" and row["gender"] == "M"
    assert corpus["train"][2]["gender"] == ""  # None → unknown
    assert row["phones"] == {"phone": [], "start": [], "end": []}
    for split in ("train", "dev"):
        for row in corpus[split]:
            wave = decode_audio(row["audio"], name=row["id"])
            assert row["duration"] == pytest.approx(len(waves[row["id"]]) / SR, abs=1e-6)
            np.testing.assert_allclose(wave, waves[row["id"]], atol=1e-4)  # 16-bit FLAC / float WAV


def test_derived_splits_nest_and_are_seeded(tmp_path):
    folder, _ = _save(tmp_path, with_test=False)
    seconds = {"train-10h": 3.0, "train-1h": 1.5, "train-10min": 0.5}
    corpus = load_corpus(f"hf:{folder}", subset_seconds=seconds, seed=1, **OPTIONS)
    again = load_corpus(f"hf:{folder}", subset_seconds=seconds, seed=1, **OPTIONS)
    other = load_corpus(f"hf:{folder}", subset_seconds=seconds, seed=2, **OPTIONS)
    ids = {s: set(corpus[s]["id"]) for s in SPLITS}
    assert ids["train-10min"] < ids["train-1h"] < ids["train-10h"] <= ids["pretrain"]
    for split, limit in seconds.items():
        total = sum(corpus[split]["duration"])
        assert total <= limit + 1e-9
        assert total > limit - 0.6  # one more utterance (< 0.6 s) would have exceeded the limit
    assert len(ids["test"]) == 1 and not ids["test"] & ids["pretrain"]  # 5 % of 20 held out
    assert ids["dev"] == {"validation-0", "validation-1", "validation-2"}
    assert all(set(again[s]["id"]) == ids[s] for s in SPLITS)
    assert any(set(other[s]["id"]) != ids[s] for s in SPLITS)


def test_bad_options_name_column_and_folder(tmp_path):
    folder, _ = _save(tmp_path)
    with pytest.raises(CorpusError, match="no column 'transcript'.*text_column"):
        load_corpus(f"hf:{folder}", **{**OPTIONS, "text_column": "transcript"})
    not_saved = tmp_path / "empty"
    not_saved.mkdir()
    with pytest.raises(CorpusError, match=f"{not_saved}: not a dataset saved with save_to_disk"):
        load_corpus(f"hf:{not_saved}")


def test_single_dataset_and_missing_columns(tmp_path):
    wave = _wave(0.3, 0)
    path = tmp_path / "a.wav"
    soundfile.write(str(path), wave, SR)
    ds = datasets.Dataset.from_dict({"audio": [str(path)] * 4, "text": ["a b", None, "d", "e"]})
    ds.save_to_disk(str(tmp_path / "single"))
    corpus = load_corpus(f"hf:{tmp_path / 'single'}")
    assert corpus["pretrain"][0]["audio"] == str(path)  # a path column stays a path
    assert set(corpus["train"]["speaker_id"]) == {""}
    assert corpus["train"]["text"] == ["A B", "", "D", "E"]
    assert corpus["train"]["id"] == ["train-000000", "train-000001", "train-000002", "train-000003"]


def _tiny_source(tmp_path, splits: dict, bad_bytes: set = frozenset()):
    """save_to_disk folder with ``{split: [ids]}`` as embedded FLAC bytes; ids in ``bad_bytes`` get a truncated file."""
    source = {}
    for split, ids in splits.items():
        cells = []
        for i, utt in enumerate(ids):
            data = _flac_bytes(_wave(0.5, i))
            cells.append({"path": f"{utt}.flac", "bytes": data[: len(data) // 2] if utt in bad_bytes else data})
        source[split] = datasets.Dataset.from_dict({"id": ids, "audio": cells, "text": ["a"] * len(ids)}).cast_column(
            "audio", datasets.Audio(sampling_rate=SR)
        )
    folder = tmp_path / "source"
    datasets.DatasetDict(source).save_to_disk(str(folder))
    return folder


def test_id_in_train_and_validation_is_refused(tmp_path):
    folder = _tiny_source(tmp_path, {"train": ["0", "1", "2", "3"], "validation": ["0", "1"]})
    with pytest.raises(CorpusError, match=r"0, 1 appear in both training split 'train' and evaluation split 'validation'.*id_column=None"):
        load_corpus(f"hf:{folder}")
    # Ids that only number the rows of each split: generated ids are unique.
    corpus = load_corpus(f"hf:{folder}", id_column=None)
    assert corpus["dev"]["id"] == ["validation-000000", "validation-000001"]


def test_id_twice_in_one_split_is_refused(tmp_path):
    folder = _tiny_source(tmp_path, {"train": ["a", "b", "a", "c"]})
    with pytest.raises(CorpusError, match=r"split 'train' holds utterance id\(s\) a more than once"):
        load_corpus(f"hf:{folder}")


def test_verify_names_bad_embedded_audio_once(tmp_path):
    from repr_asr.data.verify import BadAudioError

    ids = [f"u{i}" for i in range(20)]
    folder = _tiny_source(tmp_path, {"train": ids}, bad_bytes={"u7"})
    corpus = load_corpus(f"hf:{folder}", subset_seconds={"train-10h": 100.0, "train-1h": 100.0, "train-10min": 100.0})
    held_out = set(corpus["dev"]["id"]) | set(corpus["test"]["id"])
    with pytest.raises(BadAudioError) as caught:
        load_corpus(f"hf:{folder}", verify=True, subset_seconds={"train-10h": 100.0, "train-1h": 100.0, "train-10min": 100.0})
    [bad] = caught.value.bad_files  # one entry although the utterance is in several splits
    assert bad.file == "utterance u7 (u7.flac)" and bad.utterances == ["u7"]
    assert bad.reason.startswith("cannot decode audio")
    expected = {"train"} | ({"dev"} if "u7" in corpus["dev"]["id"] else set()) | ({"test"} if "u7" in corpus["test"]["id"] else set())
    if "u7" not in held_out:
        expected |= {"pretrain", "train-10h", "train-1h", "train-10min"}
    assert set(bad.splits) == expected
