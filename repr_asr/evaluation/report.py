"""Comparison tables across representations and labeled-data sizes, from ``results.json`` files alone.

Each CTC run writes ``RUN_DIR/results.json`` saying what was run and what was measured
(``repr_asr.downstream.ctc``); this module gathers them into one table per metric: columns are
labeled subsets, rows are *settings*. A setting is everything ``results.json`` says about the run
(upstream, probe point, frozen / fine-tuned, units, decoding and LM, config file, the whole resolved
config) except the seed, the subset (the column) and what a run measured or happened to do
(:data:`RUN_FIELDS`, :data:`BOOKKEEPING_CONFIG`); a step budget that follows the subset (:data:`BUDGET`)
splits rows only where runs of one subset differ in it. Two runs that differ in any setting get two
rows — a cell is never overwritten. A row's label is the representation as a reader knows it (its name in
the study, :func:`repr_asr.evaluation.labels.representation_name`), its probe point and whether it was
frozen, then, in words, the settings that tell it apart from the other rows of that representation in
the same table (``fbank (frozen) [sentencepiece units, vocab size 64]``, ``cpc / ctx (frozen) [pretraining
corpus 2 h, 1.26e13 FLOPs]``). Runs that differ only in their seed share a cell, shown as mean ± sample
standard deviation with the count (``75.1 ± 3.9 (n=3)``; one run shows just its value).

``comparison.csv`` has one line per (row, subset, split, metric): ``mean``, ``std`` (empty for one
run), ``n``, the seeds and the run folders; values are in percent, as in ``comparison.md``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..audio import SPECTRAL_FEATURES
from .labels import differing_words, representation_name

logger = logging.getLogger(__name__)

SUBSET_ORDER = ["10min", "1h", "10h"]
# Table order: character and phone error rates lead (with minutes of labels they move where WER cannot).
METRICS = ("cer", "per", "wer", "cer_lm", "wer_lm")

# Top-level results.json fields that are not part of the setting: the seed, the subset (the table's
# column; train_utterances / train_hours and a character vocabulary follow from it), and what the run
# measured or how it went.
RUN_FIELDS = frozenset({
    "task", "seed", "subset", "train_utterances", "train_hours", "vocab_size", "too_long", "metrics",
    "train_metrics", "steps_run", "best_step", "best_dev_cer", "best_dev_wer", "best_dev_per", "best_metric",
    "stopped_early", "skipped", "layer_weights", "resumed_with_changes",
})
# Config keys that cannot change a run's numbers: where files go, how often they are written, which
# splits are decoded, how features are batched (padding never leaks into features).
BOOKKEEPING_CONFIG = frozenset({
    "config.training.seed", "config.data.subset", "config.data.cache_dir", "config.data.eval_splits",
    "config.data.max_batch_seconds", "config.training.log_steps", "config.training.save_steps",
    "config.training.save_total_limit", "config.training.num_workers", "config.training.pin_memory",
    "config.training.strict",
})
# The step budget: the study gives each subset its own, so it follows the column unless runs of one
# subset differ in it.
BUDGET = frozenset({"steps", "config.training.max_steps", "study.max_steps"})
# Config keys that repeat a top-level field; a label shows the top-level one only.
ALIASES = {
    "config.data.tokenizer": "tokenizer", "config.training.max_steps": "steps", "config.data.spec": "data",
    "config.model.freeze_upstream": "frozen", "config.model.probe_point": "probe_point",
    "config.training.metric_for_best_model": "metric_for_best_model",
    "config.data.validation_split": "validation_split", "study.unit": "tokenizer", "study.max_steps": "steps",
    "study.config": "config_name",
}
# Fields the representation label already shows (an upstream's path is said where two of one name differ).
IN_BASE_LABEL = frozenset({"upstream_name", "probe_point", "frozen"})


@dataclass
class RunResult:
    path: str
    representation: str  # name / probe point (frozen or fine-tuned): the first part of the row label
    subset: str
    metrics: dict  # split -> {"wer": float, "cer": float, "wer_lm": ..., "cer_lm": ...} or {"per": float}
    info: dict  # the whole results.json
    settings: dict = field(default_factory=dict)  # flattened setting (see the module docstring)

    @property
    def key(self) -> str:
        """The setting as one string: equal for runs that differ only in seed (and subset)."""
        return json.dumps(self.settings, sort_keys=True, default=str)

    @property
    def key_without_budget(self) -> str:
        """The setting without its step budget (:data:`BUDGET`), which may follow the subset."""
        return json.dumps({k: v for k, v in self.settings.items() if k not in BUDGET}, sort_keys=True, default=str)


@dataclass
class Cell:
    """The runs of one setting on one subset: their values (percent), seeds and folders."""

    values: list[float]
    seeds: list = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> Optional[float]:
        """Sample standard deviation (n - 1 in the denominator); None for a single run."""
        if self.n < 2:
            return None
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    def __str__(self) -> str:
        if self.n == 1:
            return f"{self.mean:.1f}"
        return f"{self.mean:.1f} ± {self.std:.1f} (n={self.n})"


def write_results(output_dir: str, results: dict) -> str:
    """Write ``output_dir/results.json`` atomically (a crash never leaves half a file) and return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(results, handle, indent=2)
    os.replace(tmp, path)
    return path


def representation_label(results: dict, folder: Optional[str] = None) -> str:
    """The first part of a row label: ``fbank (frozen)``, ``hub-cpc / ctx (frozen)``, ``wavenet_vq / bn
    (fine-tuned)`` (the name as :func:`~repr_asr.evaluation.labels.representation_name` gives it for the
    ``results.json`` in ``folder``)."""
    name = representation_name(results, folder)
    point = results.get("probe_point")
    mode = "frozen" if results.get("frozen", True) else "fine-tuned"
    spectral = results.get("upstream") in SPECTRAL_FEATURES  # one probe point, named by the name itself
    return f"{name}" + (f" / {point}" if point and not spectral else "") + f" ({mode})"


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def run_settings(results: dict) -> dict:
    """The flattened setting of a run: ``{"upstream": ..., "tokenizer": ..., "config.training.learning_rate": ...}``."""
    flat: dict = {}
    _flatten({k: v for k, v in results.items() if k not in RUN_FIELDS}, "", flat)
    if flat.get("init_from"):
        # Each seed starts from its own run folder: the setting is that it starts from a trained head.
        flat["init_from"] = True
    return {k: v for k, v in flat.items() if k not in BOOKKEEPING_CONFIG}


def load_runs(run_dirs: Iterable[str]) -> list[RunResult]:
    """Read the CTC ``results.json`` of each run folder (or any folder below it); a folder without one is
    an error, and probe / ABX results found there are left out. A file reached twice (overlapping
    folders) counts once."""
    runs = []
    seen = set()
    for run_dir in run_dirs:
        found = []
        for root, _dirs, files in os.walk(run_dir):
            if "results.json" in files:
                found.append(os.path.join(root, "results.json"))
        if not found:
            raise FileNotFoundError(f"{run_dir}: no results.json in this folder or below it")
        for path in sorted(found):
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            with open(path) as handle:
                try:
                    results = json.load(handle)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: not valid JSON ({error})") from error
            if results.get("task", "ctc") != "ctc":
                continue  # probe / ABX results have their own tables
            if "metrics" not in results or "subset" not in results:
                raise ValueError(f"{path}: a results.json needs 'subset' and 'metrics' (written by finetune_ctc.py)")
            runs.append(RunResult(path, representation_label(results, os.path.dirname(path)), str(results["subset"]),
                                  results["metrics"], results, run_settings(results)))
    return runs


def _subset_key(subset: str):
    return (SUBSET_ORDER.index(subset) if subset in SUBSET_ORDER else len(SUBSET_ORDER), subset)


def row_keys(runs: list[RunResult]) -> dict[str, str]:
    """``{run path: row key}``: runs with one key share a row. The key is the setting without its step
    budget, unless runs of that setting on one subset differ in budget (then the budget tells rows apart)."""
    budgets: dict = {}
    for run in runs:
        budgets.setdefault((run.key_without_budget, run.subset), set()).add(run.key)
    split = {key for (key, _), full in budgets.items() if len(full) > 1}
    return {run.path: run.key if run.key_without_budget in split else run.key_without_budget for run in runs}


def row_labels(runs: list[RunResult]) -> dict[str, str]:
    """``{run path: row label}``: the representation, plus, in words, the settings in which the rows of
    that representation among ``runs`` differ (so two rows never share a label)."""
    keys = row_keys(runs)
    rows: dict[str, RunResult] = {}
    for run in runs:
        rows.setdefault(keys[run.path], run)
    by_base: dict[str, list[str]] = {}
    for key, run in rows.items():
        by_base.setdefault(run.representation, []).append(key)
    labels_of_rows = {}
    for base, group in by_base.items():
        settings = [{k: v for k, v in json.loads(key).items()} for key in group]
        words = differing_words(settings, IN_BASE_LABEL, ALIASES)
        for key, said in zip(group, words):
            labels_of_rows[key] = base + (f" [{', '.join(said)}]" if said else "")
    # Settings that differ only in what a label does not say (none expected) still get distinct rows.
    counts: dict[str, int] = {}
    for key in sorted(labels_of_rows):
        label = labels_of_rows[key]
        counts[label] = counts.get(label, 0) + 1
        if counts[label] > 1:
            labels_of_rows[key] = f"{label} #{counts[label]}"
    return {run.path: labels_of_rows[keys[run.path]] for run in runs}


def comparison_table(runs: list[RunResult], split: str = "test", metric: str = "wer"):
    """``(rows, subsets, cells)``: row labels (baselines first), subsets in size order, and
    ``cells[(row, subset)]`` a :class:`Cell` of the metric in percent over the runs of that setting. Only
    the runs that measured ``metric`` on ``split`` are rows, and their labels tell apart only them."""
    runs = [run for run in runs if run.metrics.get(split, {}).get(metric) is not None]
    labels = row_labels(runs)
    rows = sorted(set(labels.values()), key=lambda r: (not r.startswith(SPECTRAL_FEATURES), r))
    subsets = sorted({run.subset for run in runs}, key=_subset_key)
    cells: dict = {}
    for run in runs:
        value = run.metrics[split][metric]
        cell = cells.setdefault((labels[run.path], run.subset), Cell([]))
        seed = run.info.get("seed")
        if seed is not None and seed in cell.seeds:
            # Not an error (a repeated run measures run-to-run noise) but never silent.
            logger.warning("%s and %s: same setting, subset and seed %s; both are counted in the mean",
                           cell.paths[cell.seeds.index(seed)], os.path.dirname(run.path), seed)
        cell.values.append(100.0 * float(value))
        cell.seeds.append(seed)
        cell.paths.append(os.path.dirname(run.path))
    return rows, subsets, cells


def _fmt(cell: Optional[Cell]) -> str:
    return "—" if cell is None or math.isnan(cell.mean) else str(cell)


def markdown_tables(runs: list[RunResult], split: str = "test") -> str:
    parts = []
    for metric in METRICS:
        rows, subsets, cells = comparison_table(runs, split, metric)
        if not cells:
            continue
        title = metric.upper().replace("_LM", " with LM")
        parts.append(f"### {title} (%) on `{split}`, by labeled subset\n")
        parts.append("| setting | " + " | ".join(subsets) + " |")
        parts.append("|---|" + "---:|" * len(subsets))
        for row in rows:
            parts.append(f"| {row} | " + " | ".join(_fmt(cells.get((row, s))) for s in subsets) + " |")
        parts.append("")
    return "\n".join(parts)


def write_comparison(runs: list[RunResult], output_dir: str, split: str = "test") -> dict:
    """Write ``comparison.md``, ``comparison.csv`` and ``comparison.png``; return their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {name: os.path.join(output_dir, f"comparison.{name}") for name in ("md", "csv", "png")}
    with open(paths["md"], "w") as handle:
        handle.write(f"# Low-resource ASR comparison\n\nFrom {len(runs)} runs; lower is better; "
                     "mean ± standard deviation over seeds (n runs) where a setting was run more than once.\n\n")
        handle.write(markdown_tables(runs, split))
    splits = sorted({name for run in runs for name in run.metrics})
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["setting", "subset", "split", "metric", "mean", "std", "n", "seeds", "runs"])
        for split_name in splits:
            for metric in METRICS:
                rows, subsets, cells = comparison_table(runs, split_name, metric)
                for row in rows:
                    for subset in subsets:
                        cell = cells.get((row, subset))
                        if cell is None:
                            continue
                        writer.writerow([row, subset, split_name, metric, cell.mean,
                                         "" if cell.std is None else cell.std, cell.n,
                                         ";".join(str(s) for s in cell.seeds), ";".join(cell.paths)])
    _plot(runs, split, paths["png"])
    return paths


def _plot(runs: list[RunResult], split: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in ("cer", "per", "wer") if comparison_table(runs, split, m)[2]] or ["cer"]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4), squeeze=False)
    axes = axes[0]
    for axis, metric in zip(axes, shown):
        rows, subsets, cells = comparison_table(runs, split, metric)
        width = 0.8 / max(len(rows), 1)
        for i, row in enumerate(rows):
            row_cells = [cells.get((row, s)) for s in subsets]
            values = [c.mean if c else float("nan") for c in row_cells]
            errors = [(c.std or 0.0) if c else 0.0 for c in row_cells]  # no bar for one run
            axis.bar([j + i * width for j in range(len(subsets))], values, width, yerr=errors, capsize=2, label=row)
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(subsets))], subsets)
        axis.set_xlabel("labeled data")
        axis.set_ylabel(f"{metric.upper()} (%) on {split}")
        axis.set_title(metric.upper())
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
