"""Transcript normalisation and vocabulary checks."""

import pytest

from repr_asr.data.text import check_vocabulary, find_oov, normalize_text

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, world!", "HELLO WORLD"),
        ("don’t   stop\tNOW", "DON'T STOP NOW"),
        ("“Quoted” 'words' here", "QUOTED WORDS HERE"),
        ("well-known; semi:colon", "WELL KNOWN SEMI COLON"),
        ("Café NAÏVE", "CAFE NAIVE"),
        ("HE SAID 42 TIMES", "HE SAID 42 TIMES"),
        ("  ", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalized_text_is_a_fixed_point():
    raw = "It's Mr. O'Neil's -- “best” day; isn't it?"
    once = normalize_text(raw)
    assert normalize_text(once) == once
    assert set(once) <= set(LETTERS + " ")


def test_find_oov_names_utterances():
    items = {"1-1-0001": "HELLO WORLD", "1-1-0002": "HE PAID 5 ÉCUS", "1-1-0003": "OK"}
    assert find_oov(items, LETTERS) == {"1-1-0002": ["5", "É"]}
    assert find_oov(list(items.items()), LETTERS + "5É") == {}
    with pytest.raises(ValueError, match=r"1 transcripts .*1-1-0002: '5É'"):
        check_vocabulary(items, LETTERS)


def test_find_oov_on_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "text": ["AB", "A|B"]})
    assert find_oov(ds, "AB") == {"b": ["|"]}
