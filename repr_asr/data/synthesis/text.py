"""A sentence generator for the built-in corpus.

The vocabulary comes from two word lists that Festival's Debian packages ship (so nothing is
downloaded): the part-of-speech lexicon of the Wall Street Journal (``festlex-poslex``,
``wsj.wp39.poslexR``: word, tags and log P(word | tag)) and the CMU pronouncing dictionary
(``festlex-cmu``). A word is used only when the CMU dictionary knows it, so Festival reads it from
its lexicon rather than guessing; per tag the most frequent words are kept. Sentences come from a
small phrase-structure grammar (agreement is kept simple by using past tense, modals and plural
nouns where it matters); they need not make sense, only sound like read English with a vocabulary
of thousands of words.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

FESTIVAL_DICTS = os.environ.get("REPR_ASR_FESTIVAL_DICTS", "/usr/share/festival/dicts")
POSLEX = "wsj.wp39.poslexR"
CMUDICT = os.path.join("cmu", "cmudict-0.4.out")

# How many of the most frequent words of each WSJ tag the generator uses.
TAG_SIZES = {"nn": 2000, "nns": 1200, "jj": 1000, "vbd": 700, "vb": 700, "vbg": 400, "rb": 200}

DETERMINERS_SINGULAR = ["the", "a", "this", "that", "every", "each", "one", "no", "another", "his", "her", "their", "our", "my"]
DETERMINERS_PLURAL = ["the", "some", "many", "these", "those", "all the", "few", "several", "most", "their", "our", "two", "three"]
PRONOUNS = ["he", "she", "they", "we", "i", "you", "it", "nobody", "someone", "everyone"]
MODALS = ["could", "would", "should", "will", "might", "must", "can", "may"]
NEGATED = ["didn't", "couldn't", "won't", "wouldn't", "can't", "shouldn't", "mustn't"]
CONTRACTED = ["he'll", "she'll", "they'll", "we'll", "i'll", "you'll", "he'd", "she'd", "they'd", "we'd", "i'd", "you'd"]
PREPOSITIONS = ["in", "on", "at", "with", "from", "near", "under", "over", "after", "before", "into", "across",
                "behind", "beside", "through", "without", "for", "by", "about", "around", "against", "during"]
CONJUNCTIONS = ["and", "but", "so", "while", "because", "although", "when", "until", "since"]
WH = ["why", "when", "where", "how"]


class VocabularyError(RuntimeError):
    """The word lists are missing or unreadable; the message names the file and the package."""


def _read_lines(path: str, package: str) -> List[str]:
    try:
        with open(path, encoding="latin-1") as handle:
            return handle.readlines()
    except OSError as error:
        raise VocabularyError(f"{path}: cannot read the word list ({error}); install the Debian package {package}") from error


def load_vocabulary(dicts_dir: str = FESTIVAL_DICTS, tag_sizes: Optional[Dict[str, int]] = None) -> Dict[str, List[str]]:
    """Words per WSJ tag (most frequent first), restricted to plain lower-case words in the CMU dictionary."""
    tag_sizes = dict(TAG_SIZES if tag_sizes is None else tag_sizes)
    known = set()
    for line in _read_lines(os.path.join(dicts_dir, CMUDICT), "festlex-cmu"):
        match = re.match(r'\("([^"]+)"', line)
        if match:
            known.add(match.group(1))
    scored: Dict[str, List[Tuple[float, str]]] = {tag: [] for tag in tag_sizes}
    for line in _read_lines(os.path.join(dicts_dir, POSLEX), "festlex-poslex"):
        match = re.match(r'\("([^"]+)" \((.*)\) \(\) \)', line)
        if not match:
            continue
        word = match.group(1)
        # Plain words only: acronyms (no vowel), hyphenated compounds and names would be spelt or mangled.
        if not re.fullmatch(r"[a-z]{2,}", word) or word not in known or not re.search("[aeiouy]", word):
            continue
        for tag, logp in re.findall(r"\((\w+) (-?[\d.]+)\)", match.group(2)):
            if tag in scored:
                scored[tag].append((float(logp), word))
    vocabulary = {}
    for tag, items in scored.items():
        items.sort(key=lambda item: (-item[0], item[1]))
        words = [word for _, word in items]
        if tag == "vbd":  # number agreement is handled by the grammar, not by a past-tense verb
            words = [word for word in words if word not in ("was", "were")]
        if tag == "rb":  # manner adverbs read naturally at the end of a clause
            words = [word for word in words if word.endswith("ly")]
        vocabulary[tag] = words[: tag_sizes[tag]]
        if len(vocabulary[tag]) < 20:
            raise VocabularyError(f"{os.path.join(dicts_dir, POSLEX)}: only {len(vocabulary[tag])} words of tag {tag!r}")
    return vocabulary


@dataclass
class Sentence:
    """One generated sentence: ``prompt`` is what the synthesiser reads (with punctuation),
    ``text`` the transcript in LibriSpeech normalisation (upper case, apostrophes kept)."""

    prompt: str
    text: str


class SentenceGenerator:
    """Random sentences from a small grammar over the vocabulary, deterministic given the numpy generator.

    ``min_words`` / ``max_words`` bound the transcript length; clauses are joined with a conjunction
    until the sentence is long enough.
    """

    def __init__(self, vocabulary: Optional[Dict[str, List[str]]] = None, min_words: int = 5, max_words: int = 18):
        self.vocabulary = vocabulary if vocabulary is not None else load_vocabulary()
        self.min_words = min_words
        self.max_words = max_words

    @property
    def vocabulary_size(self) -> int:
        words = {w for words in self.vocabulary.values() for w in words}
        for closed in (DETERMINERS_SINGULAR, DETERMINERS_PLURAL, PRONOUNS, MODALS, NEGATED, CONTRACTED, PREPOSITIONS, CONJUNCTIONS, WH):
            words.update(w for phrase in closed for w in phrase.split())
        return len(words)

    # Zipf-like choice inside a word list: frequent words come up more often, as in real text.
    def _word(self, rng: np.random.Generator, tag: str) -> str:
        words = self.vocabulary[tag]
        index = int(rng.pareto(1.0) * len(words) / 8)
        if index >= len(words):  # the tail beyond the list is spread uniformly, not piled on the last word
            index = int(rng.integers(len(words)))
        return words[index]

    def _pick(self, rng: np.random.Generator, options: Sequence[str]) -> str:
        return options[int(rng.integers(len(options)))]

    def _noun_phrase(self, rng: np.random.Generator) -> Tuple[List[str], bool]:
        """(words, plural): determiner, optional adjective, noun; sometimes a possessive ("the firm's loss")."""
        plural = rng.random() >= 0.6
        det = self._pick(rng, DETERMINERS_PLURAL if plural else DETERMINERS_SINGULAR)
        words = [self._word(rng, "jj")] if rng.random() < 0.45 else []
        words.append(self._word(rng, "nns" if plural else "nn"))
        if not plural and rng.random() < 0.08:
            words[-1] += "'s"
            plural = rng.random() >= 0.6
            words.append(self._word(rng, "nns" if plural else "nn"))
        if det == "a" and words[0][0] in "aeiou":
            det = "an"
        return det.split() + words, plural

    def _clause(self, rng: np.random.Generator) -> List[str]:
        kind = rng.random()
        if kind < 0.4:
            words = self._noun_phrase(rng)[0] + [self._word(rng, "vbd")] + self._noun_phrase(rng)[0]
        elif kind < 0.55:
            words = [self._pick(rng, PRONOUNS), self._pick(rng, MODALS), self._word(rng, "vb")] + self._noun_phrase(rng)[0]
        elif kind < 0.65:
            words = [self._pick(rng, PRONOUNS), self._pick(rng, NEGATED), self._word(rng, "vb")] + self._noun_phrase(rng)[0]
        elif kind < 0.72:
            words = [self._pick(rng, CONTRACTED), self._word(rng, "vb")] + self._noun_phrase(rng)[0]
        elif kind < 0.82:
            subject, plural = self._noun_phrase(rng)
            words = subject + ["were" if plural else "was", self._word(rng, "vbg")] + self._noun_phrase(rng)[0]
        elif kind < 0.9:
            subject, plural = self._noun_phrase(rng)
            words = ["there", "were" if plural else "was"] + subject
        else:
            words = self._noun_phrase(rng)[0] + [self._word(rng, "vbd"), self._word(rng, "rb")]
        if rng.random() < 0.35:
            words += [self._pick(rng, PREPOSITIONS)] + self._noun_phrase(rng)[0]
        return words

    def sentence(self, rng: np.random.Generator) -> Sentence:
        """One sentence of ``min_words``..``max_words`` words."""
        for _ in range(100):
            question = rng.random() < 0.08
            if question:
                clauses = [[self._pick(rng, WH), "did"] + self._noun_phrase(rng)[0] + [self._word(rng, "vb")] + self._noun_phrase(rng)[0]]
            else:
                clauses = [self._clause(rng)]
                while sum(map(len, clauses)) < self.min_words or (rng.random() < 0.25 and sum(map(len, clauses)) < self.max_words - 4):
                    clauses.append([self._pick(rng, CONJUNCTIONS)] + self._clause(rng))
            words = [w for clause in clauses for w in clause]
            if self.min_words <= len(words) <= self.max_words:
                prompt = ", ".join(" ".join(clause) for clause in clauses)
                prompt = prompt[0].upper() + prompt[1:] + ("?" if question else ".")
                return Sentence(prompt=prompt, text=" ".join(words).upper())
        raise RuntimeError(f"no sentence of {self.min_words}..{self.max_words} words after 100 tries; widen the bounds")
