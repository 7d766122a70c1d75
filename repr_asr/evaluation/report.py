"""Comparison tables across representations and labeled-data sizes, from ``results.json`` files alone.

Each downstream run writes ``RUN_DIR/results.json`` saying what was run and what was measured
(see ``repr_asr.downstream``); this module gathers them into one table per metric:
rows are representations (upstream + probe point + frozen/fine-tuned), columns are labeled subsets.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from typing import Iterable, Optional

SUBSET_ORDER = ["10min", "1h", "10h"]


@dataclass
class RunResult:
    path: str
    representation: str
    subset: str
    metrics: dict  # split -> {"wer": float, "cer": float, "wer_lm": ..., "cer_lm": ...}
    info: dict


def write_results(output_dir: str, results: dict) -> str:
    """Write ``output_dir/results.json`` atomically (a crash never leaves half a file) and return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(results, handle, indent=2)
    os.replace(tmp, path)
    return path


def representation_label(results: dict) -> str:
    """A short row label: ``fbank``, ``wavenet_ae(vq)/bn frozen``, ..."""
    name = results.get("upstream_name") or os.path.basename(str(results.get("upstream", "?")).rstrip("/"))
    point = results.get("probe_point")
    mode = "frozen" if results.get("frozen", True) else "fine-tuned"
    return f"{name}" + (f"/{point}" if point and name not in ("fbank", "mfcc") else "") + f" ({mode})"


def load_runs(run_dirs: Iterable[str]) -> list[RunResult]:
    """Read the CTC ``results.json`` of each run folder (or any folder below it); a folder without one is
    an error, and probe / ABX results found there are left out."""
    runs = []
    for run_dir in run_dirs:
        found = []
        for root, _dirs, files in os.walk(run_dir):
            if "results.json" in files:
                found.append(os.path.join(root, "results.json"))
        if not found:
            raise FileNotFoundError(f"{run_dir}: no results.json in this folder or below it")
        for path in sorted(found):
            with open(path) as handle:
                try:
                    results = json.load(handle)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: not valid JSON ({error})") from error
            if results.get("task", "ctc") != "ctc":
                continue  # probe / ABX results have their own tables
            if "metrics" not in results or "subset" not in results:
                raise ValueError(f"{path}: a results.json needs 'subset' and 'metrics' (written by finetune_ctc.py)")
            runs.append(RunResult(path, representation_label(results), str(results["subset"]), results["metrics"], results))
    return runs


def _subset_key(subset: str):
    return (SUBSET_ORDER.index(subset) if subset in SUBSET_ORDER else len(SUBSET_ORDER), subset)


def comparison_table(runs: list[RunResult], split: str = "test", metric: str = "wer"):
    """``(rows, subsets, cells)`` where ``cells[(row, subset)]`` is the metric in percent (None if missing)."""
    rows = sorted({run.representation for run in runs}, key=lambda r: (not r.startswith(("fbank", "mfcc")), r))
    subsets = sorted({run.subset for run in runs}, key=_subset_key)
    cells: dict = {}
    for run in runs:
        value = run.metrics.get(split, {}).get(metric)
        if value is not None:
            cells[(run.representation, run.subset)] = 100.0 * float(value)
    return rows, subsets, cells


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def markdown_tables(runs: list[RunResult], split: str = "test") -> str:
    parts = []
    for metric in ("wer", "cer", "wer_lm", "cer_lm"):
        rows, subsets, cells = comparison_table(runs, split, metric)
        if not cells:
            continue
        title = metric.upper().replace("_LM", " with LM")
        parts.append(f"### {title} (%) on `{split}`, by labeled subset\n")
        parts.append("| representation | " + " | ".join(subsets) + " |")
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
        handle.write(f"# Low-resource ASR comparison\n\nFrom {len(runs)} runs; lower is better.\n\n")
        handle.write(markdown_tables(runs, split))
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["representation", "subset", "split", "wer", "cer", "wer_lm", "cer_lm", "steps", "seed", "run"])
        for run in sorted(runs, key=lambda r: (r.representation, _subset_key(r.subset))):
            for split_name, values in sorted(run.metrics.items()):
                writer.writerow(
                    [run.representation, run.subset, split_name]
                    + [values.get(k, "") for k in ("wer", "cer", "wer_lm", "cer_lm")]
                    + [run.info.get("steps", ""), run.info.get("seed", ""), os.path.dirname(run.path)]
                )
    _plot(runs, split, paths["png"])
    return paths


def _plot(runs: list[RunResult], split: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("wer", "cer")):
        rows, subsets, cells = comparison_table(runs, split, metric)
        width = 0.8 / max(len(rows), 1)
        for i, row in enumerate(rows):
            values = [cells.get((row, s), float("nan")) for s in subsets]
            axis.bar([j + i * width for j in range(len(subsets))], values, width, label=row)
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(subsets))], subsets)
        axis.set_xlabel("labeled data")
        axis.set_ylabel(f"{metric.upper()} (%) on {split}")
        axis.set_title(metric.upper())
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
