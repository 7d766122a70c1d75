"""Downstream CTC ASR on a small labeled subset: any upstream (frozen or fine-tuned) + a CTC head,
trained with the shared Trainer, validated on ``dev`` and evaluated to WER / CER on ``dev`` and ``test``.

With a frozen upstream the features of every utterance are extracted once (and cached on disk by
``repr_asr.evaluation.features.extract_features``) and the head trains on them: the upstream never runs
again, which makes the 10-minute and 1-hour runs cheap. A fine-tuned upstream trains from audio.

One feature extractor throughout: the upstream's own saved one (``repr_asr.models.load_feature_extractor``,
e.g. ``do_normalize`` set at pretraining) prepares the audio for the cached features, for the fine-tuning
collator and for decoding, and is what ``final/`` holds, so the ASR pipeline sees the features the head
was trained on.

Validation: every ``training.eval_steps`` (and at the end) the model decodes ``data.validation_split``
greedily and the Trainer records ``eval_cer`` / ``eval_wer``; with ``training.metric_for_best_model``
(``eval_cer`` in the configs) ``final/`` holds the best evaluation's weights, and
``training.early_stopping_patience`` evaluations without improvement stop the run.

Undecodable audio (``repr_asr.audio.AudioError``) is skipped and named, unless ``training.strict``: the
fine-tuning dataset returns ``skipped_item`` markers (``repr_asr.data.skipping``), and the frozen path
leaves such utterances out before extracting features. ``results.json`` lists them per split.
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

from ..data.skipping import SKIPPED_KEY, is_skipped, skipped_item, split_skipped
from .config import ConfigError, RunConfig, load_config
from .trainer import Trainer

logger = logging.getLogger(__name__)

SUBSETS = ("10h", "1h", "10min")
VALIDATION_METRICS = ("eval_cer", "eval_wer")  # what the CTC eval_fn returns, as the Trainer names them


@dataclass
class CTCDataConfig:
    r"""The `data:` section of a CTC config: corpus, labeled subset, output units and decoding.

    There is no feature normalisation setting here: the audio is prepared by the upstream's own saved
    feature extractor (its ``do_normalize`` was chosen at pretraining, ``--data.normalize``), for
    training, decoding and in ``final/`` alike.

    Args:
        spec (`str`, defaults to `"builtin:data/builtin"`): corpus spec (`builtin:PATH`, `librispeech:PATH`,
            `hf:NAME_OR_PATH`); `--data` on the command line.
        subset (`str`, defaults to `"10min"`): labeled subset to train on: `10h`, `1h` or `10min`
            (the corpus split `train-<subset>`); `--subset` on the command line.
        eval_splits (`str`, defaults to `"dev,test"`): comma-separated splits decoded at the end.
        validation_split (`str`, defaults to `"dev"`): split decoded greedily every `training.eval_steps`
            (CER / WER), which picks the best checkpoint with `training.metric_for_best_model`; empty: no
            validation (then `final/` is the last step).
        tokenizer (`str`, defaults to `"char"`): output units, `"char"` or `"sentencepiece"` (trained on the
            labeled subset's text only).
        vocab_size (`int`, defaults to `0`): sentencepiece vocabulary size (blank and `<unk>` included);
            required for `sentencepiece`, ignored for characters.
        cache_features (`bool`, defaults to `True`): with a frozen upstream, extract features once and train
            the head on them (the upstream does not run during training).
        cache_dir (`str`, defaults to `""`): feature cache folder; empty means `OUTPUT_DIR/feature_cache`.
        max_batch_seconds (`float`, defaults to `200.0`): padded audio per batch when extracting features.
        max_eval_utterances (`int`, defaults to `0`): decode at most this many utterances per split, the
            validation split included (0: all).
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
    validation_split: str = "dev"
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
    metric = run.training.metric_for_best_model
    if metric and metric not in VALIDATION_METRICS:
        raise ConfigError(f"{path}: training.metric_for_best_model must be one of {list(VALIDATION_METRICS)} "
                          f"for CTC, got {metric!r}")
    if metric and not run.data.validation_split:
        raise ConfigError(f"{path}: training.metric_for_best_model {metric!r} needs data.validation_split (e.g. dev)")
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
    """Items of decoded audio + labels, for a fine-tuned upstream.

    An utterance whose audio cannot be decoded (``AudioError``) becomes a ``skipped_item`` marker that
    the collator drops and names, unless ``strict``, which raises.
    """

    def __init__(self, split, labels: Optional[list[list[int]]] = None, sampling_rate: int = 16000, strict: bool = False):
        self.split = split
        self.labels = labels
        self.sampling_rate = sampling_rate
        self.strict = strict

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        from ..audio import AudioError, decode_audio

        row = self.split[index]
        try:
            audio = decode_audio(row["audio"], self.sampling_rate, name=row["id"])
        except AudioError as error:
            if self.strict:
                raise
            return skipped_item(row["id"], error)
        item = {"audio": audio}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


class AudioLabelCollator:
    """Pads waveforms with ``feature_extractor`` (the one saved into ``final/``) into ``input_values``
    ``(batch, samples)`` + ``attention_mask``; skipped items are listed under ``batch["skipped"]``
    (a batch of skipped items only holds nothing else)."""

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor

    def __call__(self, items: list[dict]) -> dict:
        items, skipped = split_skipped(items)
        out: dict = {SKIPPED_KEY: skipped} if skipped else {}
        if not items:
            return out
        batch = self.feature_extractor(
            [item["audio"] for item in items], sampling_rate=self.feature_extractor.sampling_rate, return_tensors="pt"
        )
        out.update(input_values=batch["input_values"], attention_mask=batch["attention_mask"])
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


def process_state():
    """Accelerate's ``PartialState``, set up as the Trainer's ``Accelerator`` will find it: the Accelerator
    reads ``ACCELERATE_USE_CPU`` (several CPU processes) but a bare ``PartialState()`` does not, and the
    first one created fixes the set-up for the whole process."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def _gather(state, objects: list) -> list:
    """Every process's list concatenated (on every process); the list itself with one process."""
    if state is None or state.num_processes == 1:
        return objects
    from accelerate.utils import gather_object

    return gather_object(objects)


def undecodable(split, sampling_rate: int, state=None) -> list[dict]:
    """``[{"index", "id", "error"}]`` for the utterances of ``split`` whose audio raises ``AudioError``,
    in split order (with several processes each decodes a share)."""
    from ..audio import AudioError, decode_audio

    step, start = (state.num_processes, state.process_index) if state is not None else (1, 0)
    bad = []
    for index in range(start, len(split), step):
        row = split[index]
        try:
            decode_audio(row["audio"], sampling_rate, name=row["id"])
        except AudioError as error:
            bad.append({"index": index, "id": str(row["id"]), "error": str(error)})
    return sorted(_gather(state, bad), key=lambda item: item["index"])


def _feature_stacks(model, split, cache_dir: Optional[Path], cache_key: str, max_batch_seconds: float,
                    feature_extractor=None, state=None) -> list[np.ndarray]:
    """``(points, frames, dim)`` per utterance at the probe points the CTC model reads, with the audio
    prepared by ``feature_extractor`` (the one ``final/`` and the ASR pipeline use)."""
    from ..evaluation.features import extract_features

    points = list(model.weighted_probe_points)
    extracted = extract_features(
        model.upstream, split, probe_points=points, max_batch_seconds=max_batch_seconds,
        cache_dir=cache_dir, cache_key=cache_key, feature_extractor=feature_extractor,
        device=state.device if state is not None else None, accelerator=state,
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


def _model_device(model) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def transcribe(model, tokenizer, dataset, collate_fn, batch_size: int, beam_decoder=None, accelerator=None,
               split: bool = True) -> dict:
    """Greedy (and beam-search) transcripts of the items of ``dataset``.

    Batches go to the model's device (``accelerator.device`` when given, under its autocast). With an
    ``accelerator`` (or ``PartialState``) of several processes and ``split``, process ``p`` decodes
    batches ``p, p + n, ...`` and the results are gathered to every process; ``split=False`` decodes
    everything here (when the processes can no longer talk to each other). Items the dataset marks as
    skipped (undecodable audio) are left out. Returns ``{"indices": [...], "greedy": [...], "beam": [...],
    "skipped": [{"index", "id", "error"}]}``, the first three aligned and in dataset order (``beam``
    empty without a decoder).
    """
    from contextlib import nullcontext

    from ..evaluation.decoding import greedy_decode

    if accelerator is not None and hasattr(accelerator, "unwrap_model"):
        # The bare model: a DDP wrapper's forward would sync with processes that have other batch counts.
        model = accelerator.unwrap_model(model)
    device = accelerator.device if accelerator is not None else _model_device(model)
    # A fresh context per batch: a context manager object can be entered only once.
    autocast = accelerator.autocast if hasattr(accelerator, "autocast") else nullcontext
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None and split else (0, 1)
    was_training = model.training
    model.eval()
    decoded, skipped = [], []
    starts = range(0, len(dataset), batch_size)
    for start in list(starts)[rank::world]:
        indices = list(range(start, min(start + batch_size, len(dataset))))
        items = [dataset[i] for i in indices]
        skipped += [{"index": i, "id": item["id"], "error": item["error"]} for i, item in zip(indices, items) if is_skipped(item)]
        kept = [i for i, item in zip(indices, items) if not is_skipped(item)]
        if not kept:
            continue
        batch = collate_fn([item for item in items if not is_skipped(item)])
        batch.pop(SKIPPED_KEY, None)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast():
            out = model(**batch)
        greedy = greedy_decode(out.logits, tokenizer, out.output_lengths)
        beam = beam_decoder(out.logits, out.output_lengths) if beam_decoder is not None else [None] * len(kept)
        decoded += list(zip(kept, greedy, beam))
    model.train(was_training)
    if world > 1:
        decoded, skipped = _gather(accelerator, decoded), _gather(accelerator, skipped)
    decoded = sorted(decoded, key=lambda d: d[0])
    skipped = sorted(skipped, key=lambda s: s["index"])
    return {
        "indices": [d[0] for d in decoded],
        "greedy": [d[1] for d in decoded],
        "beam": [d[2] for d in decoded] if beam_decoder is not None else [],
        "skipped": skipped,
    }


def validation_fn(dataset, collate_fn, tokenizer, references: list[str], batch_size: int):
    """The Trainer's ``eval_fn``: greedy CER and WER (jiwer, whole-set) of ``dataset`` against ``references``
    (the Trainer names them ``eval_cer`` / ``eval_wer``)."""
    from ..evaluation.wer import cer, wer

    def eval_fn(model, accelerator) -> dict:
        out = transcribe(model, tokenizer, dataset, collate_fn, batch_size, accelerator=accelerator)
        kept = [references[i] for i in out["indices"]]
        return {"cer": cer(kept, out["greedy"]), "wer": wer(kept, out["greedy"])}

    return eval_fn


# ---------------------------------------------------------------------------------------------- entry point


def run_finetune_ctc(
    run: RunConfig, upstream: str, output_dir: str | os.PathLike, resume: bool = False, config_path: Optional[str] = None
) -> dict:
    """Train a CTC head on ``train-<subset>`` over ``upstream`` (a path, hub name, ``fbank`` or ``mfcc``),
    validate it on ``data.validation_split``, decode the evaluation splits, and write
    ``output_dir/results.json`` and ``output_dir/final/`` (model + tokenizer + feature extractor:
    loadable by ``AutoModelForCTC`` and the ASR pipeline)."""
    import repr_asr  # noqa: F401  (Auto classes)
    from accelerate.utils import set_seed

    from ..data import load_corpus
    from ..data.text import normalize_text
    from ..evaluation.features import extractor_settings
    from ..evaluation.report import write_results
    from ..evaluation.wer import cer, wer
    from ..models import load_feature_extractor, load_upstream
    from ..models.upstream_ctc import UpstreamForCTC
    from ..tokenization import build_tokenizer, encode_transcripts
    from .checkpoint import prepare_output_dir

    # Before anything is written: a folder holding another run's checkpoints is refused without --resume.
    output_dir = prepare_output_dir(output_dir, resume)
    data: CTCDataConfig = run.data
    strict = run.training.strict
    run.save(output_dir / "config.yaml")
    set_seed(run.training.seed)
    # Feature extraction and the undecodable-audio scan are split across processes, on this process's device.
    state = process_state()

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
    # The upstream's own extractor, for cached features, the fine-tuning collator, decoding and final/.
    feature_extractor = load_feature_extractor(upstream)
    frozen = bool(model.config.freeze_upstream)
    cached = frozen and data.cache_features
    cache_dir = Path(data.cache_dir) if data.cache_dir else output_dir / "feature_cache"
    skipped: dict[str, list[dict]] = {}

    def dataset_for(split, split_labels, name: str):
        """(dataset, rows kept, labels kept) for ``split``; the frozen path leaves undecodable audio out here."""
        if not cached:
            return AudioLabelDataset(split, split_labels, feature_extractor.sampling_rate, strict), split, split_labels
        if not strict:
            bad = undecodable(split, feature_extractor.sampling_rate, state)
            if bad:
                for item in bad:
                    logger.warning("%s: skipping utterance %s: %s", name, item["id"], item["error"])
                skipped[name] = [{"id": item["id"], "error": item["error"]} for item in bad]
                keep = sorted(set(range(len(split))) - {item["index"] for item in bad})
                split = split.select(keep)
                split_labels = [split_labels[i] for i in keep] if split_labels is not None else None
        # The cache key covers the weights, the extractor's settings and the audio (features.py).
        stacks = _feature_stacks(model, split, cache_dir / _safe(name), name, data.max_batch_seconds,
                                 feature_extractor, state)
        return CachedFeatureDataset(stacks, split_labels), split, split_labels

    train_name = f"train-{data.subset}"
    train_dataset, train_rows, labels = dataset_for(train_split, labels, train_name)
    if len(train_dataset) == 0:
        raise ValueError(f"{train_name}: no utterance could be decoded")
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

    # Evaluation sets (dataset, rows kept, references), all built before training: their features are
    # extracted while the processes can still share the work, and the validation split is reused at the end.
    if data.validation_split and (data.validation_split not in corpus or len(corpus[data.validation_split]) == 0):
        raise KeyError(f"data.validation_split {data.validation_split!r}: the corpus has no such split, or it is "
                       f"empty (it has {list(corpus)}); set --data.validation_split \"''\" to train without validation")
    eval_names = [s.strip() for s in data.eval_splits.split(",") if s.strip()]
    eval_sets: dict[str, tuple] = {}
    for name in dict.fromkeys(([data.validation_split] if data.validation_split else []) + eval_names):
        if name not in corpus or len(corpus[name]) == 0:
            logger.warning("evaluation split %r is missing or empty; skipped", name)
            continue
        split = _limit(corpus[name], data.max_eval_utterances)
        dataset, rows, _ = dataset_for(split, None, name)  # no labels: decoding only
        eval_sets[name] = (dataset, rows, [normalize_text(t) for t in rows["text"]])

    eval_fn = None
    if data.validation_split:
        dataset, _, references = eval_sets[data.validation_split]
        eval_fn = validation_fn(dataset, collate, tokenizer, references, run.training.batch_size)

    if run.training.drop_last and len(train_dataset) < run.training.batch_size:
        logger.warning("train-%s has %d utterances, fewer than batch_size %d: keeping the incomplete batch",
                       data.subset, len(train_dataset), run.training.batch_size)
        run.training.drop_last = False
    trainer = Trainer(
        model, train_dataset, collate, run.training, output_dir,
        param_groups=model.parameter_groups(), eval_fn=eval_fn, feature_extractor=feature_extractor,
        card_info={"upstream": upstream, "data": data.spec, "subset": data.subset, "tokenizer": data.tokenizer,
                   "config": config_path or ""},
    )
    train_metrics = trainer.train(resume=resume)
    # With metric_for_best_model the Trainer has put the best evaluation's weights back (they are final/).
    model = trainer.unwrapped_model
    acc = trainer.accelerator
    final_dir = output_dir / "final"
    if acc.is_main_process:
        tokenizer.save_pretrained(final_dir)
    if not cached and trainer.skipped_total:
        skipped[train_name] = list(trainer.skipped_total)

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

    # The process group is still up after Trainer.train(): several processes split the decoding.
    split_decoding = torch.distributed.is_available() and torch.distributed.is_initialized()
    metrics = {}
    hypotheses = {}
    for name in eval_names:
        if name not in eval_sets:
            continue  # missing or empty (warned above)
        dataset, rows, references = eval_sets[name]
        out = transcribe(model, tokenizer, dataset, collate, run.training.batch_size, beam_decoder, accelerator=acc,
                         split=split_decoding)
        if out["skipped"]:
            skipped[name] = [{"id": s["id"], "error": s["error"]} for s in out["skipped"]]
        kept_refs = [references[i] for i in out["indices"]]
        kept_ids = [str(rows["id"][i]) for i in out["indices"]]
        metrics[name] = {"wer": wer(kept_refs, out["greedy"]), "cer": cer(kept_refs, out["greedy"]),
                         "utterances": len(kept_refs), "skipped": len(skipped.get(name, []))}
        if beam_decoder is not None:
            metrics[name].update({"wer_lm": wer(kept_refs, out["beam"]), "cer_lm": cer(kept_refs, out["beam"])})
        hypotheses[name] = [
            {"id": i, "reference": r, "greedy": g} | ({"lm": b} if beam_decoder is not None else {})
            for i, r, g, b in zip(kept_ids, kept_refs, out["greedy"], out["beam"] or [None] * len(kept_refs))
        ]

    upstream_config = model.upstream.config
    best_step = train_metrics.get("best_step")
    results = {
        "task": "ctc",
        "upstream": upstream,
        "upstream_name": upstream if upstream in ("fbank", "mfcc") else _upstream_name(upstream, upstream_config),
        "upstream_type": upstream_config.model_type,
        "probe_point": "weighted_sum" if model.config.weighted_sum else model.probe_point,
        "frozen": frozen,
        "feature_extractor": extractor_settings(feature_extractor),
        "subset": data.subset,
        "train_utterances": len(labels),
        "train_hours": float(sum(train_rows["duration"])) / 3600 if "duration" in train_rows.column_names else None,
        "too_long": too_long,
        "tokenizer": data.tokenizer,
        "vocab_size": len(tokenizer),
        "steps": run.training.max_steps,
        "steps_run": train_metrics.get("step"),
        "validation_split": data.validation_split,
        "metric_for_best_model": run.training.metric_for_best_model,
        # The step whose weights are final/ (None without metric_for_best_model: the last step) and its dev CER.
        "best_step": best_step,
        "best_dev_cer": _eval_at(output_dir / "metrics.jsonl", best_step, "eval_cer") if best_step is not None else None,
        "stopped_early": bool(train_metrics.get("stopped_early", False)),
        "skipped": skipped,
        "seed": run.training.seed,
        **trainer.run_info(),
        "data": data.spec,
        "config_name": Path(config_path).stem if config_path else "",
        "config": run.to_dict() | {"data": asdict(data)},
        "train_metrics": {k: float(v) for k, v in (train_metrics or {}).items() if isinstance(v, (int, float))},
        "metrics": metrics,
    }
    if acc.is_main_process:
        with open(output_dir / "hypotheses.json", "w") as handle:
            json.dump(hypotheses, handle, indent=1)
        write_results(str(output_dir), results)
    trainer.end()
    return results


def _eval_at(metrics_path: Path, step: int, name: str) -> Optional[float]:
    """``name`` from the evaluation record of ``step`` in ``metrics.jsonl`` (the Trainer writes one per evaluation)."""
    value = None
    if metrics_path.is_file():
        with open(metrics_path) as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("step") == step and name in record:
                    value = float(record[name])
    return value


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _upstream_name(path: str, config) -> str:
    """A readable row label: the run folder's name (``runs/wavenet_vq/final`` → ``wavenet_vq``)."""
    parts = [p for p in Path(path).parts if p not in ("final", ".")]
    return parts[-1] if parts else config.model_type
