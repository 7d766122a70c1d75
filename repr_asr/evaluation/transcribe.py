"""Transcribing a dataset with a CTC model: greedy (and beam-search) transcripts in dataset order, the
work split across processes, and the CER / WER validation function the Trainer calls.

A process set-up is an ``accelerate.Accelerator`` (the Trainer's) or a ``PartialState``
(:func:`process_state`); with several processes process ``p`` decodes batches ``p, p + n, ...`` and every
process gets every transcript back (:func:`gather_lists`).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch
from tqdm.auto import tqdm

from ..data.skipping import SKIPPED_KEY, is_skipped
from .decoding import greedy_decode
from .features import model_device


def process_state():
    """Accelerate's ``PartialState``, set up as the Trainer's ``Accelerator`` will find it: the Accelerator
    reads ``ACCELERATE_USE_CPU`` (several CPU processes) but a bare ``PartialState()`` does not, and the
    first one created fixes the set-up for the whole process."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def gather_lists(state, objects: list) -> list:
    """Every process's list concatenated (on every process); the list itself with one process."""
    if state is None or state.num_processes == 1:
        return objects
    from accelerate.utils import gather_object

    return gather_object(objects)


@torch.no_grad()
def transcribe(model, tokenizer, dataset, collate_fn, batch_size: int, beam_decoder=None, accelerator=None,
               split: bool = True, desc: str = "decoding", lengths: Optional[list] = None) -> dict:
    """Greedy (and beam-search) transcripts of the items of ``dataset``.

    Batches go to the model's device (``accelerator.device`` when given, under its autocast). With an
    ``accelerator`` (or ``PartialState``) of several processes and ``split``, process ``p`` decodes
    batches ``p, p + n, ...`` and the results are gathered to every process; ``split=False`` decodes
    everything here (when the processes can no longer talk to each other). Items the dataset marks as
    skipped (undecodable audio) are left out. The main process shows a progress bar (``desc``) over the
    batches it decodes. Returns ``{"indices": [...], "greedy": [...], "beam": [...], "skipped":
    [{"index", "id", "error"}]}``, the first three aligned and in dataset order (``beam`` empty without a
    decoder). With ``lengths`` (one per item) the batches hold items of similar length: less padding to
    compute (an eval-mode CTC model's output on an item does not depend on its batch-mates); the transcripts
    still come back in dataset order.
    """
    if accelerator is not None and hasattr(accelerator, "unwrap_model"):
        # The bare model: a DDP wrapper's forward would sync with processes that have other batch counts.
        model = accelerator.unwrap_model(model)
    device = accelerator.device if accelerator is not None else model_device(model)
    # A fresh context per batch: a context manager object can be entered only once.
    autocast = accelerator.autocast if hasattr(accelerator, "autocast") else nullcontext
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None and split else (0, 1)
    main = accelerator is None or accelerator.is_main_process
    was_training = model.training
    model.eval()
    decoded, skipped = [], []
    if lengths is not None and len(lengths) != len(dataset):
        raise ValueError(f"transcribe: {len(lengths)} lengths for {len(dataset)} items")
    order = sorted(range(len(dataset)), key=lambda i: lengths[i]) if lengths is not None else list(range(len(dataset)))
    starts = list(range(0, len(dataset), batch_size))[rank::world]
    for start in tqdm(starts, desc=desc, unit="batch", disable=not main, leave=False):
        indices = order[start:start + batch_size]
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
        decoded, skipped = gather_lists(accelerator, decoded), gather_lists(accelerator, skipped)
    decoded = sorted(decoded, key=lambda d: d[0])
    skipped = sorted(skipped, key=lambda s: s["index"])
    return {
        "indices": [d[0] for d in decoded],
        "greedy": [d[1] for d in decoded],
        "beam": [d[2] for d in decoded] if beam_decoder is not None else [],
        "skipped": skipped,
    }


def validation_fn(dataset, collate_fn, tokenizer, references: list[str], batch_size: int, lengths: Optional[list] = None,
                  unit: str = "char"):
    """The Trainer's ``eval_fn``: greedy CER and WER (jiwer, whole-set) of ``dataset`` against ``references``
    (the Trainer names them ``eval_cer`` / ``eval_wer``), or PER (``eval_per``) for ``unit="phone"``."""
    from .wer import error_rates

    def eval_fn(model, accelerator) -> dict:
        out = transcribe(model, tokenizer, dataset, collate_fn, batch_size, accelerator=accelerator, desc="validation", lengths=lengths)
        kept = [references[i] for i in out["indices"]]
        return error_rates(kept, out["greedy"], unit)

    return eval_fn
