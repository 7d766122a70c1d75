"""CTC decoding (greedy, beam search with and without an n-gram LM, lexicon-free and lexicon), the
n-gram builder, prebuilt LMs (ARPA, KenLM binary) with their lexicon, and WER/CER against jiwer."""

import shutil
import subprocess

import jiwer
import pytest
import torch

from repr_asr.evaluation.decoding import (
    BeamSearchDecoder,
    ctc_collapse,
    greedy_decode,
    greedy_ids,
    lexicon_file_words,
    prepare_lm_decoding,
)
from repr_asr.evaluation.ngram import arpa_vocabulary, build_ngram, lm_format
from repr_asr.evaluation.wer import cer, wer
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
    # Whole-set rates, counted by hand: 1 deletion + 1 insertion + 2 substitutions over 10 reference
    # words; 4 deleted characters ("THE "), 7 inserted (" BARKED"), 2 deleted ("L", "L") over 38 characters.
    assert wer(refs, hyps) == pytest.approx(4 / 10)
    assert cer(refs, hyps) == pytest.approx((4 + 7 + 2) / (22 + 5 + 11))
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(refs[:2], hyps[:1])
    with pytest.raises(ValueError, match="reference 1 is empty"):
        wer(["A", " "], ["A", "B"])


# ---------------------------------------------------------------------------------------- prebuilt LMs


def write_arpa(path, sentences):
    """A bigram ARPA file written by hand (no LM toolkit): every word of ``sentences`` equally likely, and
    each bigram seen in them 10x likelier than backing off. What a prebuilt LM file looks like."""
    words = sorted({w for s in sentences for w in s.split()})
    bigrams = sorted({pair for s in sentences for pair in zip(["<s>", *s.split()], [*s.split(), "</s>"])})
    unigram = -1.5
    lines = ["\\data\\", f"ngram 1={len(words) + 3}", f"ngram 2={len(bigrams)}", "", "\\1-grams:",
             f"{unigram}\t<s>\t-0.5", f"{unigram}\t</s>", "-4.0\t<unk>"]
    lines += [f"{unigram}\t{w}\t-0.5" for w in words]
    lines += ["", "\\2-grams:"] + [f"-0.5\t{a} {b}" for a, b in bigrams] + ["", "\\end\\", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_prebuilt_arpa_lm_fixes_an_ambiguous_word_with_its_own_lexicon(char_tok, tmp_path):
    v = char_tok.get_vocab()
    text = "THE CAT SAT ON THE MAT"
    emissions = emissions_for(char_tok, text, blur={5: (v["O"], 0.5)})
    assert greedy_decode(emissions, char_tok) == ["THE COT SAT ON THE MAT"]
    arpa = write_arpa(tmp_path / "prebuilt.arpa", LM_TEXT)
    assert lm_format(str(arpa)) == "arpa"
    # No lexicon: the ARPA's unigrams, plus the training transcripts' words (COT among them).
    lm = prepare_lm_decoding(char_tok, str(tmp_path / "lm"), lm_path=str(arpa), words=["COT"])
    assert (lm.lm, lm.lm_format, lm.unit, lm.lexicon_source) == (str(arpa), "arpa", "word", "arpa")
    spelled = [line.split()[0] for line in (tmp_path / "lm" / "lexicon.txt").read_text().splitlines()]
    assert set(spelled) == set(arpa_vocabulary(str(arpa))) | {"COT"} and lm.lexicon_words == len(spelled)
    assert lm.decoder(char_tok, lm_weight=1.0)(emissions) == [text]
    assert lm.decoder(char_tok, lm_weight=0.0)(emissions) == ["THE COT SAT ON THE MAT"]  # the LM did it
    # A lexicon (Libri-light's layout: WORD and its spelling) decides which words exist: without CAT in
    # it, CAT cannot be output.
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("THE\tT H E |\nCOT\tC O T |\nSAT\tS A T |\nON\tO N |\nMAT\tM A T |\n")
    assert lexicon_file_words(str(lexicon)) == ["THE", "COT", "SAT", "ON", "MAT"]
    restricted = prepare_lm_decoding(char_tok, str(tmp_path / "lm2"), lm_path=str(arpa), lexicon=str(lexicon))
    assert restricted.lexicon_source == "lexicon" and restricted.lexicon_words == 5
    assert restricted.decoder(char_tok, lm_weight=1.0)(emissions) == ["THE COT SAT ON THE MAT"]


def test_prebuilt_lm_files_are_checked_and_errors_name_them(char_tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        prepare_lm_decoding(char_tok, str(tmp_path / "lm"), lm_path=str(tmp_path / "missing.arpa"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a language model")
    with pytest.raises(ValueError, match=r"junk\.bin.*neither an ARPA"):
        prepare_lm_decoding(char_tok, str(tmp_path / "lm"), lm_path=str(junk))
    gz = tmp_path / "4-gram.arpa.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00")
    with pytest.raises(ValueError, match=r"4-gram\.arpa\.gz.*gzip"):
        lm_format(str(gz))
    # A KenLM binary's words cannot be read back: it needs its lexicon (checked before the file is loaded).
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0")
    assert lm_format(str(binary)) == "kenlm"
    with pytest.raises(ValueError, match=r"lm\.bin is a KenLM binary.*lexicon"):
        prepare_lm_decoding(char_tok, str(tmp_path / "lm"), lm_path=str(binary))
    # An LM over other spellings (lower case) would match no word of the model's: refused, not ignored.
    lower = write_arpa(tmp_path / "lower.arpa", [t.lower() for t in LM_TEXT])
    with pytest.raises(ValueError, match=r"lower\.arpa: .* not written like the transcripts.*'a' is 'A'"):
        prepare_lm_decoding(char_tok, str(tmp_path / "lm"), lm_path=str(lower))
    with pytest.raises(ValueError, match="exactly one of lm_path"):
        prepare_lm_decoding(char_tok, str(tmp_path / "lm"))
    sp = train_sentencepiece(LM_TEXT * 3, str(tmp_path / "sp"), vocab_size=19)
    with pytest.raises(ValueError, match="character units only"):
        prepare_lm_decoding(sp, str(tmp_path / "lm"), lm_path=str(write_arpa(tmp_path / "a.arpa", LM_TEXT)))


@pytest.mark.skipif(shutil.which("build_binary") is None,
                    reason="needs KenLM's build_binary to write a KenLM binary (the kenlm pip package does not ship it)")
def test_kenlm_binary_decodes_as_its_arpa(char_tok, tmp_path):
    v = char_tok.get_vocab()
    emissions = emissions_for(char_tok, "THE CAT SAT ON THE MAT", blur={5: (v["O"], 0.5)})
    arpa = write_arpa(tmp_path / "prebuilt.arpa", LM_TEXT)
    binary = tmp_path / "prebuilt.bin"
    subprocess.run(["build_binary", str(arpa), str(binary)], check=True, capture_output=True)
    assert lm_format(str(binary)) == "kenlm"
    from_arpa = prepare_lm_decoding(char_tok, str(tmp_path / "a"), lm_path=str(arpa)).decoder(char_tok, lm_weight=1.0)
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("\n".join(arpa_vocabulary(str(arpa))) + "\n")
    from_binary = prepare_lm_decoding(char_tok, str(tmp_path / "b"), lm_path=str(binary), lexicon=str(lexicon))
    assert from_binary.decoder(char_tok, lm_weight=1.0)(emissions) == from_arpa(emissions) == ["THE CAT SAT ON THE MAT"]
