"""CTC output units: characters (``Wav2Vec2CTCTokenizer``), sentencepiece pieces, or phones
(``Wav2Vec2PhonemeCTCTokenizer`` over space-separated phone transcripts, without phonemisation).

Both kinds share the CTC conventions the model and decoders rely on:

- id 0 is ``<pad>``, which is also the CTC blank; ``<unk>`` exists;
- ``tokenizer(text).input_ids`` gives the label ids, ``tokenizer.decode(ids)`` does CTC decoding
  (groups repeated ids, drops blanks) and ``tokenizer.decode(ids, group_tokens=False)`` decodes an
  already collapsed sequence;
- ``save_pretrained(dir)`` / ``AutoTokenizer.from_pretrained(dir)`` round trip (after
  ``import repr_asr``), so ``transformers.pipeline("automatic-speech-recognition", model=dir)`` loads either.

Transcripts are normalised the LibriSpeech way, by the one normaliser the corpora use too
(:func:`repr_asr.data.text.normalize_text`: upper case, letters, digits and apostrophes, single
spaces); a transcript that is empty, or holds a character outside the vocabulary, raises
:class:`TranscriptError` naming the utterance (nothing is dropped or replaced silently).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from itertools import groupby
from typing import Iterable, Optional, Sequence

from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2PhonemeCTCTokenizer

from .data.text import normalize_text
from transformers.tokenization_python import PreTrainedTokenizer

PAD_TOKEN = "<pad>"  # also the CTC blank, always id 0
UNK_TOKEN = "<unk>"
WORD_DELIMITER = "|"
SP_SPACE = "\u2581"  # sentencepiece's word-boundary marker


class TranscriptError(ValueError):
    """A transcript that cannot be turned into CTC labels; the message names the utterance."""


def _check_text(text: str, utterance_id: str) -> str:
    if not isinstance(text, str):
        raise TranscriptError(f"utterance {utterance_id!r}: transcript is {type(text).__name__}, not a string")
    normalized = normalize_text(text)
    if not normalized:
        raise TranscriptError(f"utterance {utterance_id!r}: empty transcript")
    return normalized


def _ids_for(texts: Sequence[str], ids: Optional[Sequence[str]]) -> list[str]:
    if ids is None:
        return [f"#{i}" for i in range(len(texts))]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} utterance ids for {len(texts)} transcripts")
    return [str(i) for i in ids]


# ----------------------------------------------------------------------------------------- characters


def build_char_vocab(texts: Sequence[str], ids: Optional[Sequence[str]] = None) -> dict:
    """Character vocabulary of the (labeled subset's) transcripts: ``<pad>``=0 (blank), ``<unk>``=1,
    ``|`` (word delimiter) = 2, then the characters seen, sorted. Empty transcripts raise."""
    chars = set()
    for text, utt in zip(texts, _ids_for(texts, ids)):
        chars.update(_check_text(text, utt).replace(" ", ""))
    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1, WORD_DELIMITER: 2}
    for char in sorted(chars):
        if char == WORD_DELIMITER:
            raise TranscriptError(f"transcripts contain the word delimiter {WORD_DELIMITER!r} as a character")
        vocab[char] = len(vocab)
    return vocab


def build_char_tokenizer(
    texts: Sequence[str], output_dir: str, ids: Optional[Sequence[str]] = None
) -> Wav2Vec2CTCTokenizer:
    """Write ``output_dir/vocab.json`` from ``texts`` and return the ``Wav2Vec2CTCTokenizer`` over it."""
    os.makedirs(output_dir, exist_ok=True)
    vocab_file = os.path.join(output_dir, "vocab.json")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(build_char_vocab(texts, ids), f, ensure_ascii=False, indent=1)
    return Wav2Vec2CTCTokenizer(
        vocab_file, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN, word_delimiter_token=WORD_DELIMITER,
        bos_token=None, eos_token=None, do_lower_case=False,
    )


# ----------------------------------------------------------------------------------------- phones


def build_phone_tokenizer(
    transcripts: Sequence[str], output_dir: str, ids: Optional[Sequence[str]] = None
) -> Wav2Vec2PhonemeCTCTokenizer:
    """A phone CTC tokenizer over the phones of ``transcripts`` (space-separated phone strings, e.g. from
    :func:`repr_asr.data.phones.phone_transcripts`): ``<pad>``=0 (blank), ``<unk>``=1, then the phones seen,
    sorted. transformers' ``Wav2Vec2PhonemeCTCTokenizer`` with ``do_phonemize=False`` splits on spaces and
    decodes CTC ids to space-separated phones, so PER is jiwer's WER over its output."""
    phones = set()
    for text, utt in zip(transcripts, _ids_for(transcripts, ids)):
        phones.update(_check_text(text, utt).split())
    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1}
    for phone in sorted(phones):
        vocab[phone] = len(vocab)
    os.makedirs(output_dir, exist_ok=True)
    vocab_file = os.path.join(output_dir, "vocab.json")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, indent=1)
    return Wav2Vec2PhonemeCTCTokenizer(
        vocab_file, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN, bos_token=None, eos_token=None,
        word_delimiter_token=None, do_phonemize=False,
    )


# ----------------------------------------------------------------------------------------- sentencepiece


class SentencePieceCTCTokenizer(PreTrainedTokenizer):
    r"""Sentencepiece units as CTC targets; ids are the sentencepiece ids (``<pad>``=0 is the blank, ``<unk>``=1).

    Args:
        vocab_file (`str`): the trained sentencepiece model (``spm.model``), as written by
            :func:`train_sentencepiece`.
        unk_token (`str`, defaults to `"<unk>"`), pad_token (`str`, defaults to `"<pad>"`): must match the model.

    ``decode(ids)`` collapses CTC repeats and blanks (``group_tokens=False`` for an already collapsed
    sequence), then detokenises: pieces are joined and ``▁`` becomes a space.
    """

    vocab_files_names = {"vocab_file": "spm.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str, unk_token: str = UNK_TOKEN, pad_token: str = PAD_TOKEN, **kwargs):
        import sentencepiece as spm

        self.vocab_file = vocab_file
        self.sp_model = spm.SentencePieceProcessor(model_file=vocab_file)
        if self.sp_model.id_to_piece(0) != str(pad_token) or self.sp_model.pad_id() != 0:
            raise ValueError(f"{vocab_file}: sentencepiece model must have {pad_token!r} (the CTC blank) at id 0")
        kwargs.pop("bos_token", None)
        kwargs.pop("eos_token", None)
        super().__init__(
            unk_token=unk_token, pad_token=pad_token, bos_token=None, eos_token=None,
            special_tokens_pattern="none", **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size()

    @property
    def word_delimiter_token(self) -> str:
        return SP_SPACE

    def get_vocab(self) -> dict:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.sp_model.encode(normalize_text(text), out_type=str)

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index: int) -> str:
        return self.sp_model.id_to_piece(int(index))

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        pieces = [t for t in tokens if t != self.pad_token]
        return re.sub(r"\s+", " ", "".join(pieces).replace(SP_SPACE, " ")).strip()

    def _decode(
        self,
        token_ids: list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: Optional[bool] = None,
        group_tokens: bool = True,
        **kwargs,
    ) -> str:
        ids = [int(i) for i in (token_ids if isinstance(token_ids, (list, tuple)) else [token_ids])]
        if group_tokens:  # CTC: one emission per run of the same id
            ids = [key for key, _ in groupby(ids)]
        ids = [i for i in ids if i != self.pad_token_id]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.all_special_ids]
        return self.convert_tokens_to_string([self._convert_id_to_token(i) for i in ids])

    def save_vocabulary(self, save_directory: str, filename_prefix: Optional[str] = None) -> tuple:
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "spm.model")
        if os.path.abspath(self.vocab_file) != os.path.abspath(out):
            shutil.copyfile(self.vocab_file, out)
        return (out,)


def train_sentencepiece(
    texts: Sequence[str],
    output_dir: str,
    vocab_size: int,
    model_type: str = "unigram",
    ids: Optional[Sequence[str]] = None,
    character_coverage: float = 1.0,
) -> SentencePieceCTCTokenizer:
    """Train a sentencepiece ``model_type`` (``"unigram"`` or ``"bpe"``) with ``vocab_size`` pieces on
    ``texts`` only (the labeled subset) and return its CTC tokenizer. ``output_dir/spm.model`` is written.

    ``vocab_size`` counts ``<pad>`` and ``<unk>``; sentencepiece raises if the text is too small for it.
    """
    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"sentencepiece model_type must be 'unigram' or 'bpe', got {model_type!r}")
    normalized = [_check_text(text, utt) for text, utt in zip(texts, _ids_for(texts, ids))]
    os.makedirs(output_dir, exist_ok=True)
    prefix = os.path.join(output_dir, "spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(normalized),
        model_prefix=prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,  # CTC needs no bos/eos; blank = pad = 0
        pad_piece=PAD_TOKEN, unk_piece=UNK_TOKEN,
        normalization_rule_name="identity",  # text is normalised by normalize_text already
        num_threads=1,
        minloglevel=2,
    )
    return SentencePieceCTCTokenizer(prefix + ".model")


# ----------------------------------------------------------------------------------------- both kinds


def build_tokenizer(
    texts: Sequence[str], output_dir: str, unit: str = "char", vocab_size: int = 0,
    ids: Optional[Sequence[str]] = None, sentencepiece_model_type: str = "unigram",
):
    """A CTC tokenizer learned from the labeled subset's ``texts``: ``unit="char"``, ``"sentencepiece"``, or
    ``"phone"`` (``texts`` are then phone transcripts)."""
    if unit == "char":
        return build_char_tokenizer(texts, output_dir, ids)
    if unit == "phone":
        return build_phone_tokenizer(texts, output_dir, ids)
    if unit == "sentencepiece":
        if vocab_size <= 0:
            raise ValueError("unit='sentencepiece' needs vocab_size > 0")
        return train_sentencepiece(texts, output_dir, vocab_size, sentencepiece_model_type, ids)
    raise ValueError(f"unit must be 'char', 'sentencepiece' or 'phone', got {unit!r}")


def token_strings(tokenizer) -> list[str]:
    """The token of every id ``0 .. vocab_size-1``, in id order (what a beam-search decoder needs)."""
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    size = max(by_id) + 1
    missing = [i for i in range(size) if i not in by_id]
    if missing:
        raise ValueError(f"tokenizer vocabulary has no token for ids {missing[:5]}")
    return [by_id[i] for i in range(size)]


def vocabulary_difference(theirs: dict, ours: dict, show: int = 8) -> str:
    """What differs between two ``{token: id}`` vocabularies, in words: the tokens only in ``theirs``, only
    in ``ours``, and those at another id (at most ``show`` of each), e.g. ``tokens only there: 'Q'; only
    here: 'Z'``; empty when they are the same."""

    def listed(tokens: list) -> str:
        more = f" and {len(tokens) - show} more" if len(tokens) > show else ""
        return ", ".join(repr(t) for t in tokens[:show]) + more

    only_theirs = sorted(set(theirs) - set(ours), key=lambda t: theirs[t])
    only_ours = sorted(set(ours) - set(theirs), key=lambda t: ours[t])
    moved = sorted((t for t in set(theirs) & set(ours) if theirs[t] != ours[t]), key=lambda t: ours[t])
    parts = []
    if only_theirs:
        parts.append(f"tokens only there: {listed(only_theirs)}")
    if only_ours:
        parts.append(f"tokens only here: {listed(only_ours)}")
    if moved:
        shown = [f"{t!r} (id {theirs[t]} there, {ours[t]} here)" for t in moved[:show]]
        parts.append("tokens at other ids: " + ", ".join(shown) + (f" and {len(moved) - show} more" if len(moved) > show else ""))
    return "; ".join(parts)


def encode_transcripts(tokenizer, texts: Iterable[str], ids: Optional[Sequence[str]] = None) -> list[list[int]]:
    """Label ids of each transcript; an empty transcript, or one with a unit outside the vocabulary
    (it would become ``<unk>``), raises :class:`TranscriptError` naming the utterance."""
    texts = list(texts)
    unk = tokenizer.unk_token_id
    labels = []
    for text, utt in zip(texts, _ids_for(texts, ids)):
        normalized = _check_text(text, utt)
        label = tokenizer(normalized).input_ids
        if unk in label:
            if isinstance(tokenizer, SentencePieceCTCTokenizer):
                pieces = tokenizer.sp_model.encode(normalized, out_type=str)
                bad = sorted({p for p, i in zip(pieces, label) if i == unk})
            elif isinstance(tokenizer, Wav2Vec2PhonemeCTCTokenizer):
                bad = sorted({p for p in normalized.split() if p not in tokenizer.get_vocab()})
            else:
                vocab = tokenizer.get_vocab()
                bad = sorted({c for c in normalized.replace(" ", "") if c not in vocab})
            raise TranscriptError(
                f"utterance {utt!r}: transcript {normalized!r} has units outside the vocabulary: {bad}"
            )
        if not label:
            raise TranscriptError(f"utterance {utt!r}: transcript {normalized!r} encodes to no labels")
        labels.append(label)
    return labels
