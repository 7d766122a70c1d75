"""Downstream CTC ASR on a small labeled subset: any upstream (frozen or fine-tuned) + a CTC head,
trained with the shared Trainer and evaluated to WER / CER on ``dev`` and ``test``.

With a frozen upstream the features of every utterance are extracted once (and cached on disk by
``repr_asr.evaluation.features.extract_features``) and the head trains on them: the upstream never runs
again, which makes the 10-minute and 1-hour runs cheap. A fine-tuned upstream trains from audio.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .config import ConfigError, RunConfig, load_config
from .trainer import Trainer

logger = logging.getLogger(__name__)

SUBSETS = ("10h", "1h", "10min")


@dataclass
class CTCDataConfig:
    r"""The `data:` section of a CTC config: corpus, labeled subset, output units and decoding.

    Args:
        spec (`str`, defaults to `"builtin:data/builtin"`): corpus spec (`builtin:PATH`, `librispeech:PATH`,
            `hf:NAME_OR_PATH`); `--data` on the command line.
        subset (`str`, defaults to `"10min"`): labeled subset to train on: `10h`, `1h` or `10min`
            (the corpus split `train-<subset>`); `--subset` on the command line.
        eval_splits (`str`, defaults to `"dev,test"`): comma-separated splits decoded at the end.
        tokenizer (`str`, defaults to `"char"`): output units, `"char"` or `"sentencepiece"` (trained on the
            labeled subset's text only).
        vocab_size (`int`, defaults to `0`): sentencepiece vocabulary size (blank and `<unk>` included);
            required for `sentencepiece`, ignored for characters.
        cache_features (`bool`, defaults to `True`): with a frozen upstream, extract features once and train
            the head on them (the upstream does not run during training).
        cache_dir (`str`, defaults to `""`): feature cache folder; empty means `OUTPUT_DIR/feature_cache`.
        max_batch_seconds (`float`, defaults to `200.0`): padded audio per batch when extracting features
            and decoding.
        max_eval_utterances (`int`, defaults to `0`): decode at most this many utterances per split (0: all).
        lm_text (`str`, defaults to `""`): a text file (one sentence per line) to train a word n-gram for
            beam search; empty: greedy decoding only.
        lm_order (`int`, defaults to `3`): n-gram order of that LM.
        beam_size (`int`, defaults to `50`): beam width of the LM decoder.
        lm_weight (`float`, defaults to `2.0`): LM weight in the beam search.
        word_score (`float`, defaults to `0.0`): word insertion score in the beam search.
    """

    spec: str = "builtin:data/builtin"
    subset: str = "10min"
    eval_splits: str = "dev,test"
    tokenizer: str = "char"
    vocab_size: int = 0
    cache_features: bool = True
    cache_dir: str = ""
    max_batch_seconds: float = 200.0
    max_eval_utterances: int = 0
    lm_text: str = ""
    lm_order: int = 3
    beam_size: int = 50
    lm_weight: float = 2.0
    word_score: float = 0.0

    def __post_init__(self):
        if self.subset not in SUBSETS:
            raise ConfigError(f"data.subset must be one of {list(SUBSETS)}, got {self.subset!r}")
        if self.tokenizer not in ("char", "sentencepiece"):
            raise ConfigError(f"data.tokenizer must be 'char' or 'sentencepiece', got {self.tokenizer!r}")
        if self.tokenizer == "sentencepiece" and self.vocab_size <= 0:
            raise ConfigError("data.tokenizer 'sentencepiece' needs data.vocab_size > 0 (e.g. --vocab_size 64)")


def load_ctc_config(path, overrides) -> RunConfig:
    """A CTC run config: ``model:`` holds ``UpstreamForCTCConfig`` head options, ``data:`` a ``CTCDataConfig``."""
    run = load_config(path, overrides, data_cls=CTCDataConfig)
    if run.model_type not in (None, "upstream_ctc"):
        raise ConfigError(f"{path}: a CTC config has model_type upstream_ctc (or none), got {run.model_type!r}")
    run.model_type = "upstream_ctc"
    return run


# ---------------------------------------------------------------------------------------------- data


class CachedFeatureDataset(torch.utils.data.Dataset):
    """Items of frozen features: ``(points, frames, dim)`` stacks (one slice per probe point the model reads) + labels."""

    def __init__(self, stacks: list[np.ndarray], labels: Optional[list[list[int]]] = None):
        self.stacks = stacks
        self.labels = labels

    def __len__(self) -> int:
        return len(self.stacks)

    def __getitem__(self, index: int) -> dict:
        item = {"upstream_features": self.stacks[index]}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def _pad_labels(labels: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(labels), max(len(l) for l in labels)), -100, dtype=torch.long)
    for i, label in enumerate(labels):
        out[i, : len(label)] = torch.as_tensor(label, dtype=torch.long)
    return out


def collate_features(items: list[dict]) -> dict:
    """Pad ``(points, frames, dim)`` stacks into ``upstream_features`` ``(batch, points, frames, dim)``."""
    stacks = [torch.as_tensor(item["upstream_features"]) for item in items]
    lengths = torch.tensor([s.shape[1] for s in stacks], dtype=torch.long)
    points, dim = stacks[0].shape[0], stacks[0].shape[2]
    batch = torch.zeros(len(stacks), points, int(lengths.max()), dim, dtype=stacks[0].dtype)
    for i, stack in enumerate(stacks):
        batch[i, :, : stack.shape[1]] = stack
    out = {"upstream_features": batch, "feature_lengths": lengths}
    if "labels" in items[0]:
        out["labels"] = _pad_labels([item["labels"] for item in items])
    return out


class AudioLabelDataset(torch.utils.data.Dataset):
    """Items of decoded audio + labels, for a fine-tuned upstream."""

    def __init__(self, split, labels: Optional[list[list[int]]] = None, sampling_rate: int = 16000):
        self.split = split
        self.labels = labels
        self.sampling_rate = sampling_rate

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        from ..audio import decode_audio

        row = self.split[index]
        item = {"audio": decode_audio(row["audio"], self.sampling_rate, name=row["id"])}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


class AudioLabelCollator:
    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor

    def __call__(self, items: list[dict]) -> dict:
        batch = self.feature_extractor(
            [item["audio"] for item in items], sampling_rate=self.feature_extractor.sampling_rate, return_tensors="pt"
        )
        out = {"input_values": batch["input_values"], "attention_mask": batch["attention_mask"]}
        if "labels" in items[0]:
            out["labels"] = _pad_labels([item["labels"] for item in items])
        return out


# ---------------------------------------------------------------------------------------------- helpers


def _subset_split(corpus, subset: str):
    name = f"train-{subset}"
    if name not in corpus:
        raise KeyError(f"the corpus has no split {name!r} (it has {list(corpus)})")
    split = corpus[name]
    if len(split) == 0:
        raise ValueError(f"split {name!r} is empty")
    return split


def _limit(split, n: int):
    return split.select(range(min(n, len(split)))) if n and n > 0 else split


def _feature_stacks(model, split, cache_dir: Optional[Path], cache_key: str, max_batch_seconds: float) -> list[np.ndarray]:
    """``(points, frames, dim)`` per utterance at the probe points the CTC model reads."""
    from ..evaluation.features import extract_features

    points = list(model.weighted_probe_points)
    extracted = extract_features(
        model.upstream, split, probe_points=points, max_batch_seconds=max_batch_seconds,
        cache_dir=cache_dir, cache_key=cache_key,
    )
    per_point = [extracted.features[p] for p in points]
    stacks = []
    for arrays in zip(*per_point):
        frames = min(a.shape[0] for a in arrays)  # points at one rate may differ by an edge frame
        stacks.append(np.stack([a[:frames] for a in arrays]).astype(np.float32))  # (P, T, D)
    return stacks


def count_too_long(output_lengths: list[int], labels: list[list[int]]) -> int:
    """Utterances whose labels need more CTC frames than the model emits (repeats need a blank between)."""
    from ..models.upstream_ctc.modeling_upstream_ctc import ctc_min_frames

    needed = ctc_min_frames(_pad_labels(labels)).tolist()
    return sum(int(n > o) for n, o in zip(needed, output_lengths))


@torch.no_grad()
def transcribe(model, tokenizer, dataset, collate_fn, batch_size: int, beam_decoder=None) -> dict:
    """Greedy (and beam-search) transcripts of every item of ``dataset`` in order."""
    from ..evaluation.decoding import greedy_decode

    was_training = model.training
    model.eval()
    greedy, beam = [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collate_fn(items)
        out = model(**batch)
        greedy += greedy_decode(out.logits, tokenizer, out.output_lengths)
        if beam_decoder is not None:
            beam += beam_decoder(out.logits, out.output_lengths)
    model.train(was_training)
    return {"greedy": greedy, "beam": beam}


# ---------------------------------------------------------------------------------------------- entry point


def run_finetune_ctc(
    run: RunConfig, upstream: str, output_dir: str | os.PathLike, resume: bool = False, config_path: Optional[str] = None
) -> dict:
    """Train a CTC head on ``train-<subset>`` over ``upstream`` (a path, hub name, ``fbank`` or ``mfcc``),
    decode the evaluation splits, and write ``output_dir/results.json`` and ``output_dir/final/``
    (model + tokenizer + feature extractor: loadable by ``AutoModelForCTC`` and the ASR pipeline)."""
    import repr_asr  # noqa: F401  (Auto classes)
    from accelerate.utils import set_seed

    from ..data import load_corpus
    from ..data.text import normalize_text
    from ..evaluation.report import write_results
    from ..evaluation.wer import cer, wer
    from ..feature_extraction import ReprFeatureExtractor
    from ..models import load_upstream
    from ..models.upstream_ctc import UpstreamForCTC
    from ..tokenization import build_tokenizer, encode_transcripts

    data: CTCDataConfig = run.data
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    run.save(output_dir / "config.yaml")
    set_seed(run.training.seed)

    corpus = load_corpus(data.spec)
    train_split = _subset_split(corpus, data.subset)
    texts, ids = list(train_split["text"]), [str(i) for i in train_split["id"]]

    tokenizer_dir = output_dir / "tokenizer"
    tokenizer = build_tokenizer(texts, str(tokenizer_dir), unit=data.tokenizer, vocab_size=data.vocab_size, ids=ids)
    labels = encode_transcripts(tokenizer, texts, ids)

    upstream_model = load_upstream(upstream)
    model = UpstreamForCTC.from_upstream(
        upstream_model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **run.model
    )
    feature_extractor = ReprFeatureExtractor.from_pretrained(upstream) if os.path.isdir(upstream) else ReprFeatureExtractor()
    frozen = bool(model.config.freeze_upstream)
    cached = frozen and data.cache_features
    cache_dir = Path(data.cache_dir) if data.cache_dir else output_dir / "feature_cache"
    upstream_key = upstream
    if os.path.isdir(upstream):
        # A re-trained upstream in the same folder must not reuse stale features.
        weights = [os.stat(p) for p in Path(upstream).glob("*.safetensors")]
        upstream_key = f"{os.path.abspath(upstream)}@" + ",".join(f"{w.st_size}:{w.st_mtime_ns}" for w in weights)

    def dataset_for(split, split_labels, name: str):
        if cached:
            key = f"{upstream_key}|{data.spec}|{name}"
            stacks = _feature_stacks(model, split, cache_dir / _safe(name), key, data.max_batch_seconds)
            return CachedFeatureDataset(stacks, split_labels)
        return AudioLabelDataset(split, split_labels, feature_extractor.sampling_rate)

    train_dataset = dataset_for(train_split, labels, f"train-{data.subset}")
    collate = collate_features if cached else AudioLabelCollator(feature_extractor)
    if cached:
        output_lengths = model.head.output_lengths(torch.tensor([s.shape[1] for s in train_dataset.stacks])).tolist()
    else:
        samples = torch.tensor([int(round(float(d) * feature_extractor.sampling_rate)) for d in train_split["duration"]])
        output_lengths = model.output_lengths(samples).tolist()
    too_long = count_too_long(output_lengths, labels)
    if too_long:
        logger.warning("%d of %d training utterances have more labels than output frames; their CTC loss is zeroed",
                       too_long, len(labels))

    if run.training.drop_last and len(train_dataset) < run.training.batch_size:
        logger.warning("train-%s has %d utterances, fewer than batch_size %d: keeping the incomplete batch",
                       data.subset, len(train_dataset), run.training.batch_size)
        run.training.drop_last = False
    trainer = Trainer(
        model, train_dataset, collate, run.training, output_dir,
        param_groups=model.parameter_groups(), feature_extractor=feature_extractor,
        card_info={"upstream": upstream, "data": data.spec, "subset": data.subset, "tokenizer": data.tokenizer,
                   "config": config_path or ""},
    )
    train_metrics = trainer.train(resume=resume)
    model = trainer.unwrapped_model
    final_dir = output_dir / "final"
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(final_dir)

    beam_decoder = None
    if data.lm_text:
        from ..evaluation.decoding import BeamSearchDecoder
        from ..evaluation.ngram import build_ngram, read_text_file

        lm_lines = read_text_file(data.lm_text)
        unit = "word" if data.tokenizer == "char" else "token"
        lm_path = build_ngram(lm_lines, str(output_dir / "lm" / f"{data.lm_order}gram.arpa"), order=data.lm_order,
                              unit=unit, tokenizer=tokenizer)
        words = sorted({w for line in lm_lines for w in normalize_text(line).split()} | {w for t in texts for w in t.split()})
        beam_decoder = BeamSearchDecoder(
            tokenizer, lexicon_words=words if data.tokenizer == "char" else None, lm=lm_path,
            lm_weight=data.lm_weight, word_score=data.word_score, beam_size=data.beam_size, work_dir=str(output_dir / "lm"),
        )

    metrics = {}
    hypotheses = {}
    for name in [s.strip() for s in data.eval_splits.split(",") if s.strip()]:
        if name not in corpus or len(corpus[name]) == 0:
            logger.warning("evaluation split %r is missing or empty; skipped", name)
            continue
        split = _limit(corpus[name], data.max_eval_utterances)
        references = [normalize_text(t) for t in split["text"]]
        dataset = dataset_for(split, None, name)  # no labels: decoding only
        out = transcribe(model, tokenizer, dataset, collate, run.training.batch_size, beam_decoder)
        metrics[name] = {"wer": wer(references, out["greedy"]), "cer": cer(references, out["greedy"]),
                         "utterances": len(references)}
        if beam_decoder is not None:
            metrics[name].update({"wer_lm": wer(references, out["beam"]), "cer_lm": cer(references, out["beam"])})
        hypotheses[name] = [
            {"id": str(i), "reference": r, "greedy": g} | ({"lm": b} if beam_decoder is not None else {})
            for i, r, g, b in zip(split["id"], references, out["greedy"], out["beam"] or [None] * len(references))
        ]

    upstream_config = model.upstream.config
    results = {
        "task": "ctc",
        "upstream": upstream,
        "upstream_name": upstream if upstream in ("fbank", "mfcc") else _upstream_name(upstream, upstream_config),
        "upstream_type": upstream_config.model_type,
        "probe_point": "weighted_sum" if model.config.weighted_sum else model.probe_point,
        "frozen": frozen,
        "subset": data.subset,
        "train_utterances": len(labels),
        "train_hours": float(sum(train_split["duration"])) / 3600 if "duration" in train_split.column_names else None,
        "too_long": too_long,
        "tokenizer": data.tokenizer,
        "vocab_size": len(tokenizer),
        "steps": run.training.max_steps,
        "seed": run.training.seed,
        "data": data.spec,
        "config": run.to_dict() | {"data": asdict(data)},
        "train_metrics": {k: float(v) for k, v in (train_metrics or {}).items() if isinstance(v, (int, float))},
        "metrics": metrics,
    }
    if trainer.accelerator.is_main_process:
        with open(output_dir / "hypotheses.json", "w") as handle:
            json.dump(hypotheses, handle, indent=1)
        write_results(str(output_dir), results)
    return results


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _upstream_name(path: str, config) -> str:
    """A readable row label: the run folder's name (``runs/wavenet_vq/final`` → ``wavenet_vq``)."""
    parts = [p for p in Path(path).parts if p not in ("final", ".")]
    return parts[-1] if parts else config.model_type
