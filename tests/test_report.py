"""compare.py's tables come from results.json files alone: one row per setting (never two settings in
one cell), seeds of one setting averaged as mean ± std (n)."""

import csv
import json
import statistics
import subprocess
import sys

import pytest

from repr_asr.evaluation.labels import representation_name, setting_words
from repr_asr.evaluation.report import comparison_table, load_runs, markdown_tables, run_settings


def write_run(folder, upstream, subset, wer, cer, frozen=True, point=None, seed=0, tokenizer="char", vocab_size=0,
              extra=None):
    folder.mkdir(parents=True)
    results = {
        "task": "ctc", "upstream": upstream, "upstream_name": upstream, "probe_point": point, "frozen": frozen,
        "subset": subset, "tokenizer": tokenizer, "vocab_size": 30 if tokenizer == "char" else vocab_size,
        "steps": 10, "seed": seed, "train_utterances": {"10min": 13, "1h": 80}[subset],
        "best_step": 5 + seed, "stopped_early": bool(seed % 2),
        "config": {"model_type": "upstream_ctc", "model": {"head_type": "bilstm"},
                   "data": {"subset": subset, "tokenizer": tokenizer, "vocab_size": vocab_size, "cache_dir": f"/tmp/{seed}"},
                   "training": {"seed": seed, "max_steps": 10, "learning_rate": 0.003, "save_steps": 5 + seed}},
        "metrics": {"test": {"wer": wer, "cer": cer}, "dev": {"wer": wer + 0.1, "cer": cer}},
    }
    results.update(extra or {})
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
    assert rows == ["fbank (frozen)", "wavenet_vq / bn (frozen)"]  # the baseline leads; both subsets share a row
    assert subsets == ["10min", "1h"]
    assert cells[("fbank (frozen)", "1h")].mean == pytest.approx(70.0)
    assert cells[("fbank (frozen)", "1h")].n == 1 and cells[("fbank (frozen)", "1h")].std is None
    assert cells[("wavenet_vq / bn (frozen)", "1h")].mean == pytest.approx(60.0)
    assert ("wavenet_vq / bn (frozen)", "10min") not in cells


def test_two_tokenizers_are_two_rows(tmp_path):
    # The bug: a character run's CER 95.1 was shown as the sentencepiece run's 100.0 (one cell, last wins).
    write_run(tmp_path / "runs" / "char", "fbank", "1h", 1.0, 0.951, tokenizer="char")
    write_run(tmp_path / "runs" / "sp", "fbank", "1h", 1.0, 1.0, tokenizer="sentencepiece", vocab_size=64)
    runs = load_runs([str(tmp_path / "runs")])
    rows, _, cells = comparison_table(runs, "test", "cer")
    assert len(rows) == 2
    by_tokenizer = {("sentencepiece" in row): cells[(row, "1h")] for row in rows}
    assert by_tokenizer[False].mean == pytest.approx(95.1) and by_tokenizer[True].mean == pytest.approx(100.0)
    # The label says what tells the rows apart, in words: the units and the vocabulary, no key=value.
    assert sorted(rows) == ["fbank (frozen) [characters, vocab size 0]", "fbank (frozen) [sentencepiece units, vocab size 64]"]
    assert "95.1" in markdown_tables(runs) and "100.0" in markdown_tables(runs)


@pytest.mark.parametrize("field, value", [
    ("config", {"model_type": "upstream_ctc", "model": {"head_type": "linear"}}),  # any config key
    ("config_name", "finetune_tiny"),
    ("data", "librispeech:/data"),
])
def test_any_setting_difference_is_a_row(tmp_path, field, value):
    write_run(tmp_path / "runs" / "a", "fbank", "1h", 0.7, 0.3)
    write_run(tmp_path / "runs" / "b", "fbank", "1h", 0.8, 0.4, extra={field: value})
    rows, _, cells = comparison_table(load_runs([str(tmp_path / "runs")]), "test", "cer")
    assert len(rows) == 2 and sorted(c.mean for c in cells.values()) == pytest.approx([30.0, 40.0])


def test_seeds_of_one_setting_are_averaged(tmp_path):
    cers = [0.712, 0.751, 0.79]
    for seed, value in enumerate(cers):
        # Per-run fields (seed, best step, cache folder, save cadence) differ; the setting does not.
        write_run(tmp_path / "runs" / f"seed{seed}", "cpc_tiny", "1h", 1.0, value, point="ctx", seed=seed)
    write_run(tmp_path / "runs" / "other", "cpc_tiny", "10min", 1.0, 0.8, point="ctx", seed=0)
    runs = load_runs([str(tmp_path / "runs")])
    rows, subsets, cells = comparison_table(runs, "test", "cer")
    assert rows == ["cpc_tiny / ctx (frozen)"] and subsets == ["10min", "1h"]
    cell = cells[(rows[0], "1h")]
    assert cell.n == 3
    assert cell.mean == pytest.approx(statistics.mean(100 * v for v in cers))
    assert cell.std == pytest.approx(statistics.stdev(100 * v for v in cers))  # sample std (n - 1)
    assert str(cell) == "75.1 ± 3.9 (n=3)"
    assert str(cells[(rows[0], "10min")]) == "80.0"  # one seed: just the value
    assert "| cpc_tiny / ctx (frozen) | 80.0 | 75.1 ± 3.9 (n=3) |" in markdown_tables(runs)


def _study_run(results_dir, name, subset, seed, cer, upstream, hours=2.0, flops=1.26e13, max_steps=1200, folder="ctc"):
    """A CTC results.json where recipes/study.py puts it (FOLDER/NAME/SUBSET/seedS), with the study's record."""
    write_run(results_dir / folder / name / subset / f"seed{seed}", upstream, subset, 1.0, cer, point="ctx", seed=seed, extra={
        "upstream_name": "cpc", "steps": max_steps,
        "study": {"corpus": {"hours": 2.0, "seed": 2}, "scale": 1.0, "config": "configs/ctc/frozen_tiny.yaml", "max_steps": max_steps,
                  "upstream_key": {"corpus": {"hours": hours, "seed": 2 if hours == 2.0 else 0}, "scale": 1.0,
                                   "config": "configs/pretrain/cpc_tiny.yaml", "overrides": {}, "flops": flops}}})


def test_rows_are_named_as_the_study_names_them_and_settings_said_in_words(tmp_path):
    """The demo's CPC and the committed hub/cpc both call themselves cpc: the rows say cpc and hub-cpc,
    as the study does, and nothing about the settings that only follow from that (their corpora, FLOPs)."""
    results = tmp_path / "results"
    for seed, cer in ((0, 0.70), (1, 0.72)):
        _study_run(results, "cpc", "10min", seed, cer, "runs/demo/hub/cpc")
        _study_run(results, "hub-cpc", "10min", seed, cer - 0.1, "hub/cpc", hours=4.0, flops=3e13)
    _study_run(results, "cpc", "1h", 0, 0.6, "runs/demo/hub/cpc", max_steps=2400)  # its own budget: the same row
    rows, subsets, cells = comparison_table(load_runs([str(results)]), "test", "cer")
    assert rows == ["cpc / ctx (frozen)", "hub-cpc / ctx (frozen)"] and subsets == ["10min", "1h"]
    assert str(cells[("cpc / ctx (frozen)", "10min")]) == "71.0 ± 1.4 (n=2)" and str(cells[("cpc / ctx (frozen)", "1h")]) == "60.0"
    assert str(cells[("hub-cpc / ctx (frozen)", "10min")]) == "61.0 ± 1.4 (n=2)"

    # The study's cpc and the demo's, gathered by compare.py: one name, so the label says how they differ.
    other = tmp_path / "study"
    _study_run(other, "cpc", "10min", 0, 0.65, "hub/cpc", hours=4.0, flops=3e13)
    rows, _, _ = comparison_table(load_runs([str(results / "ctc" / "cpc"), str(other)]), "test", "cer")
    assert sorted(rows) == ["cpc / ctx (frozen) [upstream hub/cpc, pretraining corpus 4 h, pretraining corpus seed 0, 3e13 FLOPs]",
                            "cpc / ctx (frozen) [upstream runs/demo/hub/cpc, pretraining corpus 2 h, pretraining corpus seed 2, 1.26e13 FLOPs]"]
    for row in rows:
        assert "=" not in row and "study." not in row and "configs/" not in row


def test_runs_of_one_subset_with_different_budgets_are_two_rows(tmp_path):
    results = tmp_path / "results"
    _study_run(results, "cpc", "10min", 0, 0.70, "runs/demo/hub/cpc", max_steps=1200)
    _study_run(results, "cpc", "10min", 1, 0.60, "runs/demo/hub/cpc", max_steps=2400)
    rows, _, cells = comparison_table(load_runs([str(results)]), "test", "cer")
    assert rows == ["cpc / ctx (frozen) [1200 steps]", "cpc / ctx (frozen) [2400 steps]"]
    assert cells[(rows[1], "10min")].mean == pytest.approx(60.0)


@pytest.mark.parametrize("key, value, words", [
    ("study.corpus.hours", 4.0, "corpus 4 h"),
    ("study.upstream_key.flops", 3e13, "3e13 FLOPs"),
    ("study.upstream_key.config", "configs/pretrain/cpc_tiny.yaml", "pretrained with cpc_tiny config"),
    ("study.upstream_key.overrides.model.jitter_prob", 0.0, "pretraining jitter prob 0"),
    ("config.training.learning_rate", 3e-4, "learning rate 0.0003"),
    ("config.model.weighted_sum", True, "weighted sum on"),
    ("tokenizer", "phone", "phones"),
    ("metric_for_best_model", "eval_per", "kept at best dev PER"),
])
def test_settings_in_words(key, value, words):
    assert setting_words(key, value) == words


def test_a_study_result_is_named_by_the_study_and_any_other_by_its_upstream(tmp_path):
    study = {"task": "ctc", "upstream_name": "cpc", "subset": "10min", "study": {}}
    assert representation_name(study, tmp_path / "ctc_phone" / "hub-cpc" / "10min" / "seed0") == "hub-cpc"
    assert representation_name({"task": "probe", "upstream_name": "cpc", "study": {}}, tmp_path / "probes" / "hub-cpc") == "hub-cpc"
    assert representation_name({**study, "study": None}, tmp_path / "ctc" / "hub-cpc" / "10min" / "seed0") == "cpc"
    # Without a recorded name: the one naming rule (repr_asr.models.upstream_display_name), runs/x/final is x.
    assert representation_name({"task": "ctc", "upstream": "runs/x/final/"}, tmp_path / "run") == "x"


def test_settings_leave_out_the_seed_and_outcomes_only():
    base = {"upstream": "fbank", "subset": "1h", "seed": 0, "metrics": {}, "best_step": 3,
            "config": {"training": {"seed": 0, "learning_rate": 0.1}, "data": {"subset": "1h", "tokenizer": "char"}}}
    settings = run_settings(base)
    assert settings == {"upstream": "fbank", "config.training.learning_rate": 0.1, "config.data.tokenizer": "char"}


def test_overlapping_run_folders_count_a_run_once(runs_dir):
    runs = load_runs([str(runs_dir), str(runs_dir / "a")])
    assert len(runs) == 3


def test_recipe_writes_all_outputs(runs_dir, tmp_path):
    for seed, value in enumerate([0.70, 0.74]):  # a second seed of run b's setting
        if seed:
            write_run(runs_dir / f"b{seed}", "fbank", "1h", value, 0.3, seed=seed)
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "recipes/compare.py", "--runs", str(runs_dir), "--output_dir", str(out)],
        capture_output=True, text=True, check=True,
    )
    assert "| fbank (frozen) | 90.0 | 72.0 ± 2.8 (n=2) |" in proc.stdout
    assert (out / "comparison.png").stat().st_size > 1000
    with open(out / "comparison.csv") as handle:
        lines = list(csv.DictReader(handle))
    assert set(lines[0]) >= {"setting", "subset", "split", "metric", "mean", "std", "n"}
    # one line per (row, subset, split, metric): 3 cells x 2 splits x (wer, cer)
    assert len(lines) == 3 * 2 * 2
    line = next(l for l in lines if l["setting"] == "fbank (frozen)" and l["subset"] == "1h"
                and l["split"] == "test" and l["metric"] == "wer")
    assert float(line["mean"]) == pytest.approx(72.0) and float(line["std"]) == pytest.approx(2.828, abs=1e-3)
    assert line["n"] == "2" and line["seeds"] == "0;1"
    single = next(l for l in lines if l["subset"] == "10min" and l["split"] == "test" and l["metric"] == "cer")
    assert single["n"] == "1" and single["std"] == ""


def test_missing_results_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_runs([str(tmp_path / "empty")])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad/results.json"):
        load_runs([str(tmp_path / "bad")])
