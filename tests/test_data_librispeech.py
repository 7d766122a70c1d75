"""LibriSpeech / Libri-light reader on tiny trees built in tmp_path."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from repr_asr.audio import decode_audio
from repr_asr.data import SPLITS, load_corpus
from repr_asr.data.librispeech import CorpusError, MissingSplitError
from repr_asr.data.phones import write_alignments

SR = 16000
GENDERS = {"11": "F", "12": "M", "13": "F", "21": "M", "31": "F"}


def _flac(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), wave.astype(np.float32), SR, subtype="PCM_16")


def _chapter(split_dir: Path, spk: str, chapter: str, n: int, seed: int, text="hello, world's end") -> list[str]:
    """n utterances SPK-CHAPTER-000i with durations 0.2 + 0.1 i seconds; returns their ids."""
    ids = []
    lines = []
    for i in range(n):
        utt = f"{spk}-{chapter}-{i:04d}"
        _flac(split_dir / spk / chapter / f"{utt}.flac", 0.2 + 0.1 * i, seed + i)
        lines.append(f"{utt} {text.upper()} {i}\n")
        ids.append(utt)
    (split_dir / spk / chapter / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return ids


def build_tree(root: Path, finetuning_beside: bool = False) -> dict:
    """LibriSpeech root with train-clean-100, dev-clean, test-clean, dev-other, a 1h (6 folds) + 9h tree and phones."""
    ids = {}
    ids["train-clean-100"] = _chapter(root / "train-clean-100", "11", "100", 3, 0) + _chapter(root / "train-clean-100", "12", "200", 2, 5)
    ids["dev-clean"] = _chapter(root / "dev-clean", "21", "300", 2, 10)
    ids["dev-other"] = _chapter(root / "dev-other", "31", "400", 2, 20)
    ids["test-clean"] = _chapter(root / "test-clean", "31", "500", 1, 30)
    (root / "SPEAKERS.TXT").write_text(
        "; ID |SEX| SUBSET | MINUTES | NAME\n" + "".join(f"{s} | {g} | train-clean-100 | 25.0 | Name {s}\n" for s, g in GENDERS.items())
    )
    ft = (root.parent if finetuning_beside else root) / "librispeech_finetuning"
    ids["folds"] = {}
    for k in range(6):
        ids["folds"][k] = _chapter(ft / "1h" / str(k) / "clean", "11", f"6{k}", 1, 40 + k) + _chapter(
            ft / "1h" / str(k) / "other", "13", f"7{k}", 1, 50 + k
        )
    ids["9h"] = _chapter(ft / "9h" / "clean", "12", "800", 2, 60) + _chapter(ft / "9h" / "other", "13", "900", 1, 70)
    alignments = {
        utt: [("SIL", 0.0, 0.05), ("HH", 0.05, 0.12), ("AH0", 0.12, 0.2)] for utt in ids["dev-clean"] + ids["folds"][0]
    }
    write_alignments(ft / "phones", {u: a for u, a in alignments.items() if u in ids["dev-clean"]}, subset="dev-clean")
    write_alignments(ft / "phones", {u: a for u, a in alignments.items() if u in ids["folds"][0]}, subset="10min")
    ids["aligned"] = alignments
    return ids


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("beside", [False, True])
def test_splits_nesting_and_columns(tmp_path, beside):
    root = tmp_path / "LibriSpeech"
    ids = build_tree(root, finetuning_beside=beside)
    corpus = load_corpus(f"librispeech:{root}")
    for split in SPLITS:
        assert split in corpus
    for original in ("train-clean-100", "dev-clean", "dev-other", "test-clean"):
        assert sorted(corpus[original]["id"]) == sorted(ids[original])
    assert sorted(corpus["pretrain"]["id"]) == sorted(ids["train-clean-100"])
    assert corpus["dev"]["id"] == corpus["dev-clean"]["id"]
    assert corpus["test"]["id"] == corpus["test-clean"]["id"]
    ten_min, one_h, ten_h = (set(corpus[s]["id"]) for s in ("train-10min", "train-1h", "train-10h"))
    assert ten_min == set(ids["folds"][0])  # fold 0, clean and other
    assert one_h == {u for fold in ids["folds"].values() for u in fold}
    assert ten_h == one_h | set(ids["9h"])
    assert ten_min < one_h < ten_h
    assert set(corpus["train-10h"].column_names) == {"id", "audio", "text", "speaker_id", "gender", "duration", "phones"}


def _content(corpus) -> dict:
    """Every split's rows without the audio path (which differs between layouts of the same data)."""
    return {name: [{k: v for k, v in row.items() if k != "audio"} for row in split] for name, split in corpus.items()}


def test_unpacked_archives_folder_is_a_root_too(tmp_path):
    # As the archives unpack (torchaudio's LIBRISPEECH / LibriLightLimited root): DIR/LibriSpeech/dev-clean/...
    # beside DIR/librispeech_finetuning/; and the same data with librispeech_finetuning/ inside LibriSpeech/.
    unpacked = tmp_path / "unpacked"
    ids = build_tree(unpacked / "LibriSpeech", finetuning_beside=True)
    build_tree(tmp_path / "inside" / "LibriSpeech", finetuning_beside=False)
    from_unpacked = load_corpus(f"librispeech:{unpacked}")
    from_librispeech = load_corpus(f"librispeech:{unpacked / 'LibriSpeech'}")
    from_inside = load_corpus(f"librispeech:{tmp_path / 'inside' / 'LibriSpeech'}")
    assert sorted(from_unpacked) == sorted(from_librispeech) == sorted(from_inside)
    assert set(SPLITS) | {"dev-clean", "dev-other", "test-clean", "train-clean-100"} == set(from_unpacked)
    assert sorted(from_unpacked["dev"]["id"]) == sorted(ids["dev-clean"])
    assert _content(from_unpacked) == _content(from_librispeech) == _content(from_inside)
    assert from_unpacked["dev"][0]["phones"]["phone"] == ["SIL", "HH", "AH"]  # alignments found beside
    assert set(from_unpacked["pretrain"]["gender"]) == {"F", "M"}  # LibriSpeech/SPEAKERS.TXT read


def test_fold_option(tmp_path):
    root = tmp_path / "LibriSpeech"
    ids = build_tree(root)
    corpus = load_corpus(f"librispeech:{root}", fold=3)
    assert set(corpus["train-10min"]["id"]) == set(ids["folds"][3])


def test_row_contents(tmp_path):
    root = tmp_path / "LibriSpeech"
    build_tree(root)
    corpus = load_corpus(f"librispeech:{root}")
    row = next(r for r in corpus["pretrain"] if r["id"] == "11-100-0002")
    assert row["speaker_id"] == "11" and row["gender"] == "F"
    assert row["text"] == "HELLO WORLD'S END 2"  # normalised: comma removed, apostrophe kept
    assert row["duration"] == pytest.approx(0.4, abs=1e-4)
    wave = decode_audio(row["audio"])
    assert wave.shape == (int(0.4 * SR),)
    genders = dict(zip(corpus["dev-other"]["speaker_id"], corpus["dev-other"]["gender"]))
    assert genders == {"31": "F"}
    assert set(corpus["pretrain"]["gender"]) == {"F", "M"}


def test_phones_from_finetuning_dir(tmp_path):
    root = tmp_path / "LibriSpeech"
    build_tree(root)
    corpus = load_corpus(f"librispeech:{root}")
    for split in ("dev", "train-10min"):
        for row in corpus[split]:
            assert row["phones"]["phone"] == ["SIL", "HH", "AH"]
            np.testing.assert_allclose(row["phones"]["start"], [0.0, 0.05, 0.12], atol=1e-9)
            np.testing.assert_allclose(row["phones"]["end"], [0.05, 0.12, 0.2], atol=1e-9)
    unaligned = [r for r in corpus["pretrain"]]
    assert all(r["phones"] == {"phone": [], "start": [], "end": []} for r in unaligned)


def test_missing_subsets_load_what_exists(tmp_path):
    root = tmp_path / "LibriSpeech"
    _chapter(root / "dev-clean", "21", "300", 2, 0)
    corpus = load_corpus(f"librispeech:{root}")
    assert set(corpus) == {"dev-clean", "dev"}
    assert all(g == "" for g in corpus["dev"]["gender"])  # no SPEAKERS.TXT
    with pytest.raises(MissingSplitError, match="train-1h.*librispeech_finetuning/1h"):
        corpus["train-1h"]
    with pytest.raises(KeyError, match="test-clean"):
        corpus["test"]


def test_transcript_without_audio_names_file(tmp_path):
    root = tmp_path / "LibriSpeech"
    _chapter(root / "dev-clean", "21", "300", 2, 0)
    trans = root / "dev-clean" / "21" / "300" / "21-300.trans.txt"
    trans.write_text(trans.read_text() + "21-300-0009 MISSING AUDIO\n")
    with pytest.raises(CorpusError, match=r"21-300\.trans\.txt:3: utterance 21-300-0009 has no audio"):
        load_corpus(f"librispeech:{root}")


def test_audio_without_transcript(tmp_path):
    root = tmp_path / "LibriSpeech"
    _chapter(root / "train-clean-100", "21", "300", 2, 0)
    _flac(root / "train-clean-100" / "21" / "300" / "21-300-0007.flac", 0.3, 9)
    with pytest.raises(CorpusError, match=r"21-300-0007\.flac: audio file without a transcript"):
        load_corpus(f"librispeech:{root}")
    corpus = load_corpus(f"librispeech:{root}", allow_untranscribed=True)
    row = next(r for r in corpus["pretrain"] if r["id"] == "21-300-0007")
    assert row["text"] == "" and row["duration"] == pytest.approx(0.3, abs=1e-4)


def test_corrupt_audio_names_file(tmp_path):
    root = tmp_path / "LibriSpeech"
    _chapter(root / "dev-clean", "21", "300", 2, 0)
    bad = root / "dev-clean" / "21" / "300" / "21-300-0001.flac"
    bad.write_bytes(b"not a flac file")
    with pytest.raises(CorpusError, match=r"21-300-0001\.flac: cannot read the audio header"):
        load_corpus(f"librispeech:{root}", cache_durations=False)


def test_duration_cache_is_invalidated_by_changes(tmp_path):
    root = tmp_path / "LibriSpeech"
    _chapter(root / "dev-clean", "21", "300", 1, 0)
    assert load_corpus(f"librispeech:{root}")["dev"]["duration"] == [pytest.approx(0.2, abs=1e-4)]
    assert any((tmp_path / "cache" / "durations").iterdir())
    _flac(root / "dev-clean" / "21" / "300" / "21-300-0000.flac", 0.7, 0)
    assert load_corpus(f"librispeech:{root}")["dev"]["duration"] == [pytest.approx(0.7, abs=1e-4)]


def test_not_a_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="recipes/make_corpus.py --output_dir"):
        load_corpus(f"builtin:{tmp_path / 'nothing'}")
    with pytest.raises(CorpusError, match="not a LibriSpeech root"):
        load_corpus(f"librispeech:{tmp_path}")
    with pytest.raises(ValueError, match="unknown kind"):
        load_corpus(f"kaldi:{tmp_path}")


def test_builtin_uses_same_reader(tmp_path):
    root = tmp_path / "builtin"
    ids = build_tree(root)
    corpus = load_corpus(f"builtin:{root}")
    assert sorted(corpus["train-10min"]["id"]) == sorted(ids["folds"][0])


# ------------------------------------------------------------------------------------------------
# Leaks, text encodings and decoding every file up front (verify).


def test_evaluation_utterance_in_training_split_is_refused(tmp_path):
    root = tmp_path / "LibriSpeech"
    _chapter(root / "train-clean-100", "11", "100", 2, 0)
    _chapter(root / "dev-clean", "21", "300", 2, 10)
    _chapter(root / "train-clean-100", "21", "300", 1, 10)  # 21-300-0000 is also a dev-clean utterance
    with pytest.raises(CorpusError, match=r"21-300-0000 appear in both training split 'train-clean-100' and evaluation split 'dev-clean'"):
        load_corpus(f"librispeech:{root}")


def test_libri_light_subsets_nested_in_pretrain_are_not_a_leak(tmp_path):
    root = tmp_path / "LibriSpeech"
    train = _chapter(root / "train-clean-100", "11", "100", 3, 0)
    _chapter(root / "dev-clean", "21", "300", 1, 10)
    # Libri-light's labeled subsets are utterances of the LibriSpeech training sets: same ids, same files.
    _chapter(tmp_path / "librispeech_finetuning" / "1h" / "0" / "clean", "11", "100", 2, 0)
    corpus = load_corpus(f"librispeech:{root}")
    assert set(corpus["train-10min"]["id"]) == set(train[:2]) < set(corpus["pretrain"]["id"])


def test_latin1_transcript_names_file_and_line(tmp_path):
    root = tmp_path / "LibriSpeech"
    _chapter(root / "dev-clean", "21", "300", 2, 0)
    trans = root / "dev-clean" / "21" / "300" / "21-300.trans.txt"
    trans.write_bytes("21-300-0000 HELLO\n21-300-0001 CAFÉ AU LAIT\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"21-300\.trans\.txt:2: not UTF-8 text \(byte 0xc9 at column 16\).*iconv"):
        load_corpus(f"librispeech:{root}")
    trans.write_bytes("\ufeff21-300-0000 HELLO\n21-300-0001 CAFÉ AU LAIT\n".encode("utf-8"))  # UTF-8 with a BOM reads
    assert load_corpus(f"librispeech:{root}")["dev"]["text"] == ["HELLO", "CAFE AU LAIT"]


def test_latin1_speakers_and_alignments_name_file_and_line(tmp_path):
    root = tmp_path / "LibriSpeech"
    build_tree(root)
    speakers = root / "SPEAKERS.TXT"
    original = speakers.read_bytes()
    speakers.write_bytes(original + "41 | F | dev-clean | 8.0 | Zoé\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"SPEAKERS\.TXT:7: not UTF-8 text"):
        load_corpus(f"librispeech:{root}")
    speakers.write_bytes(original)
    alignments = root / "librispeech_finetuning" / "phones" / "dev-clean.txt"
    alignments.write_bytes(alignments.read_bytes() + "21-300-0009 é\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"dev-clean\.txt:3: not UTF-8 text"):
        load_corpus(f"librispeech:{root}")


def _break_files(root: Path) -> dict[str, Path]:
    """Truncate a training FLAC that a Libri-light fold shares (hard link) and put NaN in a dev WAV."""
    fold = root / "librispeech_finetuning" / "1h" / "0" / "clean" / "11" / "100"
    fold.mkdir(parents=True)
    train = root / "train-clean-100" / "11" / "100"
    (fold / "11-100-0001.flac").hardlink_to(train / "11-100-0001.flac")
    (fold / "11-100.trans.txt").write_text("11-100-0001 HELLO\n")
    with open(train / "11-100-0001.flac", "r+b") as handle:  # truncates both names of the file
        handle.truncate(int(0.6 * handle.seek(0, 2)))
    dev = root / "dev-clean" / "21" / "300"
    (dev / "21-300-0001.flac").unlink()
    wave = np.full(SR // 5, 0.1, np.float32)
    wave[50] = np.nan
    soundfile.write(str(dev / "21-300-0001.wav"), wave, SR, subtype="FLOAT")
    return {"truncated": train / "11-100-0001.flac", "nan": dev / "21-300-0001.wav"}


def test_verify_lists_every_bad_file_once(tmp_path):
    from repr_asr.data.verify import BadAudioError, find_bad_audio

    root = tmp_path / "LibriSpeech"
    build_tree(root)
    bad = _break_files(root)
    corpus = load_corpus(f"librispeech:{root}")  # headers are fine: the bad files pass a plain load
    with pytest.raises(BadAudioError) as caught:
        load_corpus(f"librispeech:{root}", verify=True)
    error = caught.value
    assert isinstance(error, CorpusError)
    assert [b.file for b in error.bad_files] == [str(bad["nan"]), str(bad["truncated"])]  # corpus order, each once
    nan, truncated = error.bad_files
    assert "NaN" in nan.reason and nan.utterances == ["21-300-0001"] and set(nan.splits) == {"dev-clean", "dev"}
    assert "cannot decode audio" in truncated.reason and truncated.utterances == ["11-100-0001"]
    assert set(truncated.splits) == {"train-clean-100", "pretrain", "train-10min", "train-1h", "train-10h"}
    message = str(error)
    assert "2 of" in message and str(bad["nan"]) in message and str(bad["truncated"]) in message
    # Each distinct file (the hard link is the same file; dev is dev-clean) is decoded once.
    inodes = {(os.stat(p).st_dev, os.stat(p).st_ino) for split in corpus.values() for p in split["audio"]}
    assert find_bad_audio(corpus, progress=False)[1] == len(inodes)


def test_verify_command_line(tmp_path, capsys):
    from repr_asr.data.verify import main

    root = tmp_path / "LibriSpeech"
    build_tree(root)
    assert main([f"librispeech:{root}"]) == 0
    bad = _break_files(root)
    capsys.readouterr()
    assert main([f"librispeech:{root}", "--num_workers", "1"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{bad['nan']}: ") and lines[1].startswith(f"{bad['truncated']}: ")
    assert main([f"librispeech:{tmp_path / 'nowhere'}"]) == 2
    assert "not a LibriSpeech root" in capsys.readouterr().err


def test_verify_lists_zero_length_files_and_transcripts_that_normalise_to_nothing(tmp_path, capsys):
    """A zero-length file stops a plain load at its header; verify lists it with every other bad file, and the
    utterances of labeled splits whose transcript holds no letter or digit (no error rate exists for them)."""
    from repr_asr.data.verify import main

    root = tmp_path / "LibriSpeech"
    build_tree(root)
    bad = _break_files(root)
    empty = root / "test-clean" / "31" / "500" / "31-500-0000.flac"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match="31-500-0000.flac"):
        load_corpus(f"librispeech:{root}")
    trans = root / "dev-clean" / "21" / "300" / "21-300.trans.txt"
    trans.write_text(trans.read_text().replace("21-300-0000 HELLO, WORLD'S END 0", "21-300-0000 -- !"))
    capsys.readouterr()
    assert main([f"librispeech:{root}", "--num_workers", "1"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(bad["nan"]), str(empty), str(bad["truncated"]), "utterance 21-300-0000"]
    assert "normalises to nothing" in lines[-1] and "dev-clean" in lines[-1]
