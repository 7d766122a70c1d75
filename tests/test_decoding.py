"""CTC decoding (greedy, beam search with and without an n-gram LM, lexicon-free and lexicon), the
n-gram builder, and WER/CER against jiwer."""

import jiwer
import pytest
import torch

from repr_asr.evaluation.decoding import BeamSearchDecoder, ctc_collapse, greedy_decode, greedy_ids
from repr_asr.evaluation.ngram import arpa_vocabulary, build_ngram
from repr_asr.evaluation.wer import cer, error_counts, wer
from repr_asr.tokenization import build_char_tokenizer, train_sentencepiece

LM_TEXT = [
    "THE CAT SAT ON THE MAT",
    "THE CAT SAT ON THE HAT",
    "A CAT SAT ON A MAT",
    "THE DOG SAT ON THE LOG",
    "THE CAT IS ON THE MAT",
]


def emissions_for(tokenizer, text, frames_per_unit=3, blur=None):
    """Log-probabilities ``(1, frames, vocab)``: each unit held for a few frames, then one blank frame.
    ``blur`` maps a position in the unit sequence to (rival unit, its log-prob margin) to make it ambiguous."""
    ids = tokenizer(text).input_ids
    vocab = len(tokenizer.get_vocab())
    rows = []
    for pos, unit in enumerate(ids):
        for _ in range(frames_per_unit):
            row = torch.full((vocab,), -8.0)
            row[unit] = -0.1
            if blur and pos in blur:
                rival, margin = blur[pos]
                row[rival] = -0.1 + margin  # the rival wins the frame by `margin`
            rows.append(row)
        blank = torch.full((vocab,), -8.0)
        blank[0] = -0.05
        rows.append(blank)
    return torch.stack(rows).log_softmax(-1)[None]


@pytest.fixture(scope="module")
def char_tok(tmp_path_factory):
    return build_char_tokenizer(LM_TEXT + ["COT"], str(tmp_path_factory.mktemp("chars")))


def test_ctc_collapse_and_greedy_on_a_known_alignment(char_tok):
    assert ctc_collapse([5, 5, 0, 5, 7, 7, 0, 0, 7], blank_id=0) == [5, 5, 7, 7]
    v = char_tok.get_vocab()
    path = ["<pad>", "S", "S", "E", "<pad>", "E", "|", "|", "A", "<pad>"]
    logits = torch.full((2, len(path), len(v)), -5.0)
    for t, unit in enumerate(path):
        logits[0, t, v[unit]] = 5.0
        logits[1, t, v["A"] if t < 3 else 0] = 5.0
    assert greedy_ids(logits, torch.tensor([10, 3]))[1] == [v["A"]]
    assert greedy_decode(logits, char_tok, torch.tensor([10, 3])) == ["SEE A", "A"]
    assert greedy_decode(logits[:1, :6], char_tok) == ["SEE"]  # lengths default to all frames


def test_beam_search_without_lm_agrees_with_greedy_on_clear_emissions(char_tok, tmp_path):
    emissions = emissions_for(char_tok, "THE CAT SAT ON THE MAT")
    assert greedy_decode(emissions, char_tok) == ["THE CAT SAT ON THE MAT"]
    assert BeamSearchDecoder(char_tok, beam_size=10)(emissions) == ["THE CAT SAT ON THE MAT"]
    lexicon = BeamSearchDecoder(char_tok, lexicon_words=" ".join(LM_TEXT).split(), work_dir=str(tmp_path))
    assert lexicon(emissions) == ["THE CAT SAT ON THE MAT"]
    assert (tmp_path / "lexicon.txt").read_text().splitlines()[0] == "THE T H E |"


def test_word_lm_fixes_an_acoustically_ambiguous_word(char_tok, tmp_path):
    v = char_tok.get_vocab()
    # "CAT" where the acoustics slightly prefer "O" for the vowel: greedy reads COT.
    text = "THE CAT SAT ON THE MAT"
    blur = {5: (v["O"], 0.5)}  # unit 5 is the A of CAT (T H E | C A ...)
    emissions = emissions_for(char_tok, text, blur=blur)
    assert greedy_decode(emissions, char_tok) == ["THE COT SAT ON THE MAT"]
    words = sorted(set(" ".join(LM_TEXT).split()) | {"COT"})
    no_lm = BeamSearchDecoder(char_tok, lexicon_words=words, work_dir=str(tmp_path / "a"))
    assert no_lm(emissions) == ["THE COT SAT ON THE MAT"]
    lm = build_ngram(LM_TEXT, str(tmp_path / "lm" / "3gram.arpa"), order=3)
    assert "CAT" in arpa_vocabulary(lm) and "COT" not in arpa_vocabulary(lm)
    with_lm = BeamSearchDecoder(char_tok, lexicon_words=words, lm=lm, lm_weight=1.0, work_dir=str(tmp_path / "b"))
    assert with_lm(emissions) == [text]


def test_token_lm_lexicon_free(char_tok, tmp_path):
    v = char_tok.get_vocab()
    emissions = emissions_for(char_tok, "THE CAT SAT", blur={5: (v["O"], 0.5)})
    assert BeamSearchDecoder(char_tok)(emissions) == ["THE COT SAT"]
    lm = build_ngram(LM_TEXT, str(tmp_path / "tokens.arpa"), order=4, unit="token", tokenizer=char_tok)
    assert "|" in arpa_vocabulary(lm)
    assert BeamSearchDecoder(char_tok, lm=lm, lm_weight=1.0)(emissions) == ["THE CAT SAT"]


def test_sentencepiece_beam_search(tmp_path):
    sp = train_sentencepiece(LM_TEXT * 3, str(tmp_path / "sp"), vocab_size=19)
    emissions = emissions_for(sp, "THE CAT SAT ON THE MAT")
    assert greedy_decode(emissions, sp) == ["THE CAT SAT ON THE MAT"]
    lm = build_ngram(LM_TEXT, str(tmp_path / "sp.arpa"), order=3, unit="token", tokenizer=sp)
    assert BeamSearchDecoder(sp, lm=lm, lm_weight=0.5)(emissions) == ["THE CAT SAT ON THE MAT"]
    with pytest.raises(ValueError, match="lexicon-free"):
        BeamSearchDecoder(sp, lexicon_words=["THE"])


def test_batched_beam_search_respects_lengths(char_tok):
    a = emissions_for(char_tok, "THE CAT")
    b = emissions_for(char_tok, "A MAT")
    padded = torch.cat([a, torch.cat([b, a[:, : a.shape[1] - b.shape[1]]], dim=1)])  # junk after b's end
    out = BeamSearchDecoder(char_tok)(padded, torch.tensor([a.shape[1], b.shape[1]]))
    assert out == ["THE CAT", "A MAT"]


def test_wer_cer_equal_jiwer():
    refs = ["THE CAT SAT ON THE MAT", "A DOG", "HELLO WORLD"]
    hyps = ["THE CAT SAT ON MAT", "A DOG BARKED", "HELO WORD"]
    assert wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))
    assert cer(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps))
    counts = error_counts(refs, hyps)
    assert (counts["substitutions"], counts["deletions"], counts["insertions"]) == (2, 1, 1)
    assert counts["reference_words"] == 10
    edits = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    assert counts["wer"] == pytest.approx(edits / counts["reference_words"])
    char_edits = counts["char_substitutions"] + counts["char_deletions"] + counts["char_insertions"]
    assert counts["cer"] == pytest.approx(char_edits / counts["reference_chars"])
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(refs[:2], hyps[:1])
    with pytest.raises(ValueError, match="reference 1 is empty"):
        wer(["A", " "], ["A", "B"])
