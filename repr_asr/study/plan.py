"""What a study config (``configs/study/*.yaml``) asks for: the representations, the labeled subsets the
corpus has, the CTC runs with their step budgets at a scale, the probe points of an upstream, the best
WaveNet-AE so far."""

import json
from pathlib import Path
from typing import Callable

from ..evaluation.report import SUBSET_ORDER
from ..training.config import ConfigError
from .ctc_run import CtcRun

ROOT = Path(__file__).resolve().parents[2]


def representations(spec: dict, hub: Path, say: Callable[[str], None] = print) -> dict:
    """name -> upstream argument of the downstream recipes: the baselines, the upstreams pretrained here
    (exported to ``hub/NAME``), the committed checkpoints listed under ``published`` (ROOT/hub/NAME,
    evaluated as they are; named ``hub-NAME``) and the upstreams of ``evaluate`` (``name: folder or hub
    name``, e.g. a local ``hubert-base-ls960``, evaluated as they are)."""
    reps = {name: name for name in spec.get("baselines", [])}
    reps.update({name: str(hub / name) for name in spec["pretrain"]["upstreams"]})
    for name in spec.get("published", []):
        folder = ROOT / "hub" / name
        if (folder / "config.json").exists():
            reps[f"hub-{name}"] = str(folder)
        else:
            say(f"published checkpoint hub/{name} is missing: not evaluated")
    # Any other upstream, evaluated as it is (no pretraining here): a folder or hub name of ours, or of a
    # transformers audio encoder (wav2vec2, HuBERT, WavLM, data2vec-audio).
    reps.update({name: str(path) for name, path in (spec.get("evaluate") or {}).items()})
    return reps


def subsets(spec: dict, data_dir: Path) -> list:
    """The subsets of ``ctc.subsets`` (``10min``, ``1h``, ``10h``) that the corpus in ``data_dir`` has."""
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    missing = manifest.get("missing_labeled_subsets", {})
    return [s for s in spec["ctc"]["subsets"] if f"train-{s}" not in missing and s not in missing]


def selected_subsets(spec: dict) -> list:
    """The subsets of ``ctc.selected``: run by the ``ctc_selected`` stage on its representations and seeds only."""
    return list((spec["ctc"].get("selected") or {}).get("subsets", []))


def choice_subset(spec: dict, data_dir: Path) -> str:
    """The subset whose frozen runs pick ``best_wavenet``: ``ctc.best_wavenet_on``, else the largest subset that
    every representation runs on every seed (not one of ``ctc.selected``)."""
    full = [s for s in subsets(spec, data_dir) if s not in selected_subsets(spec)]
    chosen = spec["ctc"].get("best_wavenet_on") or (max(full, key=SUBSET_ORDER.index) if full else None)
    if chosen is None:
        raise RuntimeError("the corpus has none of ctc.subsets: best_wavenet cannot be chosen")
    return chosen


def scaled_steps(max_steps: int, scale: float) -> int:
    """A CTC step budget at ``scale`` (never under 100 steps)."""
    return max(100, int(round(max_steps * scale)))


def frozen_ctc(spec: dict, subset: str, scale: float):
    """(training overrides, max_steps) of the frozen CTC runs on ``subset``."""
    settings = spec["ctc"]["subsets"][subset]
    return {k: v for k, v in settings.items() if k != "max_steps"}, scaled_steps(settings["max_steps"], scale)


def _config_field(upstream: str, field: str):
    """``field`` of ``upstream``'s config.json, else of the loaded upstream (a spectral baseline or a
    transformers encoder knows its own)."""
    config = Path(upstream) / "config.json"
    value = json.loads(config.read_text()).get(field) if config.exists() else None
    if value is None:
        from repr_asr.models import load_upstream

        value = getattr(load_upstream(upstream), field)
    return value


def probe_point_names(upstream: str) -> list:
    """Every probe point of ``upstream``."""
    return list(_config_field(upstream, "probe_points"))


def probe_points(upstream: str, section: dict):
    """``probe_points`` of an analysis section (probes, abx...): a list, ``default`` (the upstream's default
    probe point only) or absent (None: every probe point)."""
    points = section.get("probe_points")
    return [_config_field(upstream, "default_probe_point")] if points == "default" else points


def best_wavenet(results: Path, subset: str) -> str:
    """The WaveNet-AE (a name starting ``wavenet``) with the lowest mean best dev CER of its frozen CTC runs
    on ``subset`` under ``results/ctc``."""
    from repr_asr.evaluation.study_report import load_ctc

    means = {name: sum(r["best_dev_cer"] for r in rows) / len(rows)
             for (name, sub), rows in load_ctc(results / "ctc").items() if sub == subset and name.startswith("wavenet")}
    if not means:
        raise RuntimeError(f"no frozen CTC result of a WaveNet-AE on train-{subset} yet: run the ctc stage first")
    return min(means, key=means.get)


def _chosen_wavenet(spec: dict, results: Path, data_dir: Path, say: Callable[[str], None]) -> str:
    """:func:`best_wavenet` on :func:`choice_subset`, said with the subset it was chosen on."""
    on = choice_subset(spec, data_dir)
    best = best_wavenet(results, on)
    say(f"best WaveNet-AE on dev (frozen, train-{on}): {best}")
    return best


def ctc_runs(spec: dict, hub: Path, data_dir: Path, scale: float, say: Callable[[str], None] = print) -> list:
    """The frozen CTC runs: every representation on every subset the corpus has (but those of ``ctc.selected``),
    for each unit of ``ctc.units``, seed by seed (so that a study stopped early has a first seed of everything);
    then, with ``ctc.mixed``, the learned mix of every probe point for each non-baseline with two probe points or more."""
    ctc, runs = spec["ctc"], []
    reps = representations(spec, hub, say)
    available = [s for s in subsets(spec, data_dir) if s not in selected_subsets(spec)]
    for seed in ctc["seeds"]:
        for subset in available:
            runs += _frozen(spec, reps, subset, seed, scale)
    mixed = ctc.get("mixed") or {}
    for seed in mixed.get("seeds", []):
        for subset in [s for s in mixed.get("subsets", []) if s in available]:
            training, steps = frozen_ctc(spec, subset, scale)
            runs += [CtcRun("ctc_mix", name, upstream, subset, seed, ctc["config"], steps, training, model={"weighted_sum": True})
                     for name, upstream in reps.items() if name not in spec.get("baselines", []) and len(probe_point_names(upstream)) >= 2]
    return runs


def _frozen(spec: dict, reps: dict, subset: str, seed: int, scale: float) -> list:
    """The frozen CTC runs of ``reps`` (name -> upstream) on ``subset`` with ``seed``, one per unit of ``ctc.units``."""
    training, steps = frozen_ctc(spec, subset, scale)
    return [CtcRun("ctc" if unit == "char" else f"ctc_{unit}", name, upstream, subset, seed, spec["ctc"]["config"], steps, training, unit)
            for unit in spec["ctc"].get("units", ["char"]) for name, upstream in reps.items()]


def selected_ctc_runs(spec: dict, hub: Path, results: Path, data_dir: Path, scale: float, say: Callable[[str], None] = print) -> list:
    """The frozen CTC runs of ``ctc.selected``: its ``representations`` (``best_wavenet`` stands for
    :func:`best_wavenet` on :func:`choice_subset`, so these run after the ``ctc`` stage) on its ``subsets`` that the
    corpus has, with its ``seeds``, for each unit of ``ctc.units``. For a subset that costs as much as all the
    others together (train-10h), the rows its question needs."""
    selected = spec["ctc"].get("selected") or {}
    chosen = [s for s in selected_subsets(spec) if s in subsets(spec, data_dir)]
    for subset in [s for s in selected_subsets(spec) if s not in chosen]:
        say(f"ctc_selected: the corpus has no train-{subset}; skipped")
    if not chosen:
        return []
    reps, names = representations(spec, hub, say), list(selected.get("representations", []))
    if "best_wavenet" in names:
        best = _chosen_wavenet(spec, results, data_dir, lambda text: say(f"ctc_selected: {text}"))
        names = [best if name == "best_wavenet" else name for name in names]
    unknown = [name for name in names if name not in reps]
    if unknown:
        raise ConfigError(f"ctc.selected.representations: {', '.join(unknown)} is not a representation of the study "
                         f"(baselines, pretrain.upstreams, published, evaluate: {', '.join(reps)})")
    chosen_reps = {name: reps[name] for name in dict.fromkeys(names)}
    return [run for seed in selected.get("seeds", spec["ctc"]["seeds"]) for subset in chosen for run in _frozen(spec, chosen_reps, subset, seed, scale)]


def finetune_runs(spec: dict, hub: Path, results: Path, data_dir: Path, scale: float, say: Callable[[str], None] = print) -> list:
    """The fine-tuned CTC runs of ``ctc.finetune`` on each of its ``subsets`` the corpus has (``SUBSET: {seeds,
    max_steps, training}``, each defaulting to ``ctc.seeds`` and the section's own), each starting from the frozen run
    of the same upstream, subset and seed; ``best_wavenet`` stands for :func:`best_wavenet` on :func:`choice_subset`."""
    ctc, finetune = spec["ctc"], spec["ctc"]["finetune"]
    if "subset" in finetune:  # the form before several subsets: refused rather than silently fine-tuning nothing
        raise ConfigError(f"ctc.finetune.subset is now ctc.finetune.subsets, a mapping: subsets: {{{finetune['subset']}: {{}}}}")
    available = subsets(spec, data_dir)
    chosen = {}
    for subset, settings in (finetune.get("subsets") or {}).items():
        if subset in available:
            chosen[subset] = settings or {}
        else:
            say(f"finetune: the corpus has no train-{subset}; skipped")
    if not chosen or not finetune.get("upstreams"):
        return []
    runs = []
    # Upstream-major, in the order listed (fine-tuning caches no features, so runs side by side share nothing):
    # with the slowest upstream listed first its runs start first and the short ones fill the other core.
    for name in finetune["upstreams"]:
        if name == "best_wavenet":
            name = _chosen_wavenet(spec, results, data_dir, lambda text: say(f"finetune: {text}"))
        for subset, settings in chosen.items():
            training, steps = frozen_ctc(spec, subset, scale)
            tuning = {**(finetune.get("training") or {}), **(settings.get("training") or {})}
            for seed in settings.get("seeds", ctc["seeds"]):
                frozen = CtcRun("ctc", name, str(hub / name), subset, seed, ctc["config"], steps, training)
                runs.append(CtcRun("finetune", name, frozen.upstream, subset, seed, finetune["config"],
                                   scaled_steps(settings.get("max_steps", finetune["max_steps"]), scale), tuning or None, init_from=frozen))
    return runs
