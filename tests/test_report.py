"""compare.py's tables come from results.json files alone."""

import json
import subprocess
import sys

import pytest

from repr_asr.evaluation.report import comparison_table, load_runs


def write_run(folder, upstream, subset, wer, cer, frozen=True, point=None):
    folder.mkdir(parents=True)
    results = {
        "upstream": upstream, "upstream_name": upstream, "probe_point": point, "frozen": frozen, "subset": subset,
        "steps": 10, "seed": 0, "metrics": {"test": {"wer": wer, "cer": cer}, "dev": {"wer": wer + 0.1, "cer": cer}},
    }
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs_dir(tmp_path):
    write_run(tmp_path / "runs" / "a", "fbank", "10min", 0.9, 0.5)
    write_run(tmp_path / "runs" / "b", "fbank", "1h", 0.7, 0.3)
    write_run(tmp_path / "runs" / "c", "wavenet_vq", "1h", 0.6, 0.25, point="bn")
    return tmp_path / "runs"


def test_table_cells(runs_dir):
    runs = load_runs([str(runs_dir)])
    rows, subsets, cells = comparison_table(runs, "test", "wer")
    assert rows[0] == "fbank (frozen)"  # the baseline leads the table
    assert subsets == ["10min", "1h"]
    assert cells[("fbank (frozen)", "1h")] == pytest.approx(70.0)
    assert cells[("wavenet_vq/bn (frozen)", "1h")] == pytest.approx(60.0)
    assert ("wavenet_vq/bn (frozen)", "10min") not in cells


def test_recipe_writes_all_outputs(runs_dir, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "recipes/compare.py", "--runs", str(runs_dir), "--output_dir", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "| fbank (frozen) | 90.0 | 70.0 |" in proc.stdout
    assert (out / "comparison.png").stat().st_size > 1000
    lines = (out / "comparison.csv").read_text().splitlines()
    assert len(lines) == 1 + 3 * 2  # header + (3 runs x 2 splits)


def test_missing_results_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_runs([str(tmp_path / "empty")])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad/results.json"):
        load_runs([str(tmp_path / "bad")])
