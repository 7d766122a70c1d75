"""Downstream tasks: one registry of what a representation is evaluated on, and the header every result shares.

A downstream task trains something small on frozen (or fine-tuned) features and reports one headline
metric. Each lives in one module that holds its data, head, metric and results record; :data:`REGISTRY`
names it, with what the study, its README, ``report.html`` and the analysis runner need to find it
without an if-chain over names:

* ``kind``: the ``task`` (and ``kind``) field of its ``results.json``;
* ``metric`` and ``higher_is_better``: the headline number of ``metrics[probe_point]``;
* ``evaluate``: the function a recipe calls, returning the ``results.json`` dictionary;
* ``study_analysis``: the function ``repr_asr.evaluation.analysis.run_analysis`` calls for the study's
  section of the task's name, ``(upstream, data, spec, probe_points, cache_dir, folder) -> results``
  (``None`` for tasks the study runs another way: CTC trains under ``accelerate launch``);
* ``study_table``: ``({representation: results or None}) -> markdown lines`` for the study's README;
* ``card_lines``: ``(results) -> markdown lines`` for an upstream's model card;
* ``html_section``: ``([(folder, results), ...]) -> HTML`` for ``report.html``.

Functions are named by module and attribute and imported on use, so importing this package is cheap.

Every ``results.json`` a downstream task writes starts with :func:`results_header`: ``task`` / ``kind``,
the upstream (path, short name, model type, weights hash, feature extractor settings), the probe points,
the data (spec, split, labeled subset), the seed and the package versions.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Optional, Sequence

# What a result depends on besides its arguments; recorded in every results header.
VERSIONED_PACKAGES = ("repr-asr", "torch", "torchaudio", "transformers", "datasets", "numpy")


@dataclass(frozen=True)
class DownstreamTask:
    """One downstream task of :data:`REGISTRY` (see the module docstring for each field)."""

    name: str
    kind: str
    title: str
    module: str
    evaluate: str
    metric: str
    higher_is_better: bool
    study_analysis: Optional[str] = None
    study_table: Optional[str] = None
    card_lines: Optional[str] = None
    html_section: Optional[str] = None

    def function(self, role: str) -> Optional[Callable]:
        """The callable filling ``role`` (a field naming a function: ``evaluate``, ``study_analysis``, ...),
        imported now; ``None`` when the task has none."""
        attribute = getattr(self, role)
        if attribute is None:
            return None
        return getattr(importlib.import_module(self.module), attribute)


REGISTRY: dict[str, DownstreamTask] = {
    task.name: task
    for task in (
        # CTC recognition: trained by recipes/finetune_ctc.py (under `accelerate launch`), tabled by
        # repr_asr.evaluation.report (compare.py, report.html, the study's CER / WER tables).
        DownstreamTask(name="ctc", kind="ctc", title="CTC recognition", module="repr_asr.downstream.ctc",
                       evaluate="run_finetune_ctc", metric="cer", higher_is_better=False),
        DownstreamTask(name="speaker_id", kind="speaker_id", title="Speaker identification", module="repr_asr.downstream.speaker_id",
                       evaluate="evaluate_speaker_id", metric="accuracy", higher_is_better=True,
                       study_analysis="run_from_spec", study_table="study_table", card_lines="card_lines",
                       html_section="html_section"),
    )
}


def get_task(name: str) -> DownstreamTask:
    """The registered task ``name``; an unknown name is refused, listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown downstream task {name!r}: expected one of {', '.join(REGISTRY)}") from None


def task_of_kind(kind: str) -> Optional[DownstreamTask]:
    """The task whose ``results.json`` says ``task: kind`` (None when no registered task writes that kind)."""
    return next((task for task in REGISTRY.values() if task.kind == kind), None)


def tasks_with(role: str) -> list[DownstreamTask]:
    """The registered tasks that fill ``role`` (e.g. ``study_analysis``), in registry order."""
    return [task for task in REGISTRY.values() if getattr(task, role) is not None]


def package_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """``{"python": ..., package: version}`` for ``names`` (``"not installed"`` when one is missing)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def results_header(kind: str, upstream: str, *, model=None, weights_sha256: Optional[str] = None,
                   feature_extractor: Optional[dict] = None, probe_points: Sequence[str] = (), data: str = "",
                   split: Optional[str] = None, subset: Optional[str] = None, seed: Optional[int] = None) -> dict:
    """The fields every downstream ``results.json`` starts with, in this order: ``task`` and ``kind``
    (both ``kind``: readers key results on ``task``), ``upstream``, ``upstream_name``, ``model_type``
    (of ``model``, the loaded upstream), ``weights_sha256`` and ``feature_extractor`` (as the feature
    cache keys them, ``repr_asr.evaluation.features``), ``probe_points``, ``data`` (the ``--data`` spec),
    ``split``, ``subset`` (the labeled subset, None where there is none), ``seed`` and ``versions``."""
    from ..models import upstream_display_name

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return {
        "task": kind,
        "kind": kind,
        "upstream": str(upstream),
        "upstream_name": upstream_display_name(upstream, model_type),
        "model_type": model_type,
        "weights_sha256": weights_sha256,
        "feature_extractor": feature_extractor,
        "probe_points": list(probe_points),
        "data": data,
        "split": split,
        "subset": subset,
        "seed": seed,
        "versions": package_versions(),
    }
