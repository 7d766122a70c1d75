"""Downstream CTC ASR on a small labeled subset: any upstream (frozen or fine-tuned) + a CTC head,
trained with the shared Trainer, validated on ``dev`` and evaluated to WER / CER on ``dev`` and ``test``.

With a frozen upstream the features of every utterance are extracted once (and cached on disk by
``repr_asr.evaluation.features.extract_features``) and the head trains on them: the upstream never runs
again, which makes the 10-minute and 1-hour runs cheap. A fine-tuned upstream trains from audio.

One feature extractor throughout: the upstream's own saved one (``repr_asr.models.resolve_upstream``,
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

Decoding: greedy always; beam search with an n-gram word LM when ``data.lm_text`` (a text to train one
on) or ``data.lm_path`` (a prebuilt ARPA file or KenLM binary, with ``data.lexicon``) is given; its files
are prepared before training, so a wrong one stops the run before it spends any time.
``final/`` holds the model, its feature extractor and tokenizer as one ``Wav2Vec2Processor``
(``AutoProcessor.from_pretrained``), and a model card whose ``model-index`` carries the decoded WER / CER;
``push_to_hub`` uploads it.

This module runs the recipe; its pieces live in :mod:`.data` (datasets, collators),
:mod:`repr_asr.evaluation.transcribe` (decoding), :mod:`repr_asr.evaluation.decoding` (beam search, LM
files), :mod:`.results` (results, transcripts, the card's results) and :mod:`repr_asr.training.hub` (upload).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from ...evaluation.transcribe import process_state, transcribe, validation_fn
from ...training.config import ConfigError, RunConfig, load_config, warn_config_changes
from .data import (
    AudioLabelCollator,
    AudioLabelDataset,
    CachedFeatureDataset,
    collate_features,
    count_too_long,
    feature_stacks,
    limit,
    subset_split,
    undecodable,
    without_empty_references,
)
from ...run_lock import holds_run_folder
from ...training.trainer import Trainer

logger = logging.getLogger(__name__)

SUBSETS = ("10h", "1h", "10min")
# What the CTC eval_fn returns, as the Trainer names them: CER / WER for characters and pieces, PER for phones.
VALIDATION_METRICS = {"char": ("eval_cer", "eval_wer"), "sentencepiece": ("eval_cer", "eval_wer"), "phone": ("eval_per",)}
UNITS = tuple(VALIDATION_METRICS)


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
        tokenizer (`str`, defaults to `"char"`): output units, `"char"`, `"sentencepiece"` (trained on the
            labeled subset's text only) or `"phone"` (the corpus's phone alignments without silences, as
            SUPERB's phone recognition; scored by PER; a corpus without phones is refused).
        vocab_size (`int`, defaults to `0`): sentencepiece vocabulary size (blank and `<unk>` included);
            required for `sentencepiece`, ignored for characters.
        cache_features (`bool`, defaults to `True`): with a frozen upstream, extract features once and train
            the head on them (the upstream does not run during training).
        cache_dir (`str`, defaults to `""`): feature cache folder; empty means `OUTPUT_DIR/feature_cache`.
        max_batch_seconds (`float`, defaults to `200.0`): padded audio per batch when extracting features.
        max_eval_utterances (`int`, defaults to `0`): decode at most this many utterances per split, the
            validation split included (0: all).
        lm_text (`str`, defaults to `""`): a text file (one sentence per line) to train a word n-gram for
            beam search (a token n-gram for sentencepiece units); empty: no LM from text.
        lm_order (`int`, defaults to `3`): n-gram order of that LM.
        lm_path (`str`, defaults to `""`): a prebuilt word n-gram for beam search, an ARPA file or a KenLM
            binary (`build_binary`; e.g. Libri-light's LibriSpeech 4-gram), used as it is; character units
            only; not with `lm_text`. Empty with empty `lm_text`: greedy decoding only.
        lexicon (`str`, defaults to `""`): the words beam search may output with `lm_path`: a lexicon file
            (first field of each line, e.g. Libri-light's `librispeech-lexicon.txt`) or a word list; empty: the
            ARPA file's unigrams (a KenLM binary needs it). The training transcripts' words are always added.
        beam_size (`int`, defaults to `50`): beam width of the LM decoder.
        beam_threshold (`float`, defaults to `50.0`): hypotheses scoring this far below the best are pruned.
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
    lm_path: str = ""
    lexicon: str = ""
    beam_size: int = 50
    beam_threshold: float = 50.0
    lm_weight: float = 2.0
    word_score: float = 0.0

    def __post_init__(self):
        if self.subset not in SUBSETS:
            raise ConfigError(f"data.subset must be one of {list(SUBSETS)}, got {self.subset!r}")
        if self.tokenizer not in UNITS:
            raise ConfigError(f"data.tokenizer must be one of {list(UNITS)}, got {self.tokenizer!r}")
        if self.tokenizer == "phone" and (self.lm_text or self.lm_path):
            raise ConfigError("data.tokenizer 'phone' is decoded greedily: data.lm_text / data.lm_path (word LMs) "
                              "do not apply to phone units")
        if self.tokenizer == "sentencepiece" and self.vocab_size <= 0:
            raise ConfigError("data.tokenizer 'sentencepiece' needs data.vocab_size > 0 (e.g. --vocab_size 64)")
        if self.lm_path and self.lm_text:
            raise ConfigError("data.lm_path (a prebuilt LM) and data.lm_text (a text to train one on) exclude each other")
        if self.lm_path and self.tokenizer != "char":
            raise ConfigError("data.lm_path: a prebuilt word LM needs lexicon decoding, which supports character units "
                              "only (data.tokenizer char); with sentencepiece, train a token LM with data.lm_text")
        if self.lexicon and not self.lm_path:
            raise ConfigError("data.lexicon lists the words of a prebuilt LM: it needs data.lm_path")
        if self.beam_size < 1:
            raise ConfigError(f"data.beam_size must be >= 1, got {self.beam_size}")


def load_ctc_config(path, overrides) -> RunConfig:
    """A CTC run config: ``model:`` holds ``UpstreamForCTCConfig`` head options, ``data:`` a ``CTCDataConfig``."""
    run = load_config(path, overrides, data_cls=CTCDataConfig)
    if run.model_type not in (None, "upstream_ctc"):
        raise ConfigError(f"{path}: a CTC config has model_type upstream_ctc (or none), got {run.model_type!r}")
    run.model_type = "upstream_ctc"
    metric = run.training.metric_for_best_model
    unit = run.data.tokenizer
    if unit == "phone" and metric in VALIDATION_METRICS["char"]:
        # A config written for characters (eval_cer) keeps the best dev PER with phone units.
        logger.info("data.tokenizer phone: training.metric_for_best_model %s -> eval_per", metric)
        metric = run.training.metric_for_best_model = "eval_per"
    if metric and metric not in VALIDATION_METRICS[unit]:
        raise ConfigError(f"{path}: training.metric_for_best_model must be one of {list(VALIDATION_METRICS[unit])} "
                          f"for CTC with {unit} units, got {metric!r}")
    if metric and not run.data.validation_split:
        raise ConfigError(f"{path}: training.metric_for_best_model {metric!r} needs data.validation_split (e.g. dev)")
    return run


# ---------------------------------------------------------------------------------------------- entry point


def initialise_from(model: torch.nn.Module, folder: str | os.PathLike, tokenizer, upstream: str = "") -> None:
    """Load a trained CTC model's weights (upstream and head) into ``model``: fine-tuning that starts from a
    trained linear probe / frozen head (LP-FT, Kumar et al. 2022). A freshly initialised head must first
    cross CTC's all-blank plateau, which took the frozen runs hundreds of steps at a high learning rate; a
    fine-tuned upstream run that long costs an upstream forward and backward pass per step, and its
    gradients, large while the head is still random, disturb the pretrained features. The folder must hold
    the same tokenizer (same subset and unit), the same head shape and the very upstream of this run
    (``upstream``, its weights: results.json names it); otherwise this says what differs."""
    from transformers import AutoTokenizer

    from ...models.upstream_ctc import UpstreamForCTC
    from ...tokenization import vocabulary_difference

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"init_from {folder}: no trained CTC model there (config.json is missing)")
    theirs = AutoTokenizer.from_pretrained(str(folder)).get_vocab()
    if theirs != tokenizer.get_vocab():
        raise ConfigError(f"init_from {folder}: its tokenizer differs from this run's "
                          f"({vocabulary_difference(theirs, tokenizer.get_vocab())}); train it on the same subset "
                          "with the same tokenizer")
    trained = UpstreamForCTC.from_pretrained(str(folder))
    # Its upstream must be this run's: results.json records `upstream`, and the weights must be that upstream's.
    mine, saved = model.upstream.state_dict(), trained.upstream.state_dict()
    differ = sorted(k for k in set(mine) | set(saved) if k not in mine or k not in saved or mine[k].shape != saved[k].shape
                    or not torch.equal(mine[k], saved[k]))
    if differ:
        recorded = [json.loads(p.read_text()).get("upstream") for p in (folder / "results.json", folder.parent / "results.json")
                    if p.is_file()]
        over = f" (it was trained over {recorded[0]!r})" if recorded and recorded[0] else ""
        raise ConfigError(f"init_from {folder}: its upstream is not --upstream {upstream!r}{over}: {len(differ)} of "
                          f"{len(set(mine) | set(saved))} upstream tensors differ ({', '.join(differ[:3])}"
                          f"{', ...' if len(differ) > 3 else ''}); start from a run over the same upstream, or pass its "
                          "upstream as --upstream")
    try:
        model.load_state_dict(trained.state_dict())
    except RuntimeError as error:
        raise ConfigError(f"init_from {folder}: its model does not match this run's config "
                         f"(head or upstream differ): {error}") from None
    logger.info("initialised from %s", folder)


@holds_run_folder("output_dir")
def run_finetune_ctc(
    run: RunConfig, upstream: str, output_dir: str | os.PathLike, resume: bool = False, config_path: Optional[str] = None,
    push_to_hub: Optional[str] = None, init_from: Optional[str | os.PathLike] = None,
) -> dict:
    """Train a CTC head on ``train-<subset>`` over ``upstream`` (a path, hub name, ``fbank`` or ``mfcc``),
    validate it on ``data.validation_split``, decode the evaluation splits, and write
    ``output_dir/results.json`` and ``output_dir/final/`` (model + processor: feature extractor and
    tokenizer, + a model card with the results: loadable by ``AutoModelForCTC``, ``AutoProcessor`` and the
    ASR pipeline). ``push_to_hub``: a hub repo id that ``final/`` is uploaded to at the end. ``init_from``: a
    trained CTC model folder (e.g. a frozen run's ``final/``, same tokenizer and head) whose weights the model
    starts from: see ``initialise_from``."""
    import repr_asr  # noqa: F401  (Auto classes)
    from accelerate.utils import set_seed
    from transformers import Wav2Vec2Processor

    from ...data import load_corpus
    from ...data.phones import phone_transcripts
    from ...data.text import normalize_text
    from ...evaluation.decoding import prepare_lm_decoding
    from ...evaluation.features import extractor_settings, model_digest
    from ...models import resolve_upstream
    from ...models.upstream_ctc import UpstreamForCTC
    from ...tokenization import build_tokenizer, encode_transcripts
    from ...training.checkpoint import prepare_output_dir
    from ...training.hub import check_repo_id, push_folder
    from .. import results_header
    from .results import decoding_record, eval_at, split_scores, write_ctc_outputs

    if push_to_hub:
        check_repo_id(push_to_hub)
    # Before anything is written: a folder holding another run's checkpoints is refused without --resume.
    output_dir = prepare_output_dir(output_dir, resume)
    data: CTCDataConfig = run.data
    strict = run.training.strict
    # Each setting that differs from the run being resumed, named (old -> new) and recorded in results.json.
    resumed_with_changes = warn_config_changes(output_dir / "config.yaml", run) if resume else []
    run.save(output_dir / "config.yaml")
    set_seed(run.training.seed)
    # Feature extraction and the undecodable-audio scan are split across processes, on this process's device.
    state = process_state()

    corpus = load_corpus(data.spec)
    train_split = subset_split(corpus, data.subset)
    phones = data.tokenizer == "phone"

    def transcripts(split) -> list[str]:
        """What the model learns to output: the text, or for phone units the phone sequence of the alignment."""
        return phone_transcripts(split) if phones else list(split["text"])

    texts, ids = transcripts(train_split), [str(i) for i in train_split["id"]]

    tokenizer_dir = output_dir / "tokenizer"
    tokenizer = build_tokenizer(texts, str(tokenizer_dir), unit=data.tokenizer, vocab_size=data.vocab_size, ids=ids)
    labels = encode_transcripts(tokenizer, texts, ids)

    # The LM's files before any training: a missing or unreadable LM / lexicon stops the run now. Every
    # process prepares its own (the files are written atomically, with the same content).
    lm = None
    if data.lm_text or data.lm_path:
        lm = prepare_lm_decoding(tokenizer, str(output_dir / "lm"), lm_path=data.lm_path, lm_text=data.lm_text,
                                 lm_order=data.lm_order, lexicon=data.lexicon, words=[w for t in texts for w in t.split()])

    # The upstream's own extractor, for cached features, the fine-tuning collator, decoding and final/.
    upstream_model, feature_extractor, _ = resolve_upstream(upstream)
    upstream_sha256 = model_digest(upstream_model)
    model = UpstreamForCTC.from_upstream(
        upstream_model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **run.model
    )
    if init_from:
        initialise_from(model, init_from, tokenizer, upstream)
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
        stacks = feature_stacks(model, split, cache_dir / _safe(name), name, data.max_batch_seconds,
                                feature_extractor, state)
        return CachedFeatureDataset(stacks, split_labels), split, split_labels

    train_name = f"train-{data.subset}"
    train_dataset, train_rows, labels = dataset_for(train_split, labels, train_name)
    if len(train_dataset) == 0:
        raise ValueError(f"{train_name}: no utterance could be decoded")
    collate = collate_features if cached else AudioLabelCollator(feature_extractor)
    if cached:
        output_lengths = model.head.output_lengths(torch.tensor(train_dataset.frames())).tolist()
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
        raise ConfigError(f"data.validation_split {data.validation_split!r}: the corpus has no such split, or it is "
                          f"empty (it has {list(corpus)}); set --data.validation_split \"''\" to train without validation")
    eval_names = [s.strip() for s in data.eval_splits.split(",") if s.strip()]
    eval_sets: dict[str, tuple] = {}
    for name in dict.fromkeys(([data.validation_split] if data.validation_split else []) + eval_names):
        if name not in corpus or len(corpus[name]) == 0:
            logger.warning("evaluation split %r is missing or empty; skipped", name)
            continue
        split = limit(corpus[name], data.max_eval_utterances)
        # A reference that normalises to nothing has no error rate: named, left out and counted as skipped.
        split, empty = without_empty_references(split, transcripts(split), name)
        if len(split) == 0:
            if name == data.validation_split:
                raise ConfigError(f"data.validation_split {name!r}: no utterance has a transcript to score against")
            skipped[name] = empty
            continue
        dataset, rows, _ = dataset_for(split, None, name)  # no labels: decoding only
        if empty:
            skipped[name] = empty + skipped.get(name, [])
        # Decoded in batches of similar length (the order of the transcripts stays the dataset's).
        lengths = dataset.frames() if cached else [float(d) for d in rows["duration"]]
        eval_sets[name] = (dataset, rows, [normalize_text(t) for t in transcripts(rows)], lengths)

    eval_fn = None
    if data.validation_split:
        dataset, _, references, lengths = eval_sets[data.validation_split]
        eval_fn = validation_fn(dataset, collate, tokenizer, references, run.training.batch_size, lengths, unit=data.tokenizer)

    if run.training.drop_last and len(train_dataset) < run.training.batch_size:
        logger.warning("train-%s has %d utterances, fewer than batch_size %d: keeping the incomplete batch",
                       data.subset, len(train_dataset), run.training.batch_size)
        run.training.drop_last = False
    trainer = Trainer(
        model, train_dataset, collate, run.training, output_dir,
        param_groups=model.parameter_groups(), eval_fn=eval_fn, feature_extractor=feature_extractor,
        card_info={"upstream": upstream, "data": data.spec, "subset": data.subset, "tokenizer": data.tokenizer,
                   "config": config_path or ""},
        train_lengths=output_lengths,
    )
    train_metrics = trainer.train(resume=resume)
    # With metric_for_best_model the Trainer has put the best evaluation's weights back (they are final/).
    model = trainer.unwrapped_model
    acc = trainer.accelerator
    final_dir = output_dir / "final"
    if acc.is_main_process:
        # Feature extractor + tokenizer as one processor (AutoProcessor.from_pretrained(final/)).
        # transformers' own Wav2Vec2Processor fits: it takes any feature extractor and tokenizer, prepares
        # audio with the one and decodes CTC ids with the other, which is all a CTC model needs, and the
        # hub's tools know it; a class of our own would add nothing but a name to register.
        Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(final_dir)
    if not cached and trainer.skipped_total:
        skipped[train_name] = list(trainer.skipped_total)

    beam_decoder = None
    if lm is not None:
        beam_decoder = lm.decoder(tokenizer, beam_size=data.beam_size, beam_threshold=data.beam_threshold,
                                  lm_weight=data.lm_weight, word_score=data.word_score)

    # The process group is still up after Trainer.train(): several processes split the decoding.
    split_decoding = torch.distributed.is_available() and torch.distributed.is_initialized()
    metrics = {}
    hypotheses = {}
    for name in eval_names:
        if name not in eval_sets:
            continue  # missing or empty (warned above)
        dataset, rows, references, lengths = eval_sets[name]
        out = transcribe(model, tokenizer, dataset, collate, run.training.batch_size, beam_decoder, accelerator=acc,
                         split=split_decoding, desc=f"decoding {name}", lengths=lengths)
        if out["skipped"]:
            skipped[name] = skipped.get(name, []) + [{"id": s["id"], "error": s["error"]} for s in out["skipped"]]
        kept_refs = [references[i] for i in out["indices"]]
        kept_ids = [str(rows["id"][i]) for i in out["indices"]]
        metrics[name], hypotheses[name] = split_scores(kept_ids, kept_refs, out, len(skipped.get(name, [])), unit=data.tokenizer)

    upstream_config = model.upstream.config
    best_step = train_metrics.get("best_step")
    probe_point = "weighted_sum" if model.config.weighted_sum else model.probe_point
    results = {
        # The header every downstream result starts with (repr_asr.downstream.results_header); the upstream's
        # weights hash is of the weights the run started from (a fine-tuned run changes them).
        **results_header("ctc", upstream, model=model.upstream, weights_sha256=upstream_sha256,
                         feature_extractor=extractor_settings(feature_extractor), probe_points=[probe_point],
                         data=data.spec, split=None, subset=data.subset, seed=run.training.seed),  # metrics: per split
        "upstream_type": upstream_config.model_type,
        "probe_point": probe_point,
        # With the learned mix: {probe point: softmax weight} of final/'s model, and which points it mixed.
        **model.layer_mix_record(),
        "frozen": frozen,
        "init_from": str(init_from) if init_from else None,
        "resumed_with_changes": resumed_with_changes,
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
        **{f"best_dev_{m[len('eval_'):]}": eval_at(output_dir / "metrics.jsonl", best_step, m) if best_step is not None else None
           for m in VALIDATION_METRICS[data.tokenizer]},
        "stopped_early": bool(train_metrics.get("stopped_early", False)),
        "skipped": skipped,
        **trainer.run_info(),
        "config_name": Path(config_path).stem if config_path else "",
        "config": run.to_dict() | {"data": asdict(data)},
        "decoding": decoding_record(data, lm, output_dir),
        "train_metrics": {k: float(v) for k, v in (train_metrics or {}).items() if isinstance(v, (int, float))},
        "metrics": metrics,
    }
    main_process = acc.is_main_process
    if main_process:
        write_ctc_outputs(output_dir, results, hypotheses)
    trainer.end()
    if push_to_hub and main_process:
        push_folder(final_dir, push_to_hub, commit_message=f"repr-asr CTC over {results['upstream_name']}, "
                                                           f"train-{data.subset}, step {best_step or results['steps_run']}")
    return results


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
