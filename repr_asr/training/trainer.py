"""The one training loop every recipe shares (pretraining and CTC fine-tuning), on Accelerate.

What a run folder holds::

    DIR/checkpoints/checkpoint-STEP/   resumable state (model, optimizer, scheduler, RNG, sampler, trainer state)
    DIR/logs/                          TensorBoard events
    DIR/metrics.jsonl                  one JSON line per logged step (step, loss, lr, every metric term, speed)
    DIR/final/                         save_pretrained folder + feature extractor + README.md model card

Exact resume: the data order is a function of (seed, epoch) only (Accelerate's seedable sampler, and
datasets with ``set_epoch``), the batches already consumed in the current epoch are skipped with
``skip_first_batches``, and the torch / numpy / python RNG states come back from the checkpoint.
The DataLoader has its own generator so that starting an epoch never draws from the global RNG
that the model's random ops use.

Several processes: each process seeds its global RNG with ``seed + rank`` (dropout differs between
ranks, as it would between examples); the model's data augmentations are drawn per example from the
batch's ``example_seeds`` (:mod:`repr_asr.modules.randomness`), so a run on two processes at batch
B/2 computes what one process at batch B does.

Nothing non-finite is kept: a step whose loss or gradients are not finite is skipped (no update,
counted as ``nonfinite_steps``); ``TrainingConfig.max_nonfinite_steps`` such steps in a row stop the run
with :class:`NonFiniteError`, and no checkpoint or ``final/`` is ever written from non-finite weights. A
loss that explodes without overflowing is treated alike: once ``EARLY_LOSS_STEPS`` steps have gone well,
a step whose loss exceeds ``TrainingConfig.max_loss_ratio`` times their median is skipped and counted too.

One writer per run folder: ``train`` holds ``DIR/.run.lock`` (:mod:`repr_asr.run_lock`, main process).

Launch: precision and process count are what ``accelerate launch`` asked for or the run stops
(:func:`resolve_mixed_precision`, :func:`check_launch`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration, send_to_device, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from .checkpoint import (
    CHECKPOINT_PREFIX,
    TMP_PREFIX,
    CheckpointError,
    finalize_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    remove_leftovers,
    rotate_checkpoints,
)
from ..data.skipping import SKIPPED_KEY
from ..run_lock import run_folder_lock
from .config import ConfigError, TrainingConfig
from .length_grouping import EpochLengthGroupedSampler
from .memory import keep_freed_memory
from .model_card import training_card

logger = logging.getLogger(__name__)

_SCHEDULE_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


BEST_DIR = "best"
# Good steps whose median loss is the reference of training.max_loss_ratio (an exploding loss).
EARLY_LOSS_STEPS = 10
SKIPPED_FILE = "skipped_examples.txt"


class NonFiniteError(RuntimeError):
    """Training produced non-finite losses or gradients too many steps in a row (or non-finite weights)."""


def resolve_mixed_precision(configured: str, launcher: Optional[str] = None) -> str:
    """The precision a run uses, from the config and ``accelerate launch --mixed_precision``.

    ``accelerate launch`` always exports ``ACCELERATE_MIXED_PRECISION`` ("no" when not given), so a
    launcher "no" cannot be told apart from no choice at all. The rule: mixed precision is on when
    either the config or the launcher turns it on; two different precisions (bf16 vs fp16) stop the run.
    """
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no") if launcher is None else launcher
    launcher = (launcher or "no").lower()
    if launcher == configured or launcher == "no":
        return configured
    if configured == "no":
        logger.info("mixed precision %s from accelerate launch (training.mixed_precision is 'no')", launcher)
        return launcher
    raise ConfigError(
        f"accelerate launch asked for --mixed_precision {launcher} but training.mixed_precision is {configured!r}: "
        "pass the same value to both, or drop one"
    )


def _launcher_num_processes() -> Optional[int]:
    """``--num_processes N`` of an ``accelerate launch`` that is this process's parent (Linux), else None."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return None
    if not any(a.endswith("accelerate") for a in argv[:2]) or "launch" not in argv:
        return None
    for i, arg in enumerate(argv):
        for flag in ("--num_processes", "--num-processes"):
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            try:
                return int(value)
            except ValueError:
                return None
    return None


def check_launch(num_processes: int) -> None:
    """Stop when the launcher asked for more processes than the run got.

    ``accelerate launch --cpu --num_processes 2`` starts ONE process (Accelerate's simple launcher does
    not use ``--num_processes`` with ``--cpu``); several CPU processes are started with
    ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N`` or ``torchrun``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and num_processes == 1:
        # Every process would believe it is the only one and write the same files.
        raise ConfigError(
            f"launched as {world} processes but Accelerate set up a single-process run: on a machine without "
            "GPUs set ACCELERATE_USE_CPU=true, and create no accelerate PartialState before the Trainer"
        )
    asked = _launcher_num_processes()
    if asked is not None and asked > num_processes:
        raise ConfigError(
            f"accelerate launch asked for --num_processes {asked} but started {num_processes} process(es) "
            "(with --cpu, Accelerate's launcher runs a single process): for several CPU processes run "
            f"`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes {asked} ...`"
        )


def default_forward(model, batch):
    return model(**batch)


def build_scheduler(optimizer, config: TrainingConfig):
    """Linear warm-up to the peak LR, then ``config.lr_schedule`` decay to 0 at ``max_steps`` (transformers' schedules)."""
    return get_scheduler(
        _SCHEDULE_NAMES[config.lr_schedule],
        optimizer,
        num_warmup_steps=config.warmup_steps,
        num_training_steps=config.max_steps,
    )


def _decays(name: str, param: torch.nn.Parameter) -> bool:
    # No weight decay on biases, norm gains and other vectors (the usual AdamW practice).
    return param.ndim >= 2 and not name.endswith(".bias")


class Trainer:
    """Trains ``model`` for ``config.max_steps`` optimisation steps; see the module docstring.

    Args:
        model: a ``torch.nn.Module`` (a ``PreTrainedModel`` for the ``final/`` export).
        train_dataset: a map-style dataset; if it has ``set_epoch(epoch)`` it is called before each epoch.
            Or a streamed ``torch.utils.data.IterableDataset`` with ``set_epoch(epoch)`` and
            ``skip_batches(batches, batch_size)`` (:class:`repr_asr.data.streaming.StreamingCropDataset`):
            it shards itself over processes and workers, so its loader is not sharded by Accelerate, an
            epoch ends when the stream does, and resume asks it to pass over the batches already consumed.
        collate_fn: list of items → batch dict (the keyword arguments of ``forward_fn``).
        config: the ``TrainingConfig``.
        output_dir: the run folder.
        forward_fn: ``forward_fn(model, batch)`` → an output with a scalar ``.loss`` and an optional
            ``.metrics`` dict of scalars; default ``model(**batch)``.
        param_groups: optional ``[{"params": iterable, "lr_scale": float}, ...]`` (each group's LR is
            ``learning_rate * lr_scale``); default: every parameter of the model at scale 1. Parameters
            frozen now may be unfrozen later by ``step_callback``; they are in the optimizer from the start.
        eval_fn: optional ``eval_fn(model, accelerator)`` → ``{name: float}``, run every ``eval_steps``
            and at the end (inside ``torch.no_grad`` with the model in eval mode, on a forked RNG so it
            never changes the training's random streams). Reduce across processes with
            ``accelerator.gather_for_metrics``.
        step_callback: optional ``step_callback(step, model)`` called after each optimisation step
            (``step`` counts completed steps), e.g. to unfreeze the upstream after N steps.
        eval_dataset: optional dataset evaluated with ``forward_fn`` (mean loss and metrics, prefixed
            ``eval_``) when no ``eval_fn`` is given.
        feature_extractor: saved into ``final/`` (default ``ReprFeatureExtractor()``).
        card_info: ``{name: value}`` lines for the model card (data spec, config file, ...).
        train_lengths: the length of each example of ``train_dataset`` (frames or samples), needed by
            ``config.group_by_length``.

    The unwrapped model's ``on_train_step(step)`` is called before each optimisation step when it exists.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_dataset,
        collate_fn: Callable,
        config: TrainingConfig,
        output_dir: str | os.PathLike,
        forward_fn: Optional[Callable] = None,
        param_groups: Optional[list[dict]] = None,
        eval_fn: Optional[Callable] = None,
        step_callback: Optional[Callable] = None,
        eval_dataset=None,
        feature_extractor=None,
        card_info: Optional[dict] = None,
        train_lengths: Optional[list] = None,
    ):
        config.validate()
        if config.warmup_steps > config.max_steps:
            # Legitimate for a short smoke run of a full config; the LR then never reaches its peak.
            logger.warning("warmup_steps (%d) > max_steps (%d): the learning rate never reaches its peak",
                           config.warmup_steps, config.max_steps)
        self.config = config
        self.output_dir = Path(output_dir)
        self.checkpoint_root = self.output_dir / "checkpoints"
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self.forward_fn = forward_fn or default_forward
        self.eval_fn = eval_fn
        self.step_callback = step_callback
        self.train_dataset = train_dataset
        self.streaming = isinstance(train_dataset, torch.utils.data.IterableDataset)
        self.feature_extractor = feature_extractor
        self.card_info = dict(card_info or {})

        mixed_precision = resolve_mixed_precision(config.mixed_precision)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=mixed_precision,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")),
            # Data order depends only on (data_seed, epoch), identically on every process.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
            # Some parameters get no gradient in some steps (frozen upstream, unused probe heads).
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        check_launch(self.accelerator.num_processes)
        # seed + rank: ranks never share a stream (dropout); one process keeps `seed` itself. Parameters
        # were initialised before (the recipe seeds them) and DDP copies rank 0's to every rank.
        set_seed(config.seed, device_specific=True)
        if self.accelerator.device.type == "cpu":
            keep_freed_memory()  # activations reuse last step's pages instead of faulting in new ones

        sampler = None
        if config.group_by_length and self.streaming:
            raise ValueError("training.group_by_length: a streamed dataset cannot be grouped by length (it is never measured up front)")
        if config.group_by_length:
            if train_lengths is None or len(train_lengths) != len(train_dataset):
                raise ValueError(f"training.group_by_length needs train_lengths, one per example ({len(train_dataset)}), "
                                 f"got {None if train_lengths is None else len(train_lengths)}")
            sampler = EpochLengthGroupedSampler(config.batch_size, train_lengths, config.seed)
        loader = DataLoader(
            train_dataset,
            batch_size=config.batch_size,
            # A stream shuffles itself (its shuffle buffer); a length-grouped order is drawn by its sampler.
            shuffle=config.shuffle and not self.streaming and sampler is None,
            sampler=sampler,
            collate_fn=collate_fn,
            num_workers=config.num_workers,
            pin_memory=config.pin_memory,
            drop_last=config.drop_last,
            # Its own generator: starting an epoch must not draw from the global torch RNG.
            generator=torch.Generator().manual_seed(config.seed),
        )
        eval_loader = None
        if eval_dataset is not None and len(eval_dataset) > 0:
            eval_loader = DataLoader(
                eval_dataset, batch_size=config.batch_size, shuffle=False, collate_fn=collate_fn, num_workers=config.num_workers
            )

        optimizer = torch.optim.AdamW(
            self._optimizer_groups(model, param_groups),
            lr=config.learning_rate,
            betas=(config.adam_beta1, config.adam_beta2),
            eps=config.adam_epsilon,
            # One kernel over all parameters is faster than the per-tensor loop on CPU (docs/performance.md).
            fused=self.accelerator.device.type in ("cpu", "cuda"),
        )
        scheduler = build_scheduler(optimizer, config)
        if self.streaming:
            # Accelerate would have one process read the whole stream and dispatch it, or every process
            # read all of it; the dataset reads only its own shards instead, and batches are moved here.
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
            self.train_loader = loader
        else:
            self.model, self.optimizer, self.train_loader = self.accelerator.prepare(model, optimizer, loader)
        self.eval_loader = self.accelerator.prepare(eval_loader) if eval_loader is not None else None
        # The scheduler is stepped by hand once per optimisation step (Accelerate's wrapper would
        # step it once per process); registering it puts it in save_state / load_state.
        self.scheduler = scheduler
        self.accelerator.register_for_checkpointing(self.scheduler)
        if not self.streaming and len(self.train_loader) == 0:
            raise ValueError(f"the training DataLoader yields no batch ({len(train_dataset)} examples, batch_size {config.batch_size})")
        # Run state that checkpoints carry (trainer_state.json) besides Accelerate's.
        self.nonfinite_steps = 0  # skipped steps, in total
        # The first good steps' losses (mean over processes), then their median: the exploding-loss reference.
        self.early_losses: list[float] = []
        self.loss_reference: Optional[float] = None
        self.skipped: list[dict] = []  # undecodable examples met by this process since the last save
        self.skipped_total: list[dict] = []  # all of them, every process (main process's view)
        self.best_step: Optional[int] = None
        self.best_metric: Optional[float] = None
        self.evals_without_improvement = 0
        self.first_eval_step: Optional[int] = None
        self.stopped_early = False

    def run_info(self) -> dict:
        """What really ran: process count, precision and device (for results.json and the model card)."""
        acc = self.accelerator
        return {"num_processes": acc.num_processes, "mixed_precision": acc.mixed_precision,
                "device": acc.device.type, "distributed_type": str(acc.distributed_type.value)}

    # ------------------------------------------------------------------------------------------
    def _optimizer_groups(self, model, param_groups):
        groups = param_groups or [{"params": list(model.named_parameters()), "lr_scale": 1.0}]
        named = {id(p): n for n, p in model.named_parameters()}
        seen = set()
        out = []
        for group in groups:
            scale = float(group.get("lr_scale", 1.0))
            decay, no_decay = [], []
            for item in group["params"]:
                name, param = item if isinstance(item, tuple) else (named.get(id(item), ""), item)
                if id(param) in seen:
                    raise ValueError(f"parameter {name or '<unnamed>'} appears in two param_groups")
                seen.add(id(param))
                (decay if _decays(name, param) else no_decay).append(param)
            lr = self.config.learning_rate * scale
            if decay:
                out.append({"params": decay, "lr": lr, "weight_decay": self.config.weight_decay, "lr_scale": scale})
            if no_decay:
                out.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "lr_scale": scale})
        if not out:
            raise ValueError("the model has no parameters to train")
        return out

    @property
    def unwrapped_model(self):
        return self.accelerator.unwrap_model(self.model)

    def _set_epoch(self, loader, epoch: int) -> None:
        if hasattr(loader, "set_epoch"):  # Accelerate's loaders (a streamed dataset's plain one has none)
            loader.set_epoch(epoch)
        # Accelerate forwards set_epoch to the dataset only in some sharding set-ups; do it always.
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)

    # ------------------------------------------------------------------------------------------
    def save_checkpoint(self, step: int, epoch: int, batches_in_epoch: int) -> Optional[Path]:
        """Write ``checkpoints/checkpoint-STEP`` atomically (all processes must call it)."""
        acc = self.accelerator
        if not self.streaming and batches_in_epoch >= len(self.train_loader):  # an epoch's very end: resume at the next one
            epoch, batches_in_epoch = epoch + 1, 0
        self._check_finite_weights(f"checkpoint at step {step}")
        self._collect_skipped()
        final_dir = self.checkpoint_root / f"{CHECKPOINT_PREFIX}{step}"
        tmp_dir = self.checkpoint_root / f"{TMP_PREFIX}{CHECKPOINT_PREFIX}{step}"
        if acc.is_main_process:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            self.checkpoint_root.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp_dir))
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": step, "epoch": epoch, "batches_in_epoch": batches_in_epoch, "max_steps": self.config.max_steps,
                     "nonfinite_steps": self.nonfinite_steps, "skipped_examples": self.skipped_total,
                     "early_losses": self.early_losses, "loss_reference": self.loss_reference,
                     "best_step": self.best_step, "best_metric": self.best_metric,
                     "evals_without_improvement": self.evals_without_improvement, "stopped_early": self.stopped_early,
                     "first_eval_step": self.first_eval_step}
            finalize_checkpoint(tmp_dir, final_dir, state)
            rotate_checkpoints(self.checkpoint_root, self.config.save_total_limit)
        acc.wait_for_everyone()
        return final_dir

    def _restore(self) -> tuple[int, int, int]:
        found = latest_checkpoint(self.checkpoint_root)
        if found is None:
            logger.warning("--resume: no checkpoint in %s, starting from scratch", self.checkpoint_root)
            return 0, 0, 0
        path, state = found
        self.accelerator.load_state(str(path))
        self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        self.early_losses = [float(v) for v in state.get("early_losses", [])]
        self.loss_reference = state.get("loss_reference")
        self.skipped_total = list(state.get("skipped_examples", []))
        self.best_step, self.best_metric = state.get("best_step"), state.get("best_metric")
        self.evals_without_improvement = int(state.get("evals_without_improvement", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        self.first_eval_step = state.get("first_eval_step")
        logger.info("resumed from %s (step %d)", path, state["step"])
        self.accelerator.print(f"resuming from {path}")
        return int(state["step"]), int(state["epoch"]), int(state["batches_in_epoch"])

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines a killed run wrote after the checkpoint we resume from."""
        if not self.metrics_path.exists():
            return
        kept = []
        with open(self.metrics_path) as handle:
            for line in handle:
                try:
                    if json.loads(line)["step"] <= step:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except (json.JSONDecodeError, KeyError):
                    continue  # a line cut by the kill
        with open(self.metrics_path, "w") as handle:
            handle.writelines(kept)

    def _write_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """``eval_fn`` or the mean loss / metrics over ``eval_dataset``; never changes the training's RNG."""
        if self.eval_fn is None and self.eval_loader is None:
            return {}
        model = self.model
        was_training = model.training
        model.eval()
        # A fixed-seed fork: evaluation is repeatable and leaves the training streams untouched.
        device = self.accelerator.device
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices), torch.no_grad():
            torch.manual_seed(self.config.seed)
            if self.eval_fn is not None:
                results = dict(self.eval_fn(model, self.accelerator))
            else:
                results = self._evaluate_loader()
        model.train(was_training)
        return results

    def _evaluate_loader(self) -> dict:
        sums: dict = {}
        count = 0
        for batch in self.eval_loader:
            with self.accelerator.autocast():
                output = self.forward_fn(self.model, batch)
            size = next(v for v in batch.values() if torch.is_tensor(v)).shape[0]
            terms = {"loss": output.loss, **(getattr(output, "metrics", None) or {})}
            for name, value in terms.items():
                # One copy per example so gather_for_metrics can drop the padding duplicates of the last batch.
                per_example = torch.as_tensor(value, device=self.accelerator.device).detach().float().reshape(1).expand(size)
                gathered = self.accelerator.gather_for_metrics(per_example.contiguous())
                sums[name] = sums.get(name, 0.0) + float(gathered.sum())
            count += int(self.accelerator.gather_for_metrics(torch.ones(size, device=self.accelerator.device)).sum())
        return {f"eval_{name}": total / max(count, 1) for name, total in sums.items()}

    # ------------------------------------------------------------------------------------------
    def _check_finite_weights(self, what: str) -> None:
        """Refuse to write ``what`` from weights (or buffers) that are not all finite."""
        bad = [name for name, tensor in self.unwrapped_model.state_dict().items()
               if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if bad:
            raise NonFiniteError(f"refusing to write the {what}: non-finite values in {', '.join(bad[:5])}"
                                 + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))

    def _note_skipped(self, skipped: list[dict]) -> None:
        for item in skipped:
            logger.warning("skipping example %s: %s", item["id"], item["error"])
        self.skipped.extend(skipped)

    def _collect_skipped(self) -> None:
        """Gather every process's newly skipped examples onto the main process's list (all processes call it)."""
        from accelerate.utils import gather_object

        new = gather_object([self.skipped]) if self.accelerator.num_processes > 1 else [self.skipped]
        self.skipped = []
        if self.accelerator.is_main_process:
            seen = {item["id"] for item in self.skipped_total}
            for part in new:
                for item in part:
                    if item["id"] not in seen:  # an example met again in a later epoch is counted once
                        seen.add(item["id"])
                        self.skipped_total.append(item)

    def _skipped_count(self) -> int:
        """Distinct skipped examples so far, over every process (all processes call it)."""
        mine = {item["id"] for item in self.skipped} - {item["id"] for item in self.skipped_total}
        count = torch.tensor(float(len(mine)), device=self.accelerator.device)
        return int(self.accelerator.reduce(count, reduction="sum").item()) + len(self.skipped_total)

    def _exploded(self, loss: float) -> bool:
        """Whether a finite step loss exceeds ``max_loss_ratio`` times the run's early loss (the median of its
        first good steps' losses); never before that reference exists, nor when it is not positive."""
        ratio, reference = self.config.max_loss_ratio, self.loss_reference
        return bool(ratio > 0 and reference is not None and reference > 0 and loss > ratio * reference)

    def _note_loss(self, loss: float) -> None:
        """Count a good step's loss towards the reference (the median of the first ``EARLY_LOSS_STEPS``)."""
        if self.loss_reference is None and math.isfinite(loss):
            self.early_losses.append(loss)
            if len(self.early_losses) >= EARLY_LOSS_STEPS:
                self.loss_reference = float(statistics.median(self.early_losses))

    def _grad_norm(self, model):
        """The global gradient norm (clipped to ``max_grad_norm`` when > 0); non-finite when a gradient is."""
        if self.config.max_grad_norm > 0:
            return self.accelerator.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.accelerator.device)
        return torch.nn.utils.get_total_norm(grads)

    def _improved(self, value: float) -> bool:
        if self.best_metric is None:
            return True
        return value > self.best_metric if self.config.greater_is_better else value < self.best_metric

    def _save_best(self, step: int, value: float) -> None:
        """Keep the weights of the best evaluation so far in ``DIR/best/`` (all processes call it)."""
        from safetensors.torch import save_model

        acc = self.accelerator
        self._check_finite_weights(f"best model at step {step}")
        if acc.is_main_process:
            best = self.output_dir / BEST_DIR
            tmp = self.output_dir / f"{TMP_PREFIX}{BEST_DIR}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_model(self.unwrapped_model, str(tmp / "model.safetensors"))
            (tmp / "best.json").write_text(json.dumps({"step": step, "metric": self.config.metric_for_best_model, "value": value}))
            shutil.rmtree(best, ignore_errors=True)
            os.rename(tmp, best)
        acc.wait_for_everyone()

    def _load_best(self) -> None:
        """Put the best evaluation's weights back into the model (every process)."""
        from safetensors.torch import load_model

        best = self.output_dir / BEST_DIR
        info = json.loads((best / "best.json").read_text())
        if int(info["step"]) != self.best_step:
            raise CheckpointError(f"{best} holds step {info['step']}, but the run's best step is {self.best_step}")
        # Loaded on the CPU and copied into the parameters wherever they live (a device string such as
        # "cpu:0" under several CPU processes is not one safetensors accepts).
        load_model(self.unwrapped_model, str(best / "model.safetensors"), device="cpu")

    # ------------------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> dict:
        """Run to ``max_steps`` (continuing from the newest complete checkpoint when ``resume``); returns final metrics.

        The run folder is held for the whole call (:mod:`repr_asr.run_lock`, by the main process): a second
        process training into it stops at once with ``RunFolderInUseError`` naming this one."""
        with run_folder_lock(self.output_dir, main=self.accelerator.is_main_process):
            return self._train(resume)

    def _train(self, resume: bool) -> dict:
        acc, config = self.accelerator, self.config
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_leftovers(self.checkpoint_root)
            if not resume and list_checkpoints(self.checkpoint_root):
                raise CheckpointError(
                    f"{self.checkpoint_root} already holds checkpoints: pass --resume to continue that run, "
                    "or choose another --output_dir"
                )
        acc.wait_for_everyone()
        step, epoch, batches_in_epoch = self._restore() if resume else (0, 0, 0)
        if acc.is_main_process:
            if step > 0:
                self._truncate_metrics(step)
            elif self.metrics_path.exists():
                self.metrics_path.unlink()
        acc.init_trackers("train")

        model = self.model
        model.train()
        last_saved = step if resume and step > 0 else -1
        window: dict = {}
        window_steps = 0
        step_loss = torch.zeros((), device=acc.device)
        step_terms: dict = {}
        micro = 0
        micro_finite = torch.ones((), dtype=torch.bool, device=acc.device)
        nonfinite_in_a_row = 0
        last_eval = -1
        hook_terms: dict = {}
        grad_norm = None
        final_metrics: dict = {}
        start_time, start_step = time.time(), step
        samples_per_step = config.batch_size * config.gradient_accumulation_steps * acc.num_processes
        progress = tqdm(total=config.max_steps, initial=step, disable=not acc.is_local_main_process, desc="train")

        while step < config.max_steps and not self.stopped_early:
            if self.streaming:
                loader = self.train_loader
                self.train_dataset.skip_batches(batches_in_epoch, config.batch_size)
            else:
                loader = acc.skip_first_batches(self.train_loader, batches_in_epoch) if batches_in_epoch else self.train_loader
            self._set_epoch(loader, epoch)
            for batch in loader:
                if self.streaming:
                    batch = send_to_device(batch, acc.device)
                skipped = batch.pop(SKIPPED_KEY, None) if isinstance(batch, dict) else None
                if skipped:
                    self._note_skipped(skipped)
                    if not any(torch.is_tensor(v) for v in batch.values()):
                        if acc.num_processes > 1:  # the other processes would wait for this one's gradients
                            raise RuntimeError(f"every example of a batch was undecodable: {[s['id'] for s in skipped]}")
                        batches_in_epoch += 1
                        continue
                if micro == 0:
                    unwrapped = self.unwrapped_model
                    if hasattr(unwrapped, "on_train_step"):
                        # Schedules inside the model (KL warm-up, dead-code revival); what it returns is logged.
                        hook_terms = dict(unwrapped.on_train_step(step) or {})
                with acc.accumulate(model):
                    with acc.autocast():
                        output = self.forward_fn(model, batch)
                    loss = output.loss
                    if loss is None or loss.ndim != 0:
                        raise ValueError("forward_fn must return an output whose .loss is a scalar tensor")
                    micro_finite = micro_finite & torch.isfinite(loss.detach()).all()
                    acc.backward(loss)
                    step_ok = True
                    if acc.sync_gradients:
                        grad_norm = self._grad_norm(model)
                        finite = (micro_finite & torch.isfinite(torch.as_tensor(grad_norm, device=acc.device))).float()
                        # Every process takes the same decision (a NaN on one rank reaches all through DDP anyway):
                        # one reduction of (finite flags, this step's mean loss) over processes.
                        mean_loss = (step_loss + loss.detach().float()) / (micro + 1)
                        totals = acc.reduce(torch.stack([finite, mean_loss.reshape(())]), reduction="sum").tolist()
                        step_ok = totals[0] == acc.num_processes
                        step_loss_value = totals[1] / acc.num_processes
                        skip_reason = None if step_ok else "non-finite loss or gradients"
                        if step_ok and self._exploded(step_loss_value):
                            step_ok = False
                            skip_reason = (f"loss {step_loss_value:.4g} above training.max_loss_ratio "
                                           f"({config.max_loss_ratio:g}) times the early loss {self.loss_reference:.4g}")
                        micro_finite = torch.ones((), dtype=torch.bool, device=acc.device)
                    if step_ok:
                        self.optimizer.step()
                        if acc.sync_gradients and not acc.optimizer_step_was_skipped:
                            self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                batches_in_epoch += 1
                micro += 1
                step_loss = step_loss + loss.detach().float()
                for name, value in (getattr(output, "metrics", None) or {}).items():
                    if name == "loss":  # the loss that was back-propagated is logged once, above
                        continue
                    step_terms[name] = step_terms.get(name, 0.0) + torch.as_tensor(value, device=acc.device).detach().float()
                if not acc.sync_gradients:
                    continue

                # ---- one optimisation step is complete (or skipped) ----
                step += 1
                progress.update(1)
                if step_ok:
                    nonfinite_in_a_row = 0
                    self._note_loss(step_loss_value)
                    window["loss"] = window.get("loss", 0.0) + step_loss / micro
                    for name, total in step_terms.items():
                        window[name] = window.get(name, 0.0) + total / micro
                    for name, value in hook_terms.items():
                        window[name] = window.get(name, 0.0) + torch.as_tensor(value, device=acc.device).float()
                    if grad_norm is not None:
                        window["grad_norm"] = window.get("grad_norm", 0.0) + torch.as_tensor(grad_norm, device=acc.device).float()
                    window_steps += 1
                else:
                    self.nonfinite_steps += 1
                    nonfinite_in_a_row += 1
                    logger.warning("step %d: %s, update skipped (%d in a row)", step, skip_reason, nonfinite_in_a_row)
                    if nonfinite_in_a_row > config.max_nonfinite_steps:
                        progress.close()
                        if acc.is_main_process:
                            self._write_metrics({"step": step, "epoch": epoch, "nonfinite_steps": self.nonfinite_steps,
                                                 "stopped": skip_reason})
                        raise NonFiniteError(
                            f"{nonfinite_in_a_row} training steps in a row (up to step {step}) had a non-finite loss or "
                            f"gradients, or an exploding loss (the last: {skip_reason}; training.max_nonfinite_steps = "
                            f"{config.max_nonfinite_steps}): stopping. "
                            f"The last good checkpoint in {self.checkpoint_root} is kept; lower the learning rate or "
                            "check the data, then --resume"
                        )
                hook_terms = {}
                step_loss, step_terms, micro = torch.zeros((), device=acc.device), {}, 0

                if self.step_callback is not None:
                    self.step_callback(step, self.unwrapped_model)

                if step % config.log_steps == 0 or step == config.max_steps:
                    names = sorted(window)
                    # Mean over the window's good steps, then over processes (every process has the same names).
                    reduced = []
                    if names:
                        stacked = torch.stack([torch.as_tensor(window[n], device=acc.device).float() for n in names]) / window_steps
                        reduced = acc.reduce(stacked, reduction="mean").tolist()
                    elapsed = time.time() - start_time
                    record = {"step": step, "epoch": epoch, **{n: v for n, v in zip(names, reduced)}}
                    record["nonfinite_steps"] = self.nonfinite_steps
                    record["skipped_examples"] = self._skipped_count()
                    record["lr"] = self.scheduler.get_last_lr()[0]
                    record["elapsed_s"] = round(elapsed, 3)
                    record["steps_per_s"] = (step - start_step) / elapsed if elapsed > 0 else 0.0
                    record["samples_per_s"] = record["steps_per_s"] * samples_per_step
                    if not all(math.isfinite(v) for v in reduced):
                        logger.warning("non-finite training metrics at step %d: %s", step, record)
                    if acc.is_main_process:
                        self._write_metrics(record)
                    acc.log({f"train/{k}": v for k, v in record.items() if k not in ("step",)}, step=step)
                    progress.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", lr=f"{record['lr']:.2e}")
                    final_metrics.update(record)
                    window, window_steps = {}, 0

                if config.eval_steps and step % config.eval_steps == 0 and step < config.max_steps:
                    self._log_eval(step, final_metrics)
                    last_eval = step

                if config.save_steps and step % config.save_steps == 0 or self.stopped_early:
                    self.save_checkpoint(step, epoch, batches_in_epoch)
                    last_saved = step
                if step >= config.max_steps or self.stopped_early:
                    break
            else:
                if self.streaming and batches_in_epoch == 0:
                    raise ValueError("the streamed training data yielded no batch in a whole epoch (an empty split, or "
                                     "fewer shards than processes?)")
                # The epoch ran out: the next one starts from its first batch.
                epoch += 1
                batches_in_epoch = 0
                continue
            break  # max_steps reached

        progress.close()
        if last_eval != step:
            self._log_eval(step, final_metrics)
        if last_saved != step:
            self.save_checkpoint(step, epoch, batches_in_epoch)
        self._collect_skipped()
        final_metrics["step"] = step
        final_metrics["nonfinite_steps"] = self.nonfinite_steps
        final_metrics["skipped_examples"] = len(self.skipped_total)
        if self.skipped_total and acc.is_main_process:
            lines = [f"{item['id']}\t{item['error']}\n" for item in self.skipped_total]
            (self.output_dir / SKIPPED_FILE).write_text("".join(lines))
            logger.warning("%d undecodable example(s) were skipped; listed in %s", len(lines), self.output_dir / SKIPPED_FILE)
        if config.metric_for_best_model and self.best_step is not None:
            final_metrics.update(best_step=self.best_step, best_metric=self.best_metric, stopped_early=self.stopped_early)
            if self.best_step != step:
                acc.wait_for_everyone()
                self._load_best()
        final_metrics.update(self.run_info())
        # No result from a model that is not finite: non-finite metrics are left out of what is returned.
        final_metrics = {k: v for k, v in final_metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}
        self.save_final(final_metrics)
        # The trackers end here; the process group stays up so that the caller can still evaluate across
        # processes (decoding split over ranks). `end()` takes it down.
        for tracker in acc.trackers:
            tracker.finish()
        return final_metrics

    def end(self) -> None:
        """Release the processes (Accelerate's ``end_training``); call after the run's last collective."""
        self.accelerator.end_training()

    def _log_eval(self, step: int, into: dict) -> None:
        results = self.evaluate()
        if not results:
            return
        results = {k if k.startswith("eval_") else f"eval_{k}": float(v) for k, v in results.items()}
        name = self.config.metric_for_best_model
        if name:
            if name not in results:
                raise KeyError(f"training.metric_for_best_model {name!r} is not among the evaluation results {sorted(results)}")
            value = results[name]
            if self.first_eval_step is None:
                self.first_eval_step = step
            if math.isfinite(value) and self._improved(value):
                self.best_step, self.best_metric = step, value
                self.evals_without_improvement = 0
                self._save_best(step, value)
            elif self.best_step != self.first_eval_step:
                # Counted only once the metric has beaten its first value: a head still on its starting
                # plateau (a CTC head emitting only blanks scores the same evaluation after evaluation)
                # is not stopped before it had a chance to leave it.
                self.evals_without_improvement += 1
                patience = self.config.early_stopping_patience
                if patience and self.evals_without_improvement >= patience:
                    self.stopped_early = True
                    self.accelerator.print(f"early stop at step {step}: {name} has not improved on "
                                           f"{self.best_metric:.4g} (step {self.best_step}) for {patience} evaluations")
            results["best_step"], results["best_metric"] = self.best_step, self.best_metric
        if self.accelerator.is_main_process:
            self._write_metrics({"step": step, **results})
        self.accelerator.log({k.replace("eval_", "eval/", 1): v for k, v in results.items() if k.startswith("eval_")}, step=step)
        into.update(results)

    # ------------------------------------------------------------------------------------------
    def save_final(self, metrics: dict) -> Optional[Path]:
        """``DIR/final/``: ``save_pretrained`` (safetensors), the feature extractor and a model card."""
        acc = self.accelerator
        acc.wait_for_everyone()
        final = self.output_dir / "final"
        self._check_finite_weights("final model")
        if acc.is_main_process:
            tmp = self.output_dir / f"{TMP_PREFIX}final"
            shutil.rmtree(tmp, ignore_errors=True)
            model = self.unwrapped_model
            if not hasattr(model, "save_pretrained"):
                raise TypeError(f"{type(model).__name__} has no save_pretrained: the final export needs a PreTrainedModel")
            model.save_pretrained(str(tmp))
            extractor = self.feature_extractor
            if extractor is None:
                from ..feature_extraction import ReprFeatureExtractor

                extractor = ReprFeatureExtractor(sampling_rate=getattr(model.config, "sampling_rate", 16000))
            extractor.save_pretrained(str(tmp))
            training_card(model, metrics, self.config, self.run_info(), self.card_info).save(tmp / "README.md")
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        acc.wait_for_everyone()
        return final
