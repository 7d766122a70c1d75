"""The evaluation recipes read the built-in corpus (``builtin:data/builtin``) when --data is not given,
as the README says of every recipe."""

import json
from pathlib import Path

import pytest

# The tiny LibriSpeech-layout corpora of the probe and ABX tests (the built-in corpus has the same layout).
from tone_corpus import build_tone_corpus, random_phones

ROOT = Path(__file__).resolve().parents[1]


from recipe_modules import load_recipe as _recipe  # noqa: E402


@pytest.fixture
def in_project_like_folder(tmp_path, monkeypatch, one_thread):
    """A working folder whose data/builtin/ holds a corpus, as the project's after `make corpus`."""
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_abx_recipe_defaults_to_the_builtin_corpus(in_project_like_folder):
    build_tone_corpus(in_project_like_folder / "data" / "builtin")
    out = in_project_like_folder / "run"
    _recipe("abx").main(["--upstream", "fbank", "--output_dir", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert results["data"] == "builtin:data/builtin"
    assert results["num_utterances"] == 8 and results["metrics"]["features"]["within"] is not None


def test_probe_recipe_defaults_to_the_builtin_corpus(in_project_like_folder):
    build_tone_corpus(in_project_like_folder / "data" / "builtin", phones=random_phones, shifts=(1.0, 1.1, 0.8, 0.85))
    out = in_project_like_folder / "run"
    _recipe("probe").main(["--upstream", "fbank", "--output_dir", str(out), "--tasks", "speaker", "--epochs", "1"])
    results = json.loads((out / "results.json").read_text())
    assert results["data"] == "builtin:data/builtin"
    assert results["num_utterances"] == 8 and "accuracy" in results["metrics"]["features"]["speaker"]


def test_without_a_corpus_the_error_says_how_to_build_it(in_project_like_folder):
    from repr_asr.data.librispeech import CorpusError

    with pytest.raises(CorpusError, match="recipes/make_corpus.py --output_dir data/builtin"):
        _recipe("abx").main(["--upstream", "fbank", "--output_dir", str(in_project_like_folder / "run")])
