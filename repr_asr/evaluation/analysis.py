"""One analysis of one representation, as a plain function of JSON-able arguments, so that a study can
run several at once, each in its own process on its share of the cores (``recipes/study_analysis.py``):
probes, ABX, VQ code statistics, resynthesis, and the downstream tasks of ``repr_asr.downstream.REGISTRY`` that the study
runs this way (speaker identification), found through the registry. On 2 cores one one-thread process
per representation keeps both cores busy where a single two-thread process spent most of its time in
small, poorly threaded operations (a probe's MLP, ABX's DTW anti-diagonals).
"""

from pathlib import Path
from typing import Optional

from repr_asr.downstream import get_task, tasks_with

# Downstream tasks the study runs as analyses, each under its registry name (its config section and results folder).
DOWNSTREAM_ANALYSES = tuple(task.name for task in tasks_with("study_analysis"))
# In the order a study queues them: probes and ABX (minutes each) first, resynthesis (one upstream) last.
ANALYSES = ("probes", "abx", *DOWNSTREAM_ANALYSES, "codes", "resynthesis")


def bottleneck(upstream: str) -> Optional[str]:
    """The WaveNet-AE bottleneck of the checkpoint folder ``upstream`` (None for baselines and others)."""
    import json

    config = Path(upstream) / "config.json"
    return json.loads(config.read_text()).get("bottleneck") if config.exists() else None


def applies(stage: str, upstream: str, spec: dict) -> bool:
    """Whether the ``stage`` analysis has something to measure on ``upstream``: code statistics need a VQ
    bottleneck, resynthesis a WaveNet-AE listed under ``spec["upstreams"]``."""
    if stage == "codes":
        return bottleneck(upstream) == "vq"
    if stage == "resynthesis":
        return Path(upstream).name in spec.get("upstreams", []) and bottleneck(upstream) is not None
    return True


def run_analysis(stage: str, upstream: str, data: str, spec: dict, probe_points, cache_dir: str, folder: str) -> Optional[dict]:
    """The ``stage`` analysis (one of :data:`ANALYSES`) of ``upstream`` on ``data`` with the study's
    ``spec`` section for it; ``None`` when it does not apply (code statistics of an upstream without a VQ
    bottleneck, resynthesis of one not listed). Figures and WAVs go to ``folder``."""
    if stage == "probes":
        from repr_asr.evaluation.probes import ProbeConfig, evaluate_probes

        config = ProbeConfig(hidden_size=spec["hidden_size"], epochs=spec["epochs"], patience=spec["patience"])
        return evaluate_probes(upstream, data, spec["split"], probe_points, spec["tasks"], spec["max_utterances"], config,
                               cache_dir=cache_dir, progress=False)
    if stage == "abx":
        from repr_asr.evaluation.abx import evaluate_abx

        return evaluate_abx(upstream, data, spec["split"], probe_points, "within", spec["max_utterances"], cache_dir=cache_dir, progress=False)
    if stage in DOWNSTREAM_ANALYSES:
        return get_task(stage).function("study_analysis")(upstream, data, spec, probe_points, cache_dir, folder)
    if not applies(stage, upstream, spec):
        return None
    if stage == "codes":
        from repr_asr.evaluation.code_figures import draw_code_figures
        from repr_asr.evaluation.codes import evaluate_codes
        from repr_asr.models import load_feature_extractor

        results = evaluate_codes(upstream, data, spec["split"], cache_dir=cache_dir, progress=False, examples=spec.get("examples", 0))
        results["figures"] = draw_code_figures(results, data, folder, load_feature_extractor(upstream).sampling_rate)
        return results
    if stage == "resynthesis":
        from repr_asr.evaluation.resynthesis import resynthesize_utterances

        return resynthesize_utterances(upstream, data, folder, spec.get("split", "test"), spec.get("num_utterances", 2),
                                       target_speakers=spec.get("target_speakers", 2), max_seconds=spec.get("max_seconds", 1.5),
                                       temperature=spec.get("temperature", 1.0), progress=False)
    raise ValueError(f"unknown analysis {stage!r}: expected one of {', '.join(ANALYSES)}")
