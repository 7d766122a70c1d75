"""CTC tokenizers: character (Wav2Vec2CTCTokenizer) and sentencepiece round trips, OOV errors, Auto loading."""

import json

import pytest
from transformers import AutoTokenizer, Wav2Vec2CTCTokenizer

import repr_asr  # noqa: F401  (registers the tokenizers)
from repr_asr.tokenization import (
    PAD_TOKEN,
    SentencePieceCTCTokenizer,
    TranscriptError,
    build_char_tokenizer,
    build_char_vocab,
    encode_transcripts,
    token_strings,
    train_sentencepiece,
)

TEXTS = [
    "THE CAT SAT ON THE MAT",
    "a dog's  life is good",  # lower case and double space: normalised
    "HELLO WORLD AGAIN AND AGAIN",
    "SHE SELLS SEA SHELLS BY THE SEA SHORE",
    "ALL GOOD THINGS COME TO THOSE WHO WAIT",
]


def test_char_vocab_conventions(tmp_path):
    vocab = build_char_vocab(TEXTS)
    assert vocab[PAD_TOKEN] == 0 and vocab["<unk>"] == 1 and vocab["|"] == 2
    assert "'" in vocab and "A" in vocab and "a" not in vocab and " " not in vocab
    tok = build_char_tokenizer(TEXTS, str(tmp_path))
    assert isinstance(tok, Wav2Vec2CTCTokenizer)
    assert json.loads((tmp_path / "vocab.json").read_text()) == vocab
    assert token_strings(tok)[:3] == [PAD_TOKEN, "<unk>", "|"]


def test_char_round_trip_and_auto_loading(tmp_path):
    tok = build_char_tokenizer(TEXTS, str(tmp_path / "v"))
    for text in ["THE CAT'S LIFE", "SEA SHELLS"]:
        ids = tok(text).input_ids
        assert tok.decode(ids, group_tokens=False) == text
    tok.save_pretrained(tmp_path / "saved")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded, Wav2Vec2CTCTokenizer)
    assert loaded("SEA SHELLS").input_ids == tok("SEA SHELLS").input_ids


def test_char_ctc_decoding_collapses_repeats_and_blanks(tmp_path):
    tok = build_char_tokenizer(TEXTS, str(tmp_path))
    v = tok.get_vocab()
    # frame path "S S - E E - E - | A A" → "SEE A": repeats merge, a blank separates the double E.
    path = [v["S"], v["S"], 0, v["E"], v["E"], 0, v["E"], 0, v["|"], v["A"], v["A"]]
    assert tok.decode(path) == "SEE A"


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_round_trip_and_auto_loading(tmp_path, model_type):
    tok = train_sentencepiece(TEXTS * 4, str(tmp_path / "sp"), vocab_size=40, model_type=model_type)
    assert tok.pad_token_id == 0 and tok.convert_ids_to_tokens([0]) == [PAD_TOKEN]
    assert tok.vocab_size == 40 and len(token_strings(tok)) == 40
    for text in ["THE CAT SAT ON THE MAT", "SHE SELLS GOOD THINGS"]:
        ids = tok(text).input_ids
        assert 0 not in ids and tok.unk_token_id not in ids
        assert tok.decode(ids, group_tokens=False) == text
        # CTC frame path: every id repeated and followed by a blank decodes to the same text.
        path = [i for i in ids for i in (i, i, 0)]
        assert tok.decode(path) == text
    tok.save_pretrained(tmp_path / "saved")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded, SentencePieceCTCTokenizer)
    assert loaded("THE CAT").input_ids == tok("THE CAT").input_ids


def test_out_of_vocabulary_and_empty_transcripts_name_the_utterance(tmp_path):
    tok = build_char_tokenizer(TEXTS, str(tmp_path / "c"))
    assert encode_transcripts(tok, ["the cat"], ["u1"]) == [tok("THE CAT").input_ids]
    with pytest.raises(TranscriptError, match=r"'u2'.*'7'"):  # normalised, but not in the vocabulary
        encode_transcripts(tok, ["THE CAT", "CAT 7"], ["u1", "u2"])
    with pytest.raises(TranscriptError, match="'u9'.*empty"):
        encode_transcripts(tok, ["  "], ["u9"])
    with pytest.raises(TranscriptError, match="'spk-1'"):
        build_char_vocab(["OK", ""], ids=["spk-0", "spk-1"])
    sp = train_sentencepiece(TEXTS * 4, str(tmp_path / "sp"), vocab_size=35)
    with pytest.raises(TranscriptError, match="'u3'"):
        encode_transcripts(sp, ["THE CAT", "ZZQ"], ["u1", "u3"])
