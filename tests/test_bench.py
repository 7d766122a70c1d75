"""Every benchmark of ``bench/run.py`` (``make bench``) runs at its ``--quick`` size, so a change that breaks
one fails here, where it is made, rather than at the next full benchmark run. No timing is asserted
(CONTRIBUTING.md): only that each row ran to the end, its numbers are finite, and the properties the
rows check as they go."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_names() -> list[str]:
    return list(bench_module().BENCHMARKS)


def numbers(value):
    """Every int and float inside a JSON value."""
    if isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_every_benchmark_runs_at_its_quick_size(tmp_path):
    names = benchmark_names()
    assert {"pretraining_steps", "wavenet_step", "wavenet_features", "feature_extraction", "data_loading", "abx"} <= set(names)
    # Two halves at once, one thread each (the suite runs one test at a time; quick rows time nothing that counts).
    halves = [["data_loading", "abx"], [name for name in names if name not in ("data_loading", "abx")]]
    procs = [subprocess.Popen([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--output_dir", str(tmp_path), "--only", *half],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}) for half in halves]
    stdout = ""
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        stdout += out
    results = {}
    for name in names:
        assert f"== {name} " in stdout, f"no summary printed for {name}"
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert payload["quick"] is True
        results[name] = payload["results"]
        assert "skipped" not in results[name], f"{name}: {results[name]}"
        assert all(math.isfinite(x) for x in numbers(results[name])), f"{name}: a number is not finite: {results[name]}"

    for name in ("wavenet_vq_tiny", "cpc_tiny", "masked_recon_tiny"):
        row = results["pretraining_steps"][name]
        assert row["train_step_flops"] > 0 and row["step_seconds"] > 0
    assert set(results["wavenet_step"]) == {"ae_tiny", "decoder_tiny", "decoder_plain_tiny", "ae_paper", "decoder_paper",
                                            "decoder_plain_paper"}
    # The fused and the plain stack run the same products: their FLOP counts agree to a few percent.
    step = results["wavenet_step"]
    assert abs(step["decoder_tiny"]["train_step_flops"] / step["decoder_plain_tiny"]["train_step_flops"] - 1) < 0.05
    features = results["wavenet_features"]
    assert features["decoder_module_calls_features"] == 0 and features["decoder_module_calls_training"] > 0
    assert {"wavenet_vq", "cpc", "masked_recon", "wav2vec2_base"} <= set(results["feature_extraction"]["rows"])
    assert all(row["crops"] > 0 for row in results["data_loading"]["rows"].values())
    abx = results["abx"]
    assert abx["items"] > 100
    # Each evaluator draws its own subsample: a few points of sampling noise on so few items, not tens.
    for mode in ("within", "across"):
        assert 5 < abx["ours_percent"][mode] < 45
        assert abs(abx["ours_percent"][mode] - abx["reference_percent"][mode]) < 3
    if "skipped" in abx["fastabx"]:
        assert "BENCH_FASTABX_PYTHON" in abx["fastabx"]["skipped"] or "fastabx" in abx["fastabx"]["skipped"]
    else:
        assert abx["fastabx"]["largest_gap_to_ours_points"] < 3


@pytest.mark.skipif(not os.environ.get("BENCH_FASTABX_PYTHON"),
                    reason="BENCH_FASTABX_PYTHON (a Python >= 3.12 with fastabx) is not set")
def test_fastabx_scores_our_export_as_we_do_without_subsampling(tmp_path):
    # Without subsampling no random draw is involved: the two implementations must give the same error.
    from repr_asr.evaluation.abx import abx_error, export_for_evaluators

    features, items = bench_module().abx_bench_data(quick=True)
    export = export_for_evaluators(features, items, tmp_path, "bench")
    ours = abx_error(features, items, 100.0, max_size_group=10**9, max_x_across=10**9, progress=False)
    proc = subprocess.run([os.environ["BENCH_FASTABX_PYTHON"], str(ROOT / "bench" / "fastabx_abx.py"), export["item_file"],
                           str(tmp_path), "--frequency", "100", "--max_size_group", "-1", "--max_x_across", "-1"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "skipped" not in theirs, theirs["skipped"]
    for mode in ("within", "across"):
        assert theirs[mode] == pytest.approx(ours[mode], abs=1e-6)
