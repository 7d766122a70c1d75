"""CTC decoding: greedy (argmax, collapse repeats, drop blanks) and beam search with torchaudio's
flashlight-text ``ctc_decoder``, lexicon-free or with a lexicon, optionally with a KenLM/ARPA n-gram.

Emissions are ``(batch, frames, vocab)`` logits or log-probabilities with ``(batch,)`` real frame
counts (``UpstreamCTCOutput.output_lengths``); the tokenizer is one of :mod:`repr_asr.tokenization`'s
(blank = ``<pad>`` = id 0).

Beam-search modes:

- lexicon-free (``lexicon=None``): any token sequence; ``lm`` must then be a *token* LM
  (``build_ngram(..., unit="token", tokenizer=tok)``), or None;
- lexicon (``lexicon=`` a file, or ``lexicon_words=`` a word list, e.g. the LM's vocabulary): output
  words come from the lexicon only; ``lm`` is a *word* LM (``build_ngram(..., unit="word")``).

The word boundary ("silence") token is ``|`` for character models. Sentencepiece models decode
lexicon-free only (see ``BeamSearchDecoder``), with ``▁`` (or the blank when there is no bare ``▁``
piece) as silence.

:func:`prepare_lm_decoding` turns a recipe's LM settings into these files: a word LM trained on a text
file, or a prebuilt ARPA / KenLM binary word LM (the Libri-light convention) with its lexicon.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import groupby
from typing import Iterable, Optional, Sequence

import torch

from ..data.text import normalize_text
from ..tokenization import SP_SPACE, SentencePieceCTCTokenizer, token_strings
from .ngram import LMFileError, LMFileNotFoundError


def ctc_collapse(ids: Sequence[int], blank_id: int = 0) -> list[int]:
    """Merge runs of the same id, then drop blanks: ``[a a - a b b] → [a a b]``."""
    return [int(key) for key, _ in groupby(ids) if int(key) != blank_id]


def greedy_ids(emissions: torch.Tensor, lengths: Optional[torch.Tensor] = None, blank_id: int = 0) -> list[list[int]]:
    """Best path per utterance of ``(batch, frames, vocab)`` emissions, collapsed (ids, blank removed)."""
    best = emissions.argmax(-1).cpu()  # (B, T)
    lengths = lengths.cpu().tolist() if lengths is not None else [best.shape[1]] * best.shape[0]
    return [ctc_collapse(best[b, : int(n)].tolist(), blank_id) for b, n in enumerate(lengths)]


def greedy_decode(emissions: torch.Tensor, tokenizer, lengths: Optional[torch.Tensor] = None) -> list[str]:
    """Greedy CTC transcripts: argmax per frame, then the tokenizer's CTC decoding."""
    ids = greedy_ids(emissions, lengths, tokenizer.pad_token_id)
    # Already collapsed: decoding again must not merge legitimate double letters.
    return [tokenizer.decode(seq, group_tokens=False, skip_special_tokens=False) for seq in ids]


def _silence_token(tokenizer) -> str:
    if isinstance(tokenizer, SentencePieceCTCTokenizer):
        return SP_SPACE if SP_SPACE in tokenizer.get_vocab() else tokenizer.pad_token
    return tokenizer.word_delimiter_token


def spell(word: str, tokenizer) -> list[str]:
    """The token spelling of one word in the lexicon: characters + ``|``, or sentencepiece pieces."""
    if isinstance(tokenizer, SentencePieceCTCTokenizer):
        return tokenizer.sp_model.encode(word, out_type=str)
    return list(word) + [tokenizer.word_delimiter_token]


def write_lexicon(words: Iterable[str], tokenizer, path: str) -> str:
    """Write a flashlight lexicon (``WORD t1 t2 ...`` per line) for ``words``; words with a unit the
    tokenizer lacks are skipped (the decoder could never emit them). Returns ``path``."""
    vocab = tokenizer.get_vocab()
    unk = tokenizer.unk_token
    seen = set()
    lines = []
    for word in words:
        word = normalize_text(word)
        if not word or " " in word or word in seen:
            continue
        tokens = spell(word, tokenizer)
        if not tokens or any(t not in vocab or t == unk for t in tokens):
            continue
        seen.add(word)
        lines.append(word + " " + " ".join(tokens))
    if not lines:
        raise LMFileError("no word of the lexicon can be spelled with this tokenizer's units")
    _write_atomically(path, "\n".join(lines) + "\n")
    return path


def _write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file of this process: several processes may write
    the same file at once, and a reader never sees half of it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def lexicon_file_words(path: str) -> list[str]:
    """The words of a lexicon file: the first field of each non-empty line, so a flashlight lexicon
    (``WORD t1 t2 ...``), Libri-light's lexicon and a plain word list all work (the spellings are redone
    with the model's own units by :func:`write_lexicon`). Errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            words = [line.split()[0] for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise LMFileError(f"cannot read lexicon file {path}: {error}") from error
    if not words:
        raise LMFileError(f"lexicon file {path} holds no word")
    return words


class BeamSearchDecoder:
    """Beam search over CTC emissions with torchaudio's ``ctc_decoder`` (flashlight-text).

    Args:
        tokenizer: the model's CTC tokenizer (its vocabulary, in id order, is the decoder's token set).
        lexicon: a lexicon file (``WORD t1 t2 ...``), or None for lexicon-free decoding.
        lexicon_words: words to build a lexicon from instead (written to ``work_dir/lexicon.txt``).
        lm: an ARPA (or KenLM binary) file, or None for no LM.
        lm_weight, word_score, beam_size, beam_threshold: the usual flashlight knobs.
        work_dir: where a built lexicon is written (default: next to ``lm``, else the current folder).
    """

    def __init__(
        self,
        tokenizer,
        lexicon: Optional[str] = None,
        lexicon_words: Optional[Iterable[str]] = None,
        lm: Optional[str] = None,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
        beam_size: int = 50,
        beam_threshold: float = 50.0,
        work_dir: Optional[str] = None,
    ):
        from torchaudio.models.decoder import ctc_decoder

        self.tokenizer = tokenizer
        if isinstance(tokenizer, SentencePieceCTCTokenizer) and (lexicon is not None or lexicon_words is not None):
            # flashlight's lexicon decoder lets a CTC repeat stay inside a word only before the word's last
            # token: a word ending in a multi-frame piece (``▁SAT``) is emitted again on every frame. Character
            # spellings end in the repeatable silence ``|`` and do not have the problem.
            raise ValueError(
                "lexicon decoding supports character tokenizers only; for sentencepiece use lexicon-free "
                "decoding with a token LM (build_ngram(..., unit='token', tokenizer=tok))"
            )
        if lexicon is None and lexicon_words is not None:
            work_dir = work_dir or (os.path.dirname(os.path.abspath(lm)) if lm else os.getcwd())
            lexicon = write_lexicon(lexicon_words, tokenizer, os.path.join(work_dir, "lexicon.txt"))
        for path, what in ((lexicon, "lexicon"), (lm, "language model")):
            if path is not None and not os.path.isfile(path):
                raise LMFileNotFoundError(f"{what} file not found: {path}")
        self.lexicon = lexicon
        tokens = token_strings(tokenizer)
        self.blank_id = tokenizer.pad_token_id
        lm_dict = None
        if lm is not None and lexicon is None:
            # Token LM: torchaudio builds the LM's index map from an unordered map, so token i would be
            # scored as some other token; an explicit dictionary file in id order keeps them aligned.
            work_dir = work_dir or os.path.dirname(os.path.abspath(lm))
            lm_dict = os.path.join(work_dir, "lm_tokens.txt")
            _write_atomically(lm_dict, "\n".join(tokens) + "\n")
        self.decoder = ctc_decoder(
            lexicon=lexicon,
            tokens=tokens,
            lm=lm,
            lm_dict=lm_dict,
            nbest=1,
            beam_size=beam_size,
            beam_threshold=beam_threshold,
            lm_weight=lm_weight,
            word_score=word_score,
            blank_token=tokenizer.pad_token,
            sil_token=_silence_token(tokenizer),
            unk_word=tokenizer.unk_token,
        )

    def __call__(self, emissions: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> list[str]:
        """Transcripts of ``(batch, frames, vocab)`` emissions (log-softmax is applied here)."""
        log_probs = torch.log_softmax(emissions.detach().float(), dim=-1).cpu().contiguous()  # (B, T, V)
        if lengths is not None:
            lengths = lengths.detach().cpu().to(torch.int32)
        results = self.decoder(log_probs, lengths)
        texts = []
        for hyps in results:
            if not hyps:
                texts.append("")
                continue
            best = hyps[0]
            if self.lexicon is not None:
                texts.append(" ".join(w for w in best.words if w))
            else:
                # torchaudio already merged the frame path's repeats and removed blanks.
                ids = [i for i in best.tokens.tolist() if i != self.blank_id]
                texts.append(self.tokenizer.decode(ids, group_tokens=False, skip_special_tokens=False))
        return texts


@dataclass
class LMDecoding:
    """The files beam search with an n-gram LM reads, from :func:`prepare_lm_decoding`.

    Attributes:
        lm: the ARPA file or KenLM binary.
        lm_format: ``"arpa"`` or ``"kenlm"``.
        unit: ``"word"`` (lexicon decoding) or ``"token"`` (lexicon-free, a token LM).
        lexicon: the lexicon file written for the model's units, None for lexicon-free decoding.
        lexicon_source: where its words came from: ``"lexicon"`` (a lexicon file), ``"arpa"`` (the ARPA's
            unigrams) or ``"lm_text"`` (the LM text's words); always with the training transcripts' words.
        lexicon_words: the number of words in it (0 when lexicon-free).
    """

    lm: str
    lm_format: str
    unit: str
    lexicon: Optional[str] = None
    lexicon_source: Optional[str] = None
    lexicon_words: int = 0

    def decoder(self, tokenizer, **knobs) -> BeamSearchDecoder:
        """The beam-search decoder over these files (``knobs``: ``lm_weight``, ``word_score``, ``beam_size``, ...)."""
        return BeamSearchDecoder(tokenizer, lexicon=self.lexicon, lm=self.lm,
                                 work_dir=os.path.dirname(os.path.abspath(self.lexicon or self.lm)), **knobs)


def prepare_lm_decoding(tokenizer, work_dir: str, lm_path: str = "", lm_text: str = "", lm_order: int = 3,
                        lexicon: str = "", words: Iterable[str] = ()) -> LMDecoding:
    """Write what beam search with an n-gram LM needs into ``work_dir`` and say what it is.

    Exactly one of:

    - ``lm_text``: a text file (one sentence per line); a Kneser-Ney ``lm_order``-gram is trained on it
      (``work_dir/<order>gram.arpa``): a word LM for character units, a token LM for sentencepiece.
    - ``lm_path``: a prebuilt word LM, an ARPA file or a KenLM binary (e.g. Libri-light's LibriSpeech
      4-gram), used as it is; character units only (a word LM needs lexicon decoding, see
      :class:`BeamSearchDecoder`). Its lexicon's words come from ``lexicon`` (a lexicon file or word
      list) or, for an ARPA file without one, from the ARPA's unigrams; a KenLM binary needs ``lexicon``.

    ``words`` (the training transcripts' words) are always added to a word lexicon, so every word seen
    in training can be output. Everything here runs before training, so a wrong file stops the run
    before it spends any time.
    """
    from .ngram import arpa_vocabulary, build_ngram, lm_format, read_text_file

    if bool(lm_path) == bool(lm_text):
        raise ValueError("give exactly one of lm_path (a prebuilt ARPA / KenLM binary LM) and lm_text (a text to train one on)")
    sentencepiece = isinstance(tokenizer, SentencePieceCTCTokenizer)
    if lm_text:
        lines = read_text_file(lm_text)
        lm, fmt = os.path.join(work_dir, f"{lm_order}gram.arpa"), "arpa"
        build_ngram(lines, lm, order=lm_order, unit="token" if sentencepiece else "word", tokenizer=tokenizer)
        if sentencepiece:
            return LMDecoding(lm=lm, lm_format=fmt, unit="token")
        source, lexicon_words = "lm_text", [w for line in lines for w in normalize_text(line).split()]
    else:
        if sentencepiece:
            raise ValueError(f"lm_path {lm_path}: a prebuilt word LM needs lexicon decoding, which supports character "
                             "units only; train a token LM with lm_text instead, or use character units")
        if not os.path.isfile(lm_path):
            raise LMFileNotFoundError(f"lm_path: language model file not found: {lm_path}")
        lm, fmt = lm_path, lm_format(lm_path)
        if lexicon:
            source, lexicon_words = "lexicon", lexicon_file_words(lexicon)
        elif fmt == "arpa":
            source, lexicon_words = "arpa", arpa_vocabulary(lm_path)
        else:
            raise LMFileError(f"lm_path {lm_path} is a KenLM binary, whose words cannot be listed: give its lexicon "
                             "(lexicon: a lexicon file or a word list, e.g. Libri-light's librispeech-lexicon.txt)")
        # The decoder asks the LM for the lexicon's words as they are written: an LM over other spellings
        # (lower case) would score every word as unknown, silently.
        unmatched = [w for w in lexicon_words if w != normalize_text(w)]
        if unmatched:
            raise LMFileError(f"{lexicon or lm_path}: {len(unmatched)} of its words are not written like the transcripts "
                             f"(LibriSpeech normalisation, upper case: {unmatched[0]!r} is "
                             f"{normalize_text(unmatched[0])!r} there), so the LM would never match them")
    spelled = {normalize_text(w) for w in [*lexicon_words, *words]} - {""}
    lexicon_path = write_lexicon(sorted(spelled), tokenizer, os.path.join(work_dir, "lexicon.txt"))
    with open(lexicon_path, encoding="utf-8") as f:
        count = sum(1 for line in f if line.strip())  # words the units cannot spell are left out
    return LMDecoding(lm=lm, lm_format=fmt, unit="word", lexicon=lexicon_path, lexicon_source=source,
                      lexicon_words=count)
