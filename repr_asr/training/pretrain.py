"""Pretraining of any upstream (wavenet_ae, cpc, masked_recon) on random crops of a corpus split."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch
from accelerate.utils import set_seed

from ..run_lock import holds_run_folder
from .checkpoint import prepare_output_dir
from .config import ConfigError, RunConfig, config_class_for, model_config_keys, warn_config_changes
from .flops import count_step_flops
from .trainer import Trainer

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


def pretraining_forward(model, batch):
    """The pretraining step: the model computes its own loss and metrics."""
    return model(**batch, compute_loss=True)


def _speaker_list(split) -> list[str]:
    import datasets

    if isinstance(split, datasets.IterableDataset):  # a stream: one pass over its speaker column
        from ..data.streaming import stream_speakers

        return stream_speakers(split)
    return sorted({str(s) for s in split["speaker_id"]}) if "speaker_id" in split.column_names else []


def _speaker_conditioning_on(model_type: str, model_kwargs: dict) -> bool:
    """The model's ``speaker_conditioning`` flag as configured (a config with ``speakers`` but no flag: on)."""
    if "speaker_conditioning" in model_kwargs:
        return bool(model_kwargs["speaker_conditioning"])
    param = inspect.signature(config_class_for(model_type).__init__).parameters.get("speaker_conditioning")
    return True if param is None or param.default is inspect.Parameter.empty else bool(param.default)


@holds_run_folder("output_dir")
def run_pretraining(run: RunConfig, output_dir: str | os.PathLike, resume: bool = False, config_path: Optional[str] = None,
                    push_to_hub: Optional[str] = None) -> dict:
    """Pretrain ``run.model_type`` on ``run.data`` with the shared Trainer; writes ``output_dir/final/``.

    The model config is ``AutoConfig.for_model(model_type, **run.model)``; a config with speaker
    conditioning on and an empty ``speakers`` list gets the sorted speaker ids of the training split. Every batch carries
    ``speaker_ids`` (indices into that list, or into the split's own sorted speaker list for models
    without one, e.g. CPC's same-speaker negatives); models that do not use them ignore them.
    Before training, one step's FLOPs are counted on a real batch (:mod:`repr_asr.training.flops`);
    with ``training.flops_budget`` > 0 that sets ``max_steps`` (equal compute across upstreams). FLOPs
    per step and in total go into ``output_dir/results.json`` and the model card. ``push_to_hub``: a hub
    repo id that ``output_dir/final/`` is uploaded to at the end (:mod:`repr_asr.training.hub`).
    Returns the final metrics.
    """
    import repr_asr  # noqa: F401  (registers every model type)
    from transformers import AutoModel

    from ..data import load_corpus
    from ..data.crops import RandomCropDataset, collate_crops
    from ..feature_extraction import ReprFeatureExtractor

    if push_to_hub:
        from .hub import check_repo_id

        check_repo_id(push_to_hub)  # a malformed repo id stops the run now, not after training
    # Before anything is written: a folder with checkpoints needs --resume (its config.yaml stays intact).
    if int(os.environ.get("RANK", "0")) == 0:
        prepare_output_dir(output_dir, resume)
    output_dir = Path(output_dir)
    set_seed(run.training.seed)  # parameter initialisation

    if run.data.streaming:
        from ..data.streaming import open_stream

        corpus = None
        split = open_stream(run.data.spec.partition(":")[2], split=run.data.split)
    else:
        corpus = load_corpus(run.data.spec)
        if run.data.split not in corpus:
            raise ConfigError(f"corpus {run.data.spec} has no split {run.data.split!r} (data.split); splits: {sorted(corpus)}")
        split = corpus[run.data.split]
        if len(split) == 0:
            raise ConfigError(f"split {run.data.split!r} of {run.data.spec} is empty (data.split)")

    # Only a speaker-conditioned model owns a speaker list (its embedding rows), filled before the
    # config is built since it validates it; for the others the batch's speaker_ids index the split's
    # own sorted list (e.g. CPC's same-speaker negatives).
    model_kwargs = dict(run.model)
    model_speakers = "speakers" in model_config_keys(run.model_type) and _speaker_conditioning_on(run.model_type, model_kwargs)
    if model_speakers and not model_kwargs.get("speakers"):
        model_kwargs["speakers"] = _speaker_list(split)
    run = replace(run, model=model_kwargs)
    model_config = run.build_model_config()
    # A stream's speaker list costs a pass over it: only a speaker-conditioned model gets one (CPC's
    # same-speaker negatives then come from each utterance itself).
    speakers = list(model_config.speakers) if model_speakers else [] if run.data.streaming else _speaker_list(split)
    model = AutoModel.from_config(model_config)
    sampling_rate = getattr(model_config, "sampling_rate", 16000)

    crops = dict(crop_samples=run.data.crop_samples, cache_audio=run.data.cache_audio, normalize=run.data.normalize, sampling_rate=sampling_rate)
    # A model trained with labels (the supervised topline) gets each crop's frame phone ids.
    phone_hop = model.hop_length if getattr(model, "needs_phone_labels", False) else None
    if phone_hop is not None and run.data.streaming:
        raise ConfigError(f"model_type {run.model_type} learns from phone alignments, which streamed data "
                          "(data.streaming) does not carry: use a corpus on disk")
    if run.data.streaming:
        from ..data.streaming import StreamingCropDataset

        streamed = {k: v for k, v in crops.items() if k != "cache_audio"}
        train_set = StreamingCropDataset(split, seed=run.training.seed, speakers=speakers or None, strict=run.training.strict,
                                         shuffle_buffer=run.data.shuffle_buffer, **streamed)
    else:
        train_set = RandomCropDataset(split, seed=run.training.seed, speakers=speakers or None, strict=run.training.strict,
                                      phone_hop=phone_hop, **crops)

    # One step's FLOPs, measured on the first batch that decodes (every step has the same crop shapes).
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    batch_flops = count_step_flops(model, _first_batch(train_set, run.training.batch_size), pretraining_forward)
    flops_per_step = batch_flops * run.training.gradient_accumulation_steps * processes
    if run.training.flops_budget > 0:
        steps = max(1, math.floor(run.training.flops_budget / flops_per_step))
        logger.info("flops_budget %.3g / %.3g FLOPs per step: max_steps %d", run.training.flops_budget, flops_per_step, steps)
        run = replace(run, training=replace(run.training, max_steps=steps))

    eval_set = None
    if run.data.eval_split:
        if run.data.streaming:
            import datasets

            from ..data.streaming import open_stream

            # The first utterances of the stream's held-out split, kept in memory: the same crops every evaluation.
            stream = open_stream(run.data.spec.partition(":")[2], split=run.data.eval_split)
            held_out = datasets.Dataset.from_list(list(stream.take(run.data.max_eval_utterances)))
        elif run.data.eval_split not in corpus:
            raise ConfigError(f"corpus {run.data.spec} has no split {run.data.eval_split!r} (data.eval_split); splits: {sorted(corpus)}")
        else:
            held_out = corpus[run.data.eval_split]
        eval_speakers = speakers if model_speakers else _speaker_list(held_out)
        if model_speakers and eval_speakers:
            # A speaker-conditioned model can only be evaluated on speakers it has an embedding for.
            known = set(eval_speakers)
            held_out = held_out.filter(lambda s: str(s) in known, input_columns="speaker_id")
        held_out = held_out.select(range(min(run.data.max_eval_utterances, len(held_out))))
        if len(held_out) == 0:
            logger.warning("eval split %r has no usable utterance (unknown speakers?): no evaluation", run.data.eval_split)
        else:
            eval_set = RandomCropDataset(held_out, seed=run.training.seed, speakers=eval_speakers or None,
                                         phone_hop=phone_hop, **crops)

    trainer = Trainer(
        model,
        train_set,
        collate_crops,
        run.training,
        output_dir,
        forward_fn=pretraining_forward,
        eval_dataset=eval_set,
        feature_extractor=ReprFeatureExtractor(sampling_rate=sampling_rate, do_normalize=run.data.normalize),
        card_info={
            "task": "unsupervised pretraining",
            "model_type": run.model_type,
            "config": config_path or "(in code)",
            "data": (f"{run.data.spec} split {run.data.split} (streamed, shuffle buffer {run.data.shuffle_buffer})"
                     if run.data.streaming else
                     f"{run.data.spec} split {run.data.split} ({len(split)} utterances, {len(speakers)} speakers)")
            + f", {run.data.crop_samples}-sample random crops",
            "compute": f"{flops_per_step:.4g} FLOPs per step (forward + backward, counted with FlopCounterMode), "
            f"{flops_per_step * run.training.max_steps:.4g} in total over {run.training.max_steps} steps",
        },
    )
    if trainer.accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        saved = output_dir / "config.yaml"
        # Each setting that differs from the run being resumed, named (old -> new) and recorded in results.json.
        resumed_with_changes = warn_config_changes(saved, run) if resume else []
        run.save(saved)
    trainer.accelerator.wait_for_everyone()
    metrics = trainer.train(resume=resume)
    metrics.update(flops_per_step=flops_per_step, total_flops=flops_per_step * metrics["step"])
    if trainer.accelerator.is_main_process:
        results = {"task": "pretraining", "model_type": run.model_type, "config": config_path, "data": run.data.spec,
                   "steps": metrics["step"], "flops_per_step": flops_per_step, "total_flops": metrics["total_flops"],
                   **trainer.run_info(), "resumed_with_changes": resumed_with_changes, "metrics": metrics,
                   "run": run.to_dict()}
        (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, default=str))
    main_process = trainer.accelerator.is_main_process
    trainer.end()
    if push_to_hub and main_process:
        from .hub import push_folder

        push_folder(output_dir / "final", push_to_hub,
                    commit_message=f"repr-asr pretraining: {run.model_type}, {metrics['step']} steps")
    return metrics


def _first_batch(dataset, batch_size: int) -> dict:
    """A collated batch of the first ``batch_size`` decodable items (the FLOP count's input)."""
    from ..data.crops import collate_crops
    from ..data.skipping import is_skipped

    items = []
    for item in (iter(dataset) if isinstance(dataset, torch.utils.data.IterableDataset) else map(dataset.__getitem__, range(len(dataset)))):
        if not is_skipped(item):
            items.append(item)
        if len(items) == batch_size:
            break
    if not items:
        raise ValueError("no utterance of the training split could be decoded")
    while len(items) < batch_size:  # a split smaller than a batch: repeat, the shapes are what count
        items.append(items[len(items) % len(items)])
    return collate_crops(items)
