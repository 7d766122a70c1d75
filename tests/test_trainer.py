"""The shared training loop: config + overrides, LR schedules, metrics, checkpoints, exact resume, final export.

The model is a tiny real upstream (masked reconstruction: dropout + random masking, so resuming must
restore the RNG streams too); the data are random crops of FLAC files written into tmp_path.
"""

import ast
import json
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from datasets import Dataset

import repr_asr  # noqa: F401
from repr_asr.data.crops import RandomCropDataset, collate_crops
from repr_asr.training import (
    CheckpointError,
    ConfigError,
    PretrainDataConfig,
    Trainer,
    TrainingConfig,
    build_scheduler,
    latest_checkpoint,
    list_checkpoints,
    load_config,
    parse_overrides,
    pretraining_forward,
    verify_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TINY_MODEL = dict(
    n_mels=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, mask_span=3
)


# ------------------------------------------------------------------------------------------------
# Config and overrides


def _write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_and_overrides(tmp_path):
    cfg = _write_yaml(
        tmp_path / "c.yaml",
        """
        model_type: masked_recon
        model:
          hidden_size: 32
          num_attention_heads: 4
        data:
          crop_samples: 8000
        training:
          max_steps: 100
          learning_rate: 1e-3
        """,
    )
    run = load_config(
        cfg,
        ["--training.max_steps", "7", "--model.num_hidden_layers=2", "--seed", "3", "--data", "builtin:/x/y",
         "--data.cache_audio", "true", "--training.warmup_steps", "2", "--model.probe_points", "[input, layer_1]"],
    )
    assert run.model_type == "masked_recon"
    assert run.model == {"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2, "probe_points": ["input", "layer_1"]}
    assert run.training.max_steps == 7 and run.training.seed == 3 and run.training.warmup_steps == 2
    # "1e-3" is a string for PyYAML's YAML 1.1 resolver; the float field still gets a float.
    assert isinstance(run.training.learning_rate, float) and run.training.learning_rate == 1e-3
    assert run.data.spec == "builtin:/x/y" and run.data.cache_audio is True and run.data.crop_samples == 8000
    # The resolved config round-trips.
    run.save(tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again.to_dict() == run.to_dict()
    assert run.build_model_config().num_hidden_layers == 2


@pytest.mark.parametrize(
    "args, words",
    [
        (["--training.max_stepz", "3"], ["training.max_stepz", "max_steps", "save_steps"]),
        (["--data.crop", "3"], ["data.crop", "crop_samples"]),
        (["--optim.lr", "3"], ["optim.lr", "model, data, training"]),
        (["--lr", "3"], ["--lr", "--max_steps"]),
        (["--training.max_steps"], ["--training.max_steps", "no value"]),
        (["--training.max_steps", "ten"], ["training.max_steps", "integer"]),
        (["--training.lr_schedule", "exp"], ["lr_schedule", "cosine"]),
        (["--model.hidden_sise", "8"], ["model.hidden_sise", "masked_recon", "hidden_size", "the command line"]),
    ],
)
def test_override_errors_name_the_key(tmp_path, args, words):
    cfg = _write_yaml(tmp_path / "c.yaml", "model_type: masked_recon\n")
    with pytest.raises(ConfigError) as error:
        load_config(cfg, args)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_a_bad_override_of_a_key_the_file_sets_is_blamed_on_the_command_line(tmp_path):
    cfg = _write_yaml(tmp_path / "c.yaml", "model_type: masked_recon\ntraining:\n  max_steps: 5\n")
    with pytest.raises(ConfigError) as error:
        load_config(cfg, ["--training.max_steps", "ten"])
    assert "training.max_steps in the command line must be an integer, got 'ten'" in str(error.value)
    _write_yaml(cfg, "model_type: masked_recon\ntraining:\n  max_steps: ten\n")
    with pytest.raises(ConfigError, match=r"training\.max_steps in .*c\.yaml must be an integer"):
        load_config(cfg, ["--training.batch_size", "3"])


def test_config_changes_name_each_changed_key(tmp_path):
    from repr_asr.training.config import config_changes

    cfg = _write_yaml(tmp_path / "c.yaml", "model_type: masked_recon\ntraining:\n  seed: 0\n")
    load_config(cfg).save(tmp_path / "saved.yaml")
    run = load_config(cfg, ["--training.seed", "3", "--training.learning_rate", "1e-3", "--max_steps", "50"])
    assert config_changes(tmp_path / "saved.yaml", run) == ["training.learning_rate: 0.0002 -> 0.001", "training.seed: 0 -> 3"]
    # A key the saved file predates, at its default, is no change (a field added to the code since).
    saved = yaml.safe_load((tmp_path / "saved.yaml").read_text())
    del saved["training"]["max_loss_ratio"]
    (tmp_path / "saved.yaml").write_text(yaml.safe_dump(saved))
    assert config_changes(tmp_path / "saved.yaml", load_config(cfg)) == []
    assert config_changes(tmp_path / "missing.yaml", run) == []


def test_yaml_errors_name_the_file(tmp_path):
    cfg = _write_yaml(tmp_path / "bad.yaml", "model_type: masked_recon\noptimizer: {lr: 1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optimizer"):
        load_config(cfg)
    cfg = _write_yaml(tmp_path / "bad2.yaml", "model_type: masked_recon\ntraining: {batchsize: 1}\n")
    with pytest.raises(ConfigError, match=r"training\.batchsize in .*bad2\.yaml.*batch_size"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_override_values_are_parsed_not_evaluated():
    parsed = parse_overrides(["--model.x", "__import__('os').getcwd()", "--model.y", "{a: 1}", "--seed", "-4"])
    assert parsed[("model", "x")] == "__import__('os').getcwd()"
    assert parsed[("model", "y")] == {"a": 1}
    assert parsed[("training", "seed")] == -4


DOC_ENTRY = re.compile(r"^\s{4,}(\w+) \(`[^`]+`, defaults to `(.*?)`\)", re.MULTILINE)


@pytest.mark.parametrize("cls", [TrainingConfig, PretrainDataConfig])
def test_dataclass_fields_documented_with_their_defaults(cls):
    documented = dict(DOC_ENTRY.findall(cls.__doc__))
    for f in fields(cls):
        assert f.name in documented, f"{cls.__name__}.{f.name} is not documented"
        text = documented[f.name]
        try:
            expected = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            expected = {"true": True, "false": False}.get(text.lower(), text.strip("\"'"))
        assert f.default == expected, f"{cls.__name__}.{f.name}: docstring {text!r}, code {f.default!r}"


# ------------------------------------------------------------------------------------------------
# LR schedule


def _lrs(schedule, warmup=4, steps=20, scales=(1.0,)):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in scales]
    optimizer = torch.optim.AdamW([{"params": [p], "lr": 0.1 * s} for p, s in zip(params, scales)], lr=0.1)
    scheduler = build_scheduler(optimizer, TrainingConfig(max_steps=steps, warmup_steps=warmup, lr_schedule=schedule, learning_rate=0.1))
    lrs = []
    for _ in range(steps):
        lrs.append(list(scheduler.get_last_lr()))
        optimizer.step()
        scheduler.step()
    lrs.append(list(scheduler.get_last_lr()))
    return np.array(lrs)  # (steps + 1, groups)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_lr_schedule_warmup_and_decay(schedule):
    lrs = _lrs(schedule)[:, 0]
    np.testing.assert_allclose(lrs[:5], 0.1 * np.arange(5) / 4)  # linear warm-up to the peak at step 4
    after = lrs[4:]
    assert np.all(np.diff(after) <= 1e-12)
    if schedule == "constant":
        np.testing.assert_allclose(after, 0.1)
    else:
        assert after[-1] == pytest.approx(0.0, abs=1e-12)
        mid = lrs[4 + 8]  # halfway through the decay
        assert mid == pytest.approx(0.05, rel=1e-6)  # both linear and half-cosine pass through half the peak
        quarter = lrs[4 + 4]
        assert quarter == pytest.approx(0.075 if schedule == "linear" else 0.1 * (1 + np.cos(np.pi / 4)) / 2, rel=1e-6)


def test_lr_scale_of_param_groups_is_kept():
    lrs = _lrs("cosine", scales=(1.0, 0.1))
    np.testing.assert_allclose(lrs[:, 1], lrs[:, 0] * 0.1, rtol=1e-9, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# Training on a tiny corpus


def write_corpus(root: Path, n: int = 6) -> Dataset:
    """n FLAC utterances (0.15 - 0.4 s of sines in noise) from 2 speakers, as a corpus split."""
    root.mkdir(parents=True, exist_ok=True)
    rows = {"id": [], "audio": [], "speaker_id": []}
    for i in range(n):
        rng = np.random.default_rng(i)
        t = np.arange(int((0.15 + 0.05 * i) * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        path = root / f"utt{i}.flac"
        soundfile.write(str(path), wave.astype(np.float32), SR, subtype="PCM_16")
        rows["id"].append(f"utt{i}")
        rows["audio"].append(str(path))
        rows["speaker_id"].append(f"spk{i % 2}")
    return Dataset.from_dict(rows)


def make_trainer(split, out, seed=0, step_callback=None, **training):
    torch.manual_seed(seed)
    model = repr_asr.MaskedReconModel(repr_asr.MaskedReconConfig(**TINY_MODEL))
    config = TrainingConfig(
        **{
            "max_steps": 8, "batch_size": 2, "learning_rate": 3e-3, "warmup_steps": 2, "log_steps": 2,
            "save_steps": 4, "seed": seed, **training,
        }
    )
    dataset = RandomCropDataset(split, crop_samples=4000, seed=seed, speakers=["spk0", "spk1"], cache_audio=True)
    # The utterances' lengths rank as their indices (write_corpus): what a length-grouped order sorts by.
    lengths = list(range(len(split))) if config.group_by_length else None
    return Trainer(model, dataset, collate_crops, config, out, forward_fn=pretraining_forward, step_callback=step_callback,
                   card_info={"data": "tiny test corpus"}, train_lengths=lengths)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_random_crops_are_a_function_of_seed_epoch_index(corpus):
    data = RandomCropDataset(corpus, crop_samples=4000, seed=1, speakers=["spk0", "spk1"])
    first = [data[i]["input_values"] for i in range(len(data))]
    again = RandomCropDataset(corpus, crop_samples=4000, seed=1, speakers=["spk0", "spk1"], cache_audio=True)
    for i in reversed(range(len(data))):  # order of access does not matter
        np.testing.assert_array_equal(again[i]["input_values"], first[i])
    data.set_epoch(1)
    longest = len(data) - 1  # 0.4 s > 0.25 s crop: its offset changes with the epoch
    assert not np.array_equal(data[longest]["input_values"], first[longest])
    # The 0.15 s utterance is padded: mask zeros exactly over the padding.
    short = data[0]
    assert short["attention_mask"].sum() == int(0.15 * SR) and not short["input_values"][int(0.15 * SR):].any()
    batch = collate_crops([data[0], data[1]])
    assert batch["input_values"].shape == (2, 4000) and batch["speaker_ids"].tolist() == [0, 1]
    with pytest.raises(KeyError, match="utt1.*spk1"):
        RandomCropDataset(corpus, crop_samples=4000, speakers=["spk0"])[1]


def test_train_metrics_checkpoints_and_final_export(corpus, tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel

    seen = []
    trainer = make_trainer(corpus, tmp_path / "run", max_steps=9, save_steps=3, save_total_limit=2,
                           step_callback=lambda step, model: seen.append(step))
    metrics = trainer.train()
    assert seen == list(range(1, 10))
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4, 6, 8, 9]
    for line in lines:
        for key in ("loss", "lr", "grad_norm", "elapsed_s", "samples_per_s"):
            assert key in line and np.isfinite(line[key])
    model_terms = set(lines[0]) - {"step", "epoch", "loss", "lr", "grad_norm", "elapsed_s", "steps_per_s", "samples_per_s"}
    assert model_terms, "the model's metrics dict is logged term by term"
    assert lines[0]["lr"] == pytest.approx(3e-3)  # end of the 2-step warm-up
    assert metrics["step"] == 9 and metrics["loss"] == lines[-1]["loss"]
    # Only the two newest checkpoints stay, each verifiable; TensorBoard events exist.
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["checkpoint-6", "checkpoint-9"]
    assert verify_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint-9")["step"] == 9
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))

    final = tmp_path / "run" / "final"
    assert (final / "model.safetensors").exists() and "9 steps" in (final / "README.md").read_text()
    loaded = AutoModel.from_pretrained(final)
    extractor = AutoFeatureExtractor.from_pretrained(final)
    assert type(extractor).__name__ == "ReprFeatureExtractor"
    trained = trainer.unwrapped_model.state_dict()
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0)
    inputs = extractor([np.zeros(3200, np.float32)], sampling_rate=SR, return_tensors="pt")
    assert loaded.eval()(**inputs).last_hidden_state.shape[-1] == 16


def test_a_loss_in_the_model_metrics_is_logged_once(corpus, tmp_path):
    seen = []

    def forward(model, batch):  # models such as WaveNet-AE and CPC report their loss among their metrics too
        out = pretraining_forward(model, batch)
        out.metrics = {**out.metrics, "loss": out.loss.detach()}
        seen.append(float(out.loss))
        return out

    trainer = make_trainer(corpus, tmp_path / "run", max_steps=3, log_steps=1, save_steps=0, warmup_steps=0)
    trainer.forward_fn = forward
    trainer.train()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["loss"] for line in lines] == pytest.approx(seen)


def test_on_train_step_called_before_each_step(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path / "run", max_steps=4, gradient_accumulation_steps=2, save_steps=0)
    calls = []
    model = trainer.unwrapped_model
    model.on_train_step = lambda step: calls.append(step)  # an instance hook, as a model with schedules has
    trainer.train()
    assert calls == [0, 1, 2, 3]


def test_refuses_to_overwrite_checkpoints_without_resume(corpus, tmp_path):
    make_trainer(corpus, tmp_path / "run", max_steps=2, save_steps=2).train()
    with pytest.raises(CheckpointError, match="--resume"):
        make_trainer(corpus, tmp_path / "run", max_steps=2, save_steps=2).train()


# ------------------------------------------------------------------------------------------------
# Exact resume after SIGKILL


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from datasets import Dataset
from test_trainer import make_trainer

def die(step, model):
    if step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind, as a crash or an OOM killer

split = Dataset.load_from_disk({split!r})
make_trainer(split, {out!r}, seed=5, step_callback=die, **{kwargs!r}).train()
"""


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("order", ["shuffled", "group_by_length"])
def test_resume_after_sigkill_is_exact(corpus, tmp_path, order):
    # 6 utterances, batch 2, accumulation 2: 3 batches per epoch, so steps cross epoch ends
    # (a step closed by the end of the dataloader) and the checkpoint at step 5 is mid-epoch.
    kwargs = dict(max_steps=10, save_steps=5, gradient_accumulation_steps=2, log_steps=1, group_by_length=order == "group_by_length")
    corpus.save_to_disk(str(tmp_path / "split"))
    killed = tmp_path / "killed"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(tests=str(ROOT / "tests"), kill_at=7, split=str(tmp_path / "split"), out=str(killed), kwargs=kwargs))
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["checkpoint-5"]
    assert not (killed / "final").exists()

    resumed = make_trainer(corpus, killed, seed=5, **kwargs)
    resumed_metrics = resumed.train(resume=True)
    reference = make_trainer(corpus, tmp_path / "reference", seed=5, **kwargs)
    reference_metrics = reference.train()

    assert resumed_metrics["loss"] == reference_metrics["loss"]
    a, b = _params(resumed.unwrapped_model), _params(reference.unwrapped_model)
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=f"parameter {name} differs after resume")
    # metrics.jsonl of the resumed run has each step once, with the reference run's losses.
    got = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    assert [g["step"] for g in got] == list(range(1, 11))
    assert [g["loss"] for g in got] == [w["loss"] for w in want]


def test_length_grouped_order_is_a_function_of_seed_and_epoch():
    from repr_asr.training.length_grouping import EpochLengthGroupedSampler

    lengths = [int(n) for n in np.random.default_rng(0).integers(100, 1000, size=410)]
    sampler = EpochLengthGroupedSampler(4, lengths, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(410)) and list(sampler) == first  # every example once; same order again
    assert list(EpochLengthGroupedSampler(4, lengths, seed=3)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(410)) and second != first
    sampler.set_epoch(0)
    assert list(sampler) == first

    def padding(order):  # padded frames / real frames, batches of 4
        return sum(4 * max(lengths[i] for i in order[b:b + 4]) for b in range(0, 408, 4)) / sum(lengths[i] for i in order[:408])

    shuffled = torch.randperm(410, generator=torch.Generator().manual_seed(0)).tolist()
    assert padding(first) < 1.1 < 1.3 < padding(shuffled)


def test_group_by_length_needs_the_lengths(corpus, tmp_path):
    model = repr_asr.MaskedReconModel(repr_asr.MaskedReconConfig(**TINY_MODEL))
    dataset = RandomCropDataset(corpus, crop_samples=4000, speakers=["spk0", "spk1"])
    config = TrainingConfig(max_steps=2, batch_size=2, group_by_length=True)
    with pytest.raises(ValueError, match="group_by_length needs train_lengths"):
        Trainer(model, dataset, collate_crops, config, tmp_path / "run", forward_fn=pretraining_forward)
    with pytest.raises(ValueError, match="group_by_length needs train_lengths"):
        Trainer(model, dataset, collate_crops, config, tmp_path / "run", forward_fn=pretraining_forward, train_lengths=[1, 2])


# ------------------------------------------------------------------------------------------------
# Atomic checkpoints


def test_leftover_temp_and_corrupt_checkpoints_are_not_resumed(corpus, tmp_path, caplog):
    out = tmp_path / "run"
    make_trainer(corpus, out, max_steps=4, save_steps=2, save_total_limit=0).train()
    root = out / "checkpoints"
    # A save interrupted before its rename: never a candidate.
    partial = root / ".tmp-checkpoint-6"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    assert latest_checkpoint(root)[0].name == "checkpoint-4"
    # Truncate the newest checkpoint's weights: named in the error, skipped for the older one.
    weights = root / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"checkpoint-4.*model\.safetensors"):
        verify_checkpoint(root / "checkpoint-4")
    with caplog.at_level("WARNING"):
        path, state = latest_checkpoint(root)
    assert path.name == "checkpoint-2" and state["step"] == 2
    assert "checkpoint-4" in caplog.text
    # A checkpoint without its trainer state (the file written last) is incomplete.
    (root / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(CheckpointError, match=r"no usable checkpoint(.|\n)*checkpoint-4(.|\n)*checkpoint-2"):
        latest_checkpoint(root)

    # Resuming skips the broken ones, removes the temp folder, and finishes.
    out2 = tmp_path / "run2"
    make_trainer(corpus, out2, max_steps=4, save_steps=2, save_total_limit=0).train()
    (out2 / "checkpoints" / "checkpoint-4" / "optimizer.bin").write_bytes(b"garbage")
    (out2 / "checkpoints" / ".tmp-checkpoint-6").mkdir()
    metrics = make_trainer(corpus, out2, max_steps=6, save_steps=2, save_total_limit=0).train(resume=True)
    assert metrics["step"] == 6
    assert not (out2 / "checkpoints" / ".tmp-checkpoint-6").exists()
    steps = [json.loads(line)["step"] for line in (out2 / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


# ------------------------------------------------------------------------------------------------
# Non-finite steps and the best model


def test_a_nonfinite_step_is_skipped_counted_and_training_goes_on(corpus, tmp_path):
    calls = []

    def forward(model, batch):  # the 3rd batch's loss is NaN (as a corrupt example or an overflow would make it)
        out = pretraining_forward(model, batch)
        calls.append(1)
        if len(calls) == 3:
            out.loss = out.loss * float("nan")
        return out

    trainer = make_trainer(corpus, tmp_path / "run", max_steps=5, log_steps=1, save_steps=0, warmup_steps=0)
    trainer.forward_fn = forward
    before = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    snapshots = []
    trainer.step_callback = lambda step, model: snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    metrics = trainer.train()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["nonfinite_steps"] for line in lines] == [0, 0, 1, 1, 1]
    assert "loss" not in lines[2] and all(np.isfinite(line["loss"]) for line in lines if "loss" in line)
    # The skipped step changed no weight; the others did.
    for name in snapshots[1]:
        torch.testing.assert_close(snapshots[2][name], snapshots[1][name], rtol=0, atol=0)
    assert any(not torch.equal(snapshots[3][n], snapshots[2][n]) for n in snapshots[2])
    assert any(not torch.equal(snapshots[0][n], before[n]) for n in before)
    assert metrics["nonfinite_steps"] == 1 and (tmp_path / "run" / "final" / "model.safetensors").exists()


def test_an_exploding_loss_is_skipped_counted_and_stops_the_run(corpus, tmp_path):
    """Finite but 1e6 times the early loss from the 13th forward pass on: skipped like a non-finite step; the
    third in a row (max_nonfinite_steps 2) stops the run, and no checkpoint holds a step after the explosion."""
    from repr_asr.training.trainer import EARLY_LOSS_STEPS, NonFiniteError

    calls = []

    def forward(model, batch):
        out = pretraining_forward(model, batch)
        calls.append(1)
        if len(calls) == EARLY_LOSS_STEPS + 3:  # one step alone explodes: skipped, and training goes on
            out.loss = out.loss * 1e6
        if len(calls) >= EARLY_LOSS_STEPS + 6:
            out.loss = out.loss * 1e6
        return out

    trainer = make_trainer(corpus, tmp_path / "run", max_steps=40, log_steps=1, save_steps=1, save_total_limit=0,
                           warmup_steps=0, max_nonfinite_steps=2)
    trainer.forward_fn = forward
    with pytest.raises(NonFiniteError, match=r"max_loss_ratio \(1000\) times the early loss"):
        trainer.train()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["nonfinite_steps"] for line in lines][EARLY_LOSS_STEPS:] == [0, 0, 1, 1, 1, 2, 3, 4]
    assert "above training.max_loss_ratio" in lines[-1]["stopped"]
    assert all(line["loss"] < 1e3 for line in lines if "loss" in line)
    # A skipped step changed no weight: the checkpoints written at them hold the last good step's weights.
    from safetensors.torch import load_file

    def weights(step):
        return load_file(str(tmp_path / "run" / "checkpoints" / f"checkpoint-{step}" / "model.safetensors"))

    for skipped, good in ((EARLY_LOSS_STEPS + 3, EARLY_LOSS_STEPS + 2), (EARLY_LOSS_STEPS + 7, EARLY_LOSS_STEPS + 5)):
        assert all(torch.equal(weights(skipped)[k], v) for k, v in weights(good).items())
    assert not (tmp_path / "run" / "checkpoints" / f"checkpoint-{EARLY_LOSS_STEPS + 8}").exists()
    assert not (tmp_path / "run" / "final").exists()
    # 0 turns the check off.
    quiet = make_trainer(corpus, tmp_path / "off", max_steps=EARLY_LOSS_STEPS + 4, log_steps=1, save_steps=0,
                         warmup_steps=0, max_loss_ratio=0.0)
    calls.clear()
    quiet.forward_fn = forward
    assert quiet.train()["nonfinite_steps"] == 0


def test_final_is_the_best_evaluation_and_training_stops_early(corpus, tmp_path):
    from safetensors.torch import load_file

    scores = iter([5.0, 3.0, 4.0, 4.5, 9.0, 9.0])
    weights = {}

    def eval_fn(model, accelerator):  # a fixed sequence of dev scores: best at the 2nd evaluation (step 4)
        weights[len(weights) + 1] = {k: v.clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
        return {"cer": next(scores)}

    trainer = make_trainer(corpus, tmp_path / "run", max_steps=20, eval_steps=2, save_steps=0, log_steps=2,
                           metric_for_best_model="eval_cer", early_stopping_patience=2)
    trainer.eval_fn = eval_fn
    metrics = trainer.train()
    assert metrics["best_step"] == 4 and metrics["best_metric"] == 3.0 and metrics["stopped_early"]
    assert metrics["step"] == 8  # two evaluations without improvement after step 4
    final = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    for name, value in final.items():
        torch.testing.assert_close(value, weights[2][name], rtol=0, atol=0)
        torch.testing.assert_close(trainer.unwrapped_model.state_dict()[name], weights[2][name], rtol=0, atol=0)
