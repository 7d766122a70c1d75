"""The study: VQ code statistics, the report's tables and findings, and the recipe end to end on a tiny
built-in corpus (stages resume, upstreams exported to a hub folder that AutoModel loads)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from repr_asr.evaluation.codes import code_statistics
from repr_asr.evaluation.probes import IGNORE
from repr_asr.evaluation.study_report import findings, load_ctc, topline_findings, write_report
from repr_asr.study import plan

ROOT = Path(__file__).resolve().parents[1]


def test_codes_that_are_the_phones_score_purity_and_nmi_one():
    rng = np.random.default_rng(0)
    phones = [rng.integers(0, 5, size=40) for _ in range(6)]
    stats = code_statistics([p.copy() for p in phones], phones, ["a", "a", "b", "b", "c", "c"], codebook_size=8, frame_rate=50.0)
    assert stats["codes_used"] == 5 and stats["frames"] == 240
    assert stats["phone_purity"] == pytest.approx(100.0) and stats["phone_nmi"] == pytest.approx(1.0)
    assert stats["phone_majority"] < 40
    assert 4.0 < stats["perplexity"] <= 5.0 and stats["bitrate"] == pytest.approx(stats["entropy_bits"] * 50.0)


def test_codes_independent_of_phones_and_speakers_score_nmi_near_zero():
    rng = np.random.default_rng(1)
    codes = [rng.integers(0, 16, size=2000) for _ in range(4)]
    phones = [rng.integers(0, 4, size=2000) for _ in range(4)]
    stats = code_statistics(codes, phones, ["a", "b", "c", "d"], codebook_size=16, frame_rate=50.0)
    assert stats["phone_nmi"] < 0.01 and stats["speaker_nmi"] < 0.01
    assert stats["perplexity"] > 15.5 and stats["mean_run_frames"] < 1.2


def test_codes_ignore_unlabelled_frames_and_name_speaker_codes():
    codes = [np.full(10, 0), np.full(10, 1)]  # one code per speaker: codes carry the speaker entirely
    phones = [np.array([IGNORE] * 5 + [1] * 5), np.array([2] * 10)]
    stats = code_statistics(codes, phones, ["a", "b"], codebook_size=4, frame_rate=50.0)
    assert stats["speaker_nmi"] == pytest.approx(1.0) and stats["mean_run_frames"] == 10.0
    assert stats["phone_purity"] == pytest.approx(100.0)  # 15 labelled frames, each code has one phone
    with pytest.raises(ValueError, match="no frames"):
        code_statistics([], [], [], codebook_size=4, frame_rate=50.0)


def _ctc_result(folder: Path, name: str, subset: str, seed: int, test_cer: float, dev_cer: float) -> None:
    path = folder / "ctc" / name / subset / f"seed{seed}" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # results.json holds fractions, as finetune_ctc writes them; the report shows percent
    path.write_text(json.dumps({"metrics": {"test": {"cer": test_cer / 100, "wer": test_cer / 50}, "dev": {"cer": dev_cer / 100}},
                                "best_dev_cer": dev_cer / 100, "seed": seed}))


def _analysis(folder: Path, stage: str, name: str, metrics: dict) -> None:
    path = folder / stage / name / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": metrics}))


def test_report_tables_and_findings_from_results(tmp_path):
    results, hub = tmp_path / "results", tmp_path / "hub"
    spec = {"corpus": {"hours": 4.0, "seed": 0}, "baselines": ["fbank", "mfcc"],
            "pretrain": {"upstreams": {"wavenet_vq": {}, "wavenet_vq_nojitter": {}, "cpc": {}}}}
    for name, bottleneck in (("wavenet_vq", "vq"), ("wavenet_vq_nojitter", "vq"), ("cpc", None)):
        (hub / name).mkdir(parents=True)
        (hub / name / "results.json").write_text(json.dumps({
            "steps": 100, "total_flops": 6e13, "run": {"model": {"bottleneck": bottleneck}},
            "study": {"config": f"configs/{name}.yaml", "overrides": {}}}))
    for seed, noise in enumerate((0.0, 1.0, -1.0)):
        _ctc_result(results, "fbank", "10min", seed, 80.0 + noise, 80.0)
        _ctc_result(results, "mfcc", "10min", seed, 78.0 + noise, 78.0)
        _ctc_result(results, "wavenet_vq", "10min", seed, 60.0 + noise, 61.0)  # 25 % better than fbank
        _ctc_result(results, "wavenet_vq_nojitter", "10min", seed, 70.0 + noise, 70.0)
        _ctc_result(results, "cpc", "10min", seed, 65.0 + noise, 65.0)
    # train-10h (ctc.selected): one seed, only the WaveNet-AE chosen on train-10min's dev
    _ctc_result(results, "fbank", "10h", 0, 50.0, 50.0)
    _ctc_result(results, "wavenet_vq", "10h", 0, 45.0, 45.0)
    _analysis(results, "abx", "mfcc", {"features": {"within": 12.0, "across": 24.0}})
    _analysis(results, "abx", "wavenet_vq", {"bn": {"within": 9.0, "across": 13.0}})  # more than half of 24
    _analysis(results, "probes", "wavenet_vq", {
        "enc": {"phone": {"accuracy": 50.0, "majority_baseline": 20.0}, "speaker": {"accuracy": 80.0, "majority_baseline": 7.0}},
        "bn": {"phone": {"accuracy": 47.0}, "speaker": {"accuracy": 30.0}}})
    runs = load_ctc(results / "ctc")
    assert sorted(len(v) for v in runs.values()) == [1] * 2 + [3] * 5

    path = write_report(results, spec, 1.0, hub)
    text = Path(path).read_text()
    assert "| wavenet_vq | 60.0 ± 1.0 (n=3) |" in text and "| fbank | 80.0 ± 1.0 (n=3) |" in text
    assert "| wavenet_vq | bn | 9.0 | 13.0 |" in text
    lines = findings({n: {"bottleneck": b} for n, b in (("wavenet_vq", "vq"), ("wavenet_vq_nojitter", "vq"), ("cpc", None))},
                     runs, {"wavenet_vq": {"metrics": {"enc": {"phone": {"accuracy": 50.0}, "speaker": {"accuracy": 80.0}},
                                                       "bn": {"phone": {"accuracy": 47.0}, "speaker": {"accuracy": 30.0}}}}},
                     {"mfcc": {"metrics": {"features": {"across": 24.0}}}, "wavenet_vq": {"metrics": {"bn": {"across": 13.0}}}},
                     ["10min", "10h"])
    cer = next(l for l in lines if "filterbanks by ≥ 20 % relative CER on train-10min" in l)
    assert "**holds**" in cer and "+25.0 % relative" in cer and "wavenet_vq (best on dev)" in cer
    cer = next(l for l in lines if "filterbanks by ≥ 20 % relative CER on train-10h" in l)
    assert "**does not hold**" in cer and "wavenet_vq (chosen on train-10min's dev) 45.0 vs fbank 50.0" in cer
    named = findings({"wavenet_vq": {"bottleneck": "vq"}, "wavenet_vq_nojitter": {"bottleneck": "vq"}}, runs, {}, {},
                     ["10min", "10h"], chosen_on="1h")  # ctc.best_wavenet_on, when the config names it
    assert "wavenet_vq (chosen on train-1h's dev) 45.0" in next(l for l in named if "train-10h" in l)
    assert "**does not hold**" in next(l for l in lines if "ABX at the VQ bottleneck" in l)
    assert "**holds**" in next(l for l in lines if "speaker accuracy at bn" in l)
    assert "**holds**" in next(l for l in lines if "jitter helps" in l)
    assert "wavenet_vq 60.0 < cpc 65.0 < wavenet_vq_nojitter 70.0 < mfcc 78.0 < fbank 80.0" in next(l for l in lines if "Ranking" in l)


def test_topline_check_and_phone_table(tmp_path):
    """The harness check: the supervised topline must beat filterbanks by 30 % relative in CER and in PER;
    the report labels it and gives phones their own table, and it is never ranked with unsupervised rows."""
    results, hub = tmp_path / "results", tmp_path / "hub"
    spec = {"corpus": {"hours": 4.0, "seed": 0}, "baselines": ["fbank"],
            "pretrain": {"upstreams": {"topline": {}, "cpc": {}}}}
    for name, model_type in (("topline", "phone_topline"), ("cpc", "cpc")):
        (hub / name).mkdir(parents=True)
        (hub / name / "results.json").write_text(json.dumps({"model_type": model_type, "steps": 10, "total_flops": 3e13}))
    for seed in (0, 1):
        _ctc_result(results, "fbank", "10min", seed, 80.0, 80.0)
        _ctc_result(results, "topline", "10min", seed, 50.0, 50.0)  # 37.5 % better in CER
        _ctc_result(results, "cpc", "10min", seed, 70.0, 70.0)
        for name, per in (("fbank", 60.0), ("topline", 45.0), ("cpc", 55.0)):  # 25 % better in PER: not enough
            path = results / "ctc_phone" / name / "10min" / f"seed{seed}" / "results.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"metrics": {"test": {"per": per / 100}}, "seed": seed}))
    pretrained = {"topline": {"model_type": "phone_topline"}, "cpc": {"model_type": "cpc"}}
    lines = topline_findings(pretrained, load_ctc(results / "ctc"), load_ctc(results / "ctc_phone"), ["10min"])
    cer, per = (next(l for l in lines if f"relative {m} on" in l) for m in ("CER", "PER"))
    assert "**holds**" in cer and "+37.5 % relative (n=2 seeds)" in cer
    assert "**does not hold**" in per and "45.0 vs fbank 60.0" in per
    text = Path(write_report(results, spec, 1.0, hub)).read_text()
    assert "## Frozen CTC, test PER (%; phones)" in text and "| topline (supervised topline) | 45.0 ± 0.0 (n=2) |" in text
    ranking = next(l for l in text.splitlines() if "Ranking" in l)
    assert "cpc 70.0 < fbank 80.0" in ranking and "topline" not in ranking


def test_layer_mix_table_says_whether_the_mix_beats_the_default_point(tmp_path):
    results, hub = tmp_path / "results", tmp_path / "hub"
    spec = {"corpus": {"hours": 4.0, "seed": 0}, "baselines": ["fbank"], "pretrain": {"upstreams": {"wavenet_vq": {}, "cpc": {}}}}
    for seed in (0, 1):
        _ctc_result(results, "fbank", "10min", seed, 80.0, 80.0)
        _ctc_result(results, "wavenet_vq", "10min", seed, 60.0 + 2 * seed, 61.0)  # seed 0: 60.0, seed 1: 62.0
        _ctc_result(results, "cpc", "10min", seed, 65.0, 65.0)
    for name, cer, weights in (("wavenet_vq", 58.5, {"enc": 0.6, "proj": 0.2, "bn": 0.1, "cond": 0.1}),
                               ("cpc", 66.0, {"enc": 0.3, "ctx": 0.7})):
        path = results / "ctc_mix" / name / "10min" / "seed0" / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"metrics": {"test": {"cer": cer / 100}}, "seed": 0, "probe_point": "weighted_sum",
                                    "layer_weights": weights}))
    text = Path(write_report(results, spec, 1.0, hub)).read_text()
    assert "## Learned layer mix vs default probe point (test CER)" in text
    # Against the default point's run of the same seed (60.0 at seed 0, not the two seeds' 61.0).
    assert "| wavenet_vq | train-10min | default | 60.0 | 58.5 | -1.5 | enc (0.60) |" in text
    assert "| cpc | train-10min | default | 65.0 | 66.0 | +1.0 | ctx (0.70) |" in text
    assert ("The learned mix beats the best single point (the default probe point, same seeds) in test CER for 1 of 2: "
            "wavenet_vq on train-10min (58.5 vs 60.0, n=1); not for cpc on train-10min (66.0 vs 65.0, n=1).") in text
    assert "fbank | train-10min" not in text


from recipe_modules import load_recipe as _recipe  # noqa: E402


def test_ctc_stage_adds_the_learned_mix_for_upstreams_with_several_probe_points(tmp_path):
    import argparse

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "corpus": {"hours": 1.0, "seed": 0}, "baselines": ["fbank"],
        "pretrain": {"upstreams": {"cpc": {"config": "x.yaml"}, "one_point": {"config": "x.yaml"}}},
        "ctc": {"config": "configs/ctc/frozen_tiny.yaml", "seeds": [0, 1], "subsets": {"10min": {"max_steps": 100}},
                "mixed": {"subsets": ["10min"], "seeds": [0]}}}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")
    for name, points in (("cpc", ["enc", "ctx"]), ("one_point", ["features"])):
        (tmp_path / "hub" / name).mkdir(parents=True)
        (tmp_path / "hub" / name / "config.json").write_text(json.dumps({"probe_points": points}))
    args = argparse.Namespace(config=str(config), scale=1.0, data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "runs"),
                              results_dir=str(tmp_path / "results"), hub_dir=str(tmp_path / "hub"), jobs=1)
    labels = [task.label for task in _recipe("study").Study(args).tasks("ctc")]  # no result yet: every run is a task
    assert [label for label in labels if label.startswith("ctc_mix")] == ["ctc_mix cpc train-10min seed 0"]  # not fbank, nor one_point
    assert sorted(label for label in labels if not label.startswith("ctc_mix")) == [
        f"ctc {name} train-10min seed {seed}" for name in ("cpc", "fbank", "one_point") for seed in (0, 1)]


def test_selected_subsets_run_their_rows_after_the_ctc_stage_and_fine_tune_from_them(tmp_path):
    """train-10h (``ctc.selected``) is not in the ``ctc`` stage; ``ctc_selected`` runs its representations and seeds
    only, ``best_wavenet`` being the WaveNet-AE with the lowest mean dev CER on the largest full subset; a fine-tuning
    run on train-10h starts from exactly that frozen run (same key), with its subset's own budget."""
    import argparse

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "corpus": {"hours": 14.0, "seed": 0}, "baselines": ["fbank", "mfcc"],
        "pretrain": {"upstreams": {name: {"config": "x.yaml"} for name in ("wavenet_a", "wavenet_b", "cpc")}},
        "ctc": {"config": "configs/ctc/frozen_tiny.yaml", "seeds": [0, 1],
                "subsets": {"10min": {"max_steps": 100}, "1h": {"max_steps": 200}, "10h": {"max_steps": 300, "eval_steps": 50}},
                "selected": {"subsets": ["10h"], "seeds": [0], "representations": ["fbank", "best_wavenet"]},
                "finetune": {"config": "configs/ctc/finetune_tiny.yaml", "max_steps": 100, "upstreams": ["best_wavenet"],
                             "subsets": {"1h": {}, "10h": {"seeds": [0], "max_steps": 150}}}}}, sort_keys=False))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")
    for name in ("wavenet_a", "wavenet_b", "cpc"):
        (tmp_path / "hub" / name).mkdir(parents=True)
        (tmp_path / "hub" / name / "config.json").write_text(json.dumps({"probe_points": ["features"]}))
    args = argparse.Namespace(config=str(config), scale=1.0, data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "runs"),
                              results_dir=str(tmp_path / "results"), hub_dir=str(tmp_path / "hub"), jobs=1)
    study = _recipe("study").Study(args)
    said = []
    study.say = said.append
    labels = [task.label for task in study.tasks("ctc")]
    assert len(labels) == 5 * 2 * 2 and not [label for label in labels if "train-10h" in label]
    with pytest.raises(RuntimeError, match="no frozen CTC result of a WaveNet-AE on train-1h"):
        study.tasks("ctc_selected")  # best_wavenet needs the ctc stage's results
    # wavenet_b has the lower mean dev CER on train-1h (the largest subset every representation runs), not on 10min.
    for name, dev_10min, dev_1h in (("wavenet_a", 40.0, 50.0), ("wavenet_b", 45.0, 48.0)):
        for seed in (0, 1):
            _ctc_result(tmp_path / "results", name, "10min", seed, 60.0, dev_10min)
            _ctc_result(tmp_path / "results", name, "1h", seed, 60.0, dev_1h)
    selected = plan.selected_ctc_runs(study.spec, study.hub, study.results, study.data_dir, 1.0, said.append)
    assert [(run.name, run.subset, run.seed, run.max_steps, run.training) for run in selected] == [
        (name, "10h", 0, 300, {"eval_steps": 50}) for name in ("fbank", "wavenet_b")]
    assert "ctc_selected: best WaveNet-AE on dev (frozen, train-1h): wavenet_b" in said
    tuned = plan.finetune_runs(study.spec, study.hub, study.results, study.data_dir, 1.0, said.append)
    assert [(run.name, run.subset, run.seed, run.max_steps) for run in tuned] == [
        ("wavenet_b", "1h", 0, 100), ("wavenet_b", "1h", 1, 100), ("wavenet_b", "10h", 0, 150)]
    base = study.key()
    assert tuned[2].init_from.key(base) == selected[1].key(base)  # the selected stage's run is the one it starts from
    study.spec["ctc"]["finetune"]["subset"] = "1h"  # a config written before several subsets: named, not ignored
    with pytest.raises(ValueError, match=r"ctc.finetune.subset is now ctc.finetune.subsets, a mapping: subsets: \{1h: \{\}\}"):
        plan.finetune_runs(study.spec, study.hub, study.results, study.data_dir, 1.0, said.append)
    study.spec["ctc"]["selected"]["representations"] = ["fbank", "hubert"]
    with pytest.raises(ValueError, match="ctc.selected.representations: hubert is not a representation"):
        plan.selected_ctc_runs(study.spec, study.hub, study.results, study.data_dir, 1.0, said.append)


def test_a_resumed_study_on_the_committed_results_reruns_nothing():
    """docs/study and hub/ hold the study's results with the keys they were computed under: a resumed
    ``make study`` must find every task done (a key changed by code, or a config file edited without rerunning
    the study, would retrain or re-analyse; scripts/check_study_resume.py names what)."""
    spec = importlib.util.spec_from_file_location("check_study_resume", ROOT / "scripts" / "check_study_resume.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    said = []
    # The corpus the committed results came from (its manifest, which the study keeps beside them): its subsets.
    pending = check.pending_tasks(str(ROOT / "configs" / "study" / "default.yaml"), ROOT / "docs" / "study", ROOT / "hub",
                                  ROOT / "docs" / "study" / "corpus.json", say=said.append)
    corpus = json.loads((ROOT / "docs" / "study" / "corpus.json").read_text())
    config = yaml.safe_load((ROOT / "configs" / "study" / "default.yaml").read_text())["corpus"]
    assert (corpus["hours_requested"], corpus["seed"]) == (config["hours"], config["seed"])
    assert pending == {}, "\n".join(said)
    assert sum("pretrain" in line and ": done" in line for line in said) == 8


def test_a_launch_runs_the_recipe_as_the_accelerate_cli_would(tmp_path, monkeypatch):
    """The study computes ``accelerate launch``'s command and environment in-process (launch_command): the recipe
    sees the same variables and arguments as under the CLI."""
    import subprocess
    import sys

    from repr_asr.study import launch

    script = tmp_path / "env.py"
    script.write_text("import json, os, sys\n"
                      "print(json.dumps({'argv': sys.argv[1:], **{k: v for k, v in os.environ.items() if k.startswith(('ACCELERATE', 'OMP', 'KMP'))}}))\n")
    monkeypatch.setattr(launch, "RECIPES", tmp_path)
    command, env = launch.launch_command("env.py", ["--seed", 3], threads=1)
    ours = json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout)
    cli = [str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1", str(script), "--seed", "3"]
    theirs = json.loads(subprocess.run(cli, capture_output=True, text=True, check=True).stdout)
    assert ours == theirs and ours["OMP_NUM_THREADS"] == "1" and ours["argv"] == ["--seed", "3"]


def test_a_failed_task_is_named_with_its_log_tail_and_the_others_finish(tmp_path):
    from repr_asr.study import StageFailedError, Task, launch_recipe, run_parallel

    log = tmp_path / "logs" / "bad.log"
    tasks = [Task("bad pretraining", lambda: launch_recipe("pretrain.py", ["--config", tmp_path / "missing.yaml", "--output_dir", tmp_path / "run"],
                                                                   log, threads=1)),
             Task("good", lambda: (tmp_path / "good").write_text("ran"))]
    said = []
    with pytest.raises(StageFailedError) as failure:
        run_parallel(tasks, jobs=1, say=said.append)  # one at a time, in order: "good" runs after "bad" failed
    assert (tmp_path / "good").read_text() == "ran"
    message = str(failure.value)
    assert message.startswith("1 of 2 task(s) failed:\nbad pretraining: pretrain.py failed (log: ")
    assert "missing.yaml" in message and "missing.yaml" in log.read_text()  # the log's tail says what went wrong
    assert said == [f"FAILED: {message.split(chr(10), 1)[1]}"]


@pytest.mark.needs_synthesiser
def test_study_end_to_end_resumes_and_exports_loadable_upstreams(tmp_path, labeled_corpus_dir, capsys):
    """A miniature study: a 0.25 h corpus, one tiny WaveNet-VQ, fbank, frozen CTC on train-10min, probes,
    ABX and codes; a second run finds every stage done; the export loads with AutoModel."""
    import shutil

    import repr_asr  # noqa: F401
    from transformers import AutoModel

    # The session's corpus of the same hours and seed: the corpus stage finds every item synthesised (a copy,
    # as the stage may write into it).
    shutil.copytree(labeled_corpus_dir, tmp_path / "data")
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "corpus": {"hours": 0.25, "seed": 5},
        "pretrain": {"flops": 2e9, "upstreams": {"wavenet_vq": {
            "config": "configs/pretrain/wavenet_vq_tiny.yaml",
            "overrides": {"model.encoder_hidden_size": 16, "model.latent_dim": 8, "model.codebook_size": 8,
                          "model.residual_channels": 8, "model.gate_channels": 8, "model.skip_channels": 8,
                          "model.decoder_output_channels": 8, "model.conditioning_channels": 8, "model.decoder_layers": 2,
                          "data.crop_samples": 1600, "training.batch_size": 2, "training.warmup_steps": 0}}}},
        "baselines": ["fbank"],
        "ctc": {"config": "configs/ctc/frozen_tiny.yaml", "seeds": [0],
                "subsets": {"10min": {"max_steps": 100}, "1h": {"max_steps": 100}},
                "finetune": {"config": "configs/ctc/finetune_tiny.yaml", "subsets": {"1h": {}}, "max_steps": 100, "upstreams": ["best_wavenet"]}},
        "probes": {"split": "test", "tasks": ["phone", "speaker"], "hidden_size": 16, "epochs": 2, "patience": 1, "max_utterances": 20},
        "abx": {"split": "test", "max_utterances": 20},
        "codes": {"split": "test", "examples": 1},
        "resynthesis": {"upstreams": ["wavenet_vq"], "num_utterances": 1, "max_seconds": 0.1},
    }))
    dirs = ["--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "runs"),
            "--results_dir", str(tmp_path / "results"), "--hub_dir", str(tmp_path / "hub")]
    study = _recipe("study")
    study.main(["--config", str(config), "--scale", "0.5", *dirs])
    first = capsys.readouterr().out
    results = tmp_path / "results"
    assert "finetune: the corpus has no train-1h; skipped" in first  # a 12-minute pool has train-10min only
    assert json.loads((results / "corpus.json").read_text())["hours_requested"] == 0.25  # the corpus they came from
    hub = tmp_path / "hub" / "wavenet_vq"
    exported = json.loads((hub / "results.json").read_text())
    assert exported["study"]["flops"] == 1e9 and exported["steps"] >= 1 and exported["total_flops"] == exported["steps"] * exported["flops_per_step"]
    model = AutoModel.from_pretrained(hub)
    assert model.config.codebook_size == 8 and (hub / "fingerprint.json").exists()
    for name in ("fbank", "wavenet_vq"):
        run = json.loads((results / "ctc" / name / "10min" / "seed0" / "results.json").read_text())
        assert run["study"]["scale"] == 0.5 and run["steps"] == 100 and "cer" in run["metrics"]["test"]
        assert (results / "probes" / name / "results.json").exists() and (results / "abx" / name / "results.json").exists()
    assert (results / "codes" / "wavenet_vq" / "results.json").exists() and not (results / "codes" / "fbank").exists()
    report = (results / "README.md").read_text()
    assert "## Frozen CTC, test CER (%; characters)" in report and "| wavenet_vq |" in report and "## VQ codes (test)" in report
    codes = json.loads((results / "codes" / "wavenet_vq" / "results.json").read_text())
    assert (results / "codes" / "wavenet_vq" / codes["figures"]["code_phone"]).exists() and len(codes["figures"]) == 2
    audio = json.loads((results / "resynthesis" / "wavenet_vq" / "results.json").read_text())
    assert {f["kind"] for f in audio["files"]} >= {"original", "resynthesized"} and not (results / "resynthesis" / "fbank").exists()
    assert all((results / "resynthesis" / "wavenet_vq" / f["path"]).exists() for f in audio["files"])
    page = (results / "report.html").read_text()
    assert "<audio" in page and "The VQ codes" in page and "Recognition with little labeled data" in page

    study.main(["--config", str(config), "--scale", "0.5", *dirs])  # everything done: nothing relaunched
    second = capsys.readouterr().out
    assert "pretrain wavenet_vq: done" in second and "train-10min seed 0" not in second and "probes fbank" not in second


def test_analysis_applies_only_where_it_has_something_to_measure(tmp_path):
    from repr_asr.evaluation.analysis import applies, run_analysis

    for name, bottleneck in (("wavenet_vq", "vq"), ("wavenet_vae", "vae"), ("cpc", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"bottleneck": bottleneck} if bottleneck else {"model_type": "cpc"}))
    vq, vae, cpc = (str(tmp_path / name) for name in ("wavenet_vq", "wavenet_vae", "cpc"))
    assert applies("codes", vq, {}) and not applies("codes", vae, {}) and not applies("codes", "fbank", {})
    listed = {"upstreams": ["wavenet_vq", "cpc"]}
    assert applies("resynthesis", vq, listed) and not applies("resynthesis", vae, listed) and not applies("resynthesis", cpc, listed)
    assert applies("probes", "fbank", {}) and applies("abx", cpc, {})
    assert run_analysis("codes", vae, "builtin:nowhere", {}, None, str(tmp_path), str(tmp_path)) is None
    with pytest.raises(ValueError, match="unknown analysis 'spectrum'"):
        run_analysis("spectrum", cpc, "builtin:nowhere", {}, None, str(tmp_path), str(tmp_path))


def test_demo_corpus_shares_no_held_out_sentence_or_speaker_with_the_study_corpus():
    """The demo evaluates hub/ checkpoints pretrained on the study's corpus: its dev and test sentences and
    speakers must be absent from that corpus's training part (corpora of any size built with one seed draw
    the same sentence stream, so the demo's held-out sentences were the study's training ones at seed 0)."""
    from repr_asr.data.builtin import plan_corpus

    def corpus(name):
        spec = yaml.safe_load((ROOT / "configs" / "study" / name).read_text())["corpus"]
        return plan_corpus(spec["hours"], spec["seed"])

    demo, study = corpus("demo.yaml"), corpus("default.yaml")
    trained_texts = {u.text for u in study.utterances if u.split == "train"}
    trained_speakers = {s.speaker_id for s in study.speakers if s.split == "train"}
    for split in ("dev", "test"):
        held_out = [u for u in demo.utterances if u.split == split]
        assert held_out
        assert not [u.text for u in held_out if u.text in trained_texts], split
        assert not {u.speaker_id for u in held_out} & trained_speakers, split
