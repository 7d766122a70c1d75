"""Every number is right, or the run refuses: pretraining as a user runs it, through the recipe.

- resume after SIGKILL is bit-exact for every shipped tiny config (VQ revival, k-means, jitter on);
- two CPU processes at batch B/2 compute what one process at batch B does, on every upstream;
- non-finite training stops with a clear message and writes no result;
- launch flags take effect or stop the run; refused runs leave the old run's files alone;
- undecodable files are skipped, named and counted (or stop the run with --strict);
- FLOPs per step are measured and can set the step budget.

Models are the shipped tiny configs made narrower with overrides (their tricks stay as shipped);
the corpus is 8 short FLAC utterances of 2 speakers written into tmp_path.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TINY_CONFIGS = sorted((ROOT / "configs" / "pretrain").glob("*_tiny.yaml"))
# Narrower than shipped, same tricks (VQ EMA, k-means, dead-code revival, jitter, masking, negatives),
# and the same LibriSpeech-layout writer as the recipe's own tests.
from test_pretrain_recipe import SHRINK, tone_librispeech  # noqa: E402


def _corpus(root: Path) -> Path:
    return tone_librispeech(root, train_utterances=4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("LibriSpeech"))


def _args(config: Path, corpus: Path, out: Path, *extra, shrink=True) -> list[str]:
    from repr_asr.training.config import model_config_keys

    model_type = yaml.safe_load(config.read_text())["model_type"]
    valid = set(model_config_keys(model_type))
    overrides = SHRINK.get(model_type, {}) if shrink else {}
    model = [x for k, v in overrides.items() if k in valid for x in (f"--model.{k}", json.dumps(v))]
    return [
        "--config", str(config), "--data", f"librispeech:{corpus}", "--output_dir", str(out),
        "--training.batch_size", "2", "--training.log_steps", "1", "--training.warmup_steps", "1",
        "--data.crop_samples", "3200", "--data.cache_audio", "true", *model, *extra,
    ]


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE", "RANK", "LOCAL_RANK"))}
    return {**env, "OMP_NUM_THREADS": "1", "REPR_ASR_CACHE": str(tmp_path / "cache"), **extra}


def _run(cmd, tmp_path, **env):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=_env(tmp_path, **env))


def _start(cmd, tmp_path, **env) -> subprocess.Popen:
    """``cmd`` started in the background (``_finish`` waits for it): the suite runs one test at a time, so a test
    with two independent runs has a core for each."""
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path, **env))


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _recipe(*args) -> list[str]:
    return [sys.executable, "recipes/pretrain.py", *args]


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def kill_after_checkpoint(cmd: list, run: Path, step: int, tmp_path) -> Path:
    """Start ``cmd`` and SIGKILL it as soon as ``run``'s checkpoint ``step`` is sealed (no clean-up of any kind,
    as a crash or the OOM killer); returns that checkpoint's trainer_state.json."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sealed = run / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json"
    deadline = time.time() + 300
    while not sealed.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert sealed.exists() and not (run / "final").exists(), f"the run was not killed between checkpoint {step} and the end"
    return sealed


# ------------------------------------------------------------------------------------------------
# Exact resume, every shipped tiny config


# The tiny configs whose state or draws differ: the VQ (EMA statistics, k-means flag, revival from recent
# outputs, jitter), the VAE (its noise), CPC (negatives), masked reconstruction (masks, dropout) and the topline
# (crops carrying phone labels). wavenet_ae_tiny has nothing the VQ and VAE runs do not already carry.
RESUME_CONFIGS = [p for p in TINY_CONFIGS if p.stem != "wavenet_ae_tiny"]


def test_resume_configs_cover_every_shipped_model_type():
    assert {yaml.safe_load(p.read_text())["model_type"] for p in RESUME_CONFIGS} == \
        {yaml.safe_load(p.read_text())["model_type"] for p in TINY_CONFIGS}
    assert {yaml.safe_load(p.read_text())["model"].get("bottleneck") for p in RESUME_CONFIGS} >= {"vq", "vae"}


@pytest.mark.parametrize("config", RESUME_CONFIGS, ids=lambda p: p.stem)
def test_resume_after_sigkill_is_bit_exact(config, corpus, tmp_path):
    args = ["--max_steps", "10", "--save_steps", "4"]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    # The uninterrupted run goes on the other core meanwhile (one thread each, as _env sets): nothing is shared.
    uninterrupted = _start(_recipe(*_args(config, corpus, reference, *args)), tmp_path)
    kill_after_checkpoint(_recipe(*_args(config, corpus, killed, *args)), killed, 4, tmp_path)

    resumed = _run(_recipe(*_args(config, corpus, killed, *args, "--resume")), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = _finish(uninterrupted)
    assert done.returncode == 0, done.stderr[-3000:]

    got, want = _weights(killed / "final"), _weights(reference / "final")
    assert sorted(got) == sorted(want)
    for name in want:  # parameters and every buffer (VQ EMA, usage, recent outputs, seeds)
        assert torch.equal(got[name], want[name]), f"{config.stem}: {name} differs after resume"
    steps = [m for m in _metrics(reference) if "loss" in m]
    assert [m["loss"] for m in _metrics(killed) if "loss" in m] == [m["loss"] for m in steps]
    if yaml.safe_load(config.read_text())["model"].get("vq_dead_code_threshold", 0) > 0:
        # The resumed part of the run really exercises revival from the saved recent outputs.
        assert sum(m.get("vq_revived_codes", 0) for m in steps if m["step"] > 4) > 0


# ------------------------------------------------------------------------------------------------
# Two processes = one process at the same global batch


TWO_PROCESS_CASES = {
    # VQ with every trick on (EMA, k-means init, dead-code revival) and jitter.
    "wavenet_vq_tiny": [],
    # Negatives from the example's own utterance: with "speaker" / "batch" the pool is the process's batch.
    "cpc_tiny": ["--model.negative_sampling", "utterance"],
    # Dropout draws from each process's own stream (seed + rank): off for this comparison.
    "masked_recon_tiny": ["--model.hidden_dropout", "0.0", "--model.attention_dropout", "0.0"],
}


@pytest.mark.parametrize("name", sorted(TWO_PROCESS_CASES))
def test_two_processes_equal_one_at_the_same_global_batch(name, tmp_path):
    corpus = _corpus(tmp_path / "LibriSpeech")
    config = ROOT / "configs" / "pretrain" / f"{name}.yaml"
    common = ["--max_steps", "6", "--save_steps", "0", "--training.max_grad_norm", "0", *TWO_PROCESS_CASES[name]]
    # The one-process run starts first and overlaps the launcher's start-up (one thread per process).
    single = _start(_recipe(*_args(config, corpus, tmp_path / "one", *common, "--training.batch_size", "4")), tmp_path)
    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    two = _run([*launcher, "recipes/pretrain.py", *_args(config, corpus, tmp_path / "two", *common, "--training.batch_size", "2")],
               tmp_path, ACCELERATE_USE_CPU="true")
    one = _finish(single)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]

    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["num_processes"] == 2 and results["device"] == "cpu"
    got, want = _weights(tmp_path / "two" / "final"), _weights(tmp_path / "one" / "final")
    for key in want:
        if want[key].is_floating_point():
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-4, msg=f"{name}: {key}")
        else:
            assert torch.equal(got[key], want[key]), f"{name}: {key}"
    losses_one = [m["loss"] for m in _metrics(tmp_path / "one") if "loss" in m]
    losses_two = [m["loss"] for m in _metrics(tmp_path / "two") if "loss" in m]
    np.testing.assert_allclose(losses_two, losses_one, rtol=0, atol=1e-4)


def test_example_seeds_differ_between_examples_and_epochs(corpus):
    from repr_asr.data import load_corpus
    from repr_asr.data.crops import RandomCropDataset
    from repr_asr.modules.randomness import example_rand

    split = load_corpus(f"librispeech:{corpus}")["pretrain"]
    crops = RandomCropDataset(split, crop_samples=3200, seed=0)
    seeds = [crops[i]["example_seed"] for i in range(len(crops))]
    crops.set_epoch(1)
    seeds += [crops[i]["example_seed"] for i in range(len(crops))]
    assert len(set(seeds)) == len(seeds)
    # An example's draws are its own: the same whatever batch it is in, different from its neighbours'.
    batch = torch.tensor(seeds[:4])
    together = example_rand(batch, (4, 50), "jitter")
    alone = torch.cat([example_rand(batch[i : i + 1], (1, 50), "jitter") for i in range(4)])
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1])
    assert not torch.equal(example_rand(batch, (4, 50), "jitter"), example_rand(batch, (4, 50), "vae"))


# ------------------------------------------------------------------------------------------------
# Non-finite training


@pytest.mark.parametrize("config", ["wavenet_vq_tiny", "masked_recon_tiny"])
def test_nonfinite_training_stops_and_writes_no_result(config, corpus, tmp_path):
    out = tmp_path / "run"
    cfg = ROOT / "configs" / "pretrain" / f"{config}.yaml"
    proc = _run(_recipe(*_args(cfg, corpus, out, "--max_steps", "12", "--save_steps", "1",
                              "--training.learning_rate", "1e12", "--training.max_grad_norm", "0",
                              "--training.max_nonfinite_steps", "2")), tmp_path)
    assert proc.returncode != 0
    assert "non-finite" in proc.stderr and "max_nonfinite_steps" in proc.stderr
    assert not (out / "final").exists() and not (out / "results.json").exists()
    records = [m for m in _metrics(out) if "nonfinite_steps" in m]
    assert records[-1]["nonfinite_steps"] == 3  # two skipped, the third in a row stops the run
    # What was kept is finite, and resumable.
    from repr_asr.training import latest_checkpoint

    path, _ = latest_checkpoint(out / "checkpoints")
    for name, tensor in load_file(str(path / "model.safetensors")).items():
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), name


# ------------------------------------------------------------------------------------------------
# Launch flags and refused runs


def test_launcher_flags_take_effect_or_stop(corpus, tmp_path):
    accelerate = str(Path(sys.executable).parent / "accelerate")
    cfg = ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"
    # --cpu --num_processes 2 would silently run one process: the run stops and says how to get two.
    # (The two launches are independent: each on a core of its own.)
    refused = _start([accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                      "--dynamo_backend", "no", "recipes/pretrain.py", *_args(cfg, corpus, tmp_path / "cpu2", "--max_steps", "1")], tmp_path)
    # --mixed_precision bf16 on the launcher wins over the YAML's "no", and what ran is recorded.
    out = tmp_path / "bf16"
    proc = _run([accelerate, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "bf16",
                 "--dynamo_backend", "no", "recipes/pretrain.py", *_args(cfg, corpus, out, "--max_steps", "1")], tmp_path)
    stopped = _finish(refused)
    assert stopped.returncode != 0 and "--num_processes 2" in stopped.stderr and "ACCELERATE_USE_CPU=true" in stopped.stderr
    assert not (tmp_path / "cpu2" / "final").exists()
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mixed_precision"] == "bf16" and results["num_processes"] == 1
    assert "mixed precision `bf16`" in (out / "final" / "README.md").read_text()


def test_launcher_and_config_precisions_that_disagree_stop():
    from repr_asr.training import ConfigError
    from repr_asr.training.trainer import resolve_mixed_precision

    assert resolve_mixed_precision("no", "bf16") == "bf16"
    assert resolve_mixed_precision("bf16", "no") == "bf16"
    assert resolve_mixed_precision("no", "no") == "no"
    with pytest.raises(ConfigError, match="fp16.*bf16"):
        resolve_mixed_precision("bf16", "fp16")


def test_a_refused_run_leaves_the_old_one_alone(corpus, tmp_path):
    cfg = ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"
    out = tmp_path / "run"
    first = _run(_recipe(*_args(cfg, corpus, out, "--max_steps", "2", "--save_steps", "1")), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: p.read_bytes() for p in [out / "config.yaml", out / "metrics.jsonl", out / "results.json"]}
    again = _run(_recipe(*_args(cfg, corpus, out, "--max_steps", "5", "--seed", "3")), tmp_path)
    assert again.returncode != 0 and "--resume" in again.stderr
    assert {p: p.read_bytes() for p in before} == before


# ------------------------------------------------------------------------------------------------
# Broken files in a corpus


def test_undecodable_files_are_skipped_named_and_counted(tmp_path):
    corpus = _corpus(tmp_path / "LibriSpeech")
    truncated = corpus / "train-clean-100" / "11" / "100" / "11-100-0001.flac"
    truncated.write_bytes(truncated.read_bytes()[: len(truncated.read_bytes()) // 3])
    nan_wav = corpus / "train-clean-100" / "12" / "200" / "12-200-0002.flac"
    cfg = ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"
    out = tmp_path / "run"
    proc = _run(_recipe(*_args(cfg, corpus, out, "--max_steps", "6", "--data.cache_audio", "false")), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "11-100-0001" in proc.stderr
    listed = (out / "skipped_examples.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == ["11-100-0001"]
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["skipped_examples"] == 1
    assert nan_wav.exists()

    strict = _run(_recipe(*_args(cfg, corpus, tmp_path / "strict", "--max_steps", "6", "--strict")), tmp_path)
    assert strict.returncode != 0 and "11-100-0001" in strict.stderr
    assert not (tmp_path / "strict" / "final").exists()


# ------------------------------------------------------------------------------------------------
# Equal compute, measured


def test_flops_per_step_are_measured_and_set_the_budget(corpus, tmp_path):
    cfg = ROOT / "configs" / "pretrain" / "cpc_tiny.yaml"
    first = _run(_recipe(*_args(cfg, corpus, tmp_path / "a", "--max_steps", "2")), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    per_step = results["flops_per_step"]
    assert per_step > 1e6 and results["total_flops"] == 2 * per_step
    assert f"{per_step:.4g} FLOPs per step" in (tmp_path / "a" / "final" / "README.md").read_text()

    budget = 3.5 * per_step
    second = _run(_recipe(*_args(cfg, corpus, tmp_path / "b", "--training.flops_budget", str(budget))), tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["steps"] == 3 and results["flops_per_step"] == per_step


# ------------------------------------------------------------------------------------------------
# One writer per run folder (repr_asr.run_lock)


HOLDER = """
import sys
from repr_asr.run_lock import claim_run_folder, release_run_folder

claim_run_folder(sys.argv[1])
print("held", flush=True)
sys.stdin.read()  # until the test closes this process's stdin
release_run_folder(sys.argv[1])
"""


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A run folder that another live process holds: (folder, that process)."""
    tmp = tmp_path_factory.mktemp("held")
    folder = tmp / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, env=_env(tmp), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.stdin.close()
    proc.wait(timeout=60)
    assert not (folder / ".run.lock").exists()  # its holder released it


def _holder(proc) -> str:
    import socket

    return f"pid {proc.pid} on {socket.gethostname()}, started "


def test_a_run_folder_in_use_stops_every_writer_at_once(held, corpus, tmp_path, monkeypatch):
    from repr_asr.evaluation.feature_export import export_features
    from repr_asr.run_lock import RunFolderInUseError, claim_run_folder
    from repr_asr.training import load_config, run_pretraining
    from repr_asr.downstream.ctc import load_ctc_config, run_finetune_ctc
    from recipe_modules import load_recipe
    from test_trainer import make_trainer, write_corpus

    folder, proc = held
    spec = f"librispeech:{corpus}"
    writers = {
        "pretraining": lambda: run_pretraining(load_config(ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml",
                                                           ["--data", spec]), folder),
        "CTC": lambda: run_finetune_ctc(load_ctc_config(str(ROOT / "configs" / "ctc" / "frozen_tiny.yaml"), {}), "fbank",
                                        str(folder)),
        "feature export": lambda: export_features("fbank", spec, folder, split="test", progress=False),
        "Trainer": lambda: make_trainer(write_corpus(tmp_path / "utterances", n=2), folder, max_steps=1).train(),
    }
    # Every analysis recipe holds its output folder too (repr_asr.evaluation.analysis_cli): it stops before it
    # writes items, features, WAVs or results.
    for recipe in ("abx", "probe", "speaker_id", "codes", "resynthesize"):
        writers[recipe] = lambda recipe=recipe: load_recipe(recipe).main(["--upstream", "fbank", "--data", spec,
                                                                      "--output_dir", str(folder)])
    for name, write in writers.items():
        with pytest.raises(RunFolderInUseError) as error:
            write()
        assert f"run folder {folder} is in use" in str(error.value) and _holder(proc) in str(error.value), name
    assert [p.name for p in folder.iterdir()] == [".run.lock"]  # none of them wrote anything
    # The other processes of a launched run never look at the lock: rank 0 holds it for all.
    monkeypatch.setenv("RANK", "1")
    assert claim_run_folder(folder) is False


def test_a_recipe_refused_a_folder_in_use_says_so_in_one_line(held, corpus, tmp_path):
    folder, proc = held
    refused = _run([sys.executable, "recipes/extract_features.py", "--upstream", "fbank", "--data", f"librispeech:{corpus}",
                    "--split", "test", "--output_dir", str(folder)], tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"extract_features.py: error: run folder {folder} is in use") and _holder(proc) in last


def test_a_stale_lock_does_not_block(corpus, tmp_path, caplog):
    import logging
    import socket

    from repr_asr.evaluation.feature_export import export_features
    from repr_asr.run_lock import LOCK_FILE, RunFolderInUseError, claim_run_folder, release_run_folder

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / LOCK_FILE
    record = {"host": socket.gethostname(), "started": "2024-01-01 00:00:00", "command": "recipes/pretrain.py ..."}
    lock.write_text(json.dumps({**record, "pid": dead}))  # left by a process killed with SIGKILL
    with caplog.at_level(logging.WARNING, logger="repr_asr.run_lock"):
        counts = export_features("fbank", f"librispeech:{corpus}", folder, split="test", max_utterances=1, progress=False)
    assert counts["written"] == 1 and not lock.exists()
    assert f"stale lock of a process that no longer runs (pid {dead} on" in caplog.text
    # A live process id that another process now has (it started at another time) holds nothing either.
    lock.write_text(json.dumps({**record, "pid": os.getppid(), "start_ticks": 1}))
    assert claim_run_folder(folder) is True
    release_run_folder(folder)
    assert not lock.exists()
    # A holder on another host cannot be checked from here: refused, naming the file to delete if it is gone.
    lock.write_text(json.dumps({**record, "pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunFolderInUseError, match=rf"pid 1 on elsewhere.*delete {lock}"):
        claim_run_folder(folder)


def test_user_input_errors_end_every_recipe_in_one_line(tmp_path):
    """A corpus that is not there: one line naming it and exit status 1, no traceback (pretrain.py caught only
    config, checkpoint and non-finite errors); every recipe's main guard goes through repr_asr.errors.run_recipe."""
    nowhere = tmp_path / "nowhere"
    proc = _run(_recipe("--config", str(ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"), "--data",
                        f"librispeech:{nowhere}", "--output_dir", str(tmp_path / "run")), tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pretrain.py: error: ") and str(nowhere) in last
    for recipe in sorted((ROOT / "recipes").glob("*.py")):
        guard = recipe.read_text().split('if __name__ == "__main__":', 1)[1]
        assert "run_recipe(main" in guard, recipe.name
