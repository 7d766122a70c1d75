"""The CTC recipe end to end on a tiny built-in corpus: training lowers CER, results.json says what was
run, and DIR/final/ loads with AutoModelForCTC and transcribes through the transformers pipeline."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCTC, pipeline

import repr_asr  # noqa: F401
from repr_asr.audio import load_audio
from repr_asr.data import load_corpus
from repr_asr.data.builtin import build_corpus
from repr_asr.training.finetune_ctc import load_ctc_config, run_finetune_ctc

pytestmark = pytest.mark.skipif(shutil.which("festival") is None, reason="needs Festival (scripts/install_system_deps.sh)")

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "ctc", "frozen_tiny.yaml")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctc_corpus") / "builtin"
    build_corpus(root, hours=0.03, seed=5, num_workers=2, progress=False)
    return root


def run(corpus_dir, output_dir, steps, *extra):
    overrides = [
        "--data", f"builtin:{corpus_dir}", "--data.subset", "10min", "--data.eval_splits", "train-10min,test",
        "--training.max_steps", str(steps), "--training.warmup_steps", "0", "--training.learning_rate", "0.005",
        "--training.lr_schedule", "constant", "--training.log_steps", "10", "--training.save_steps", "0",
        "--model.head_hidden_size", "64", "--model.time_mask_width", "0", "--model.feature_mask_width", "0",
        "--model.dropout", "0.0", *extra,
    ]
    return run_finetune_ctc(load_ctc_config(CONFIG, overrides), "fbank", str(output_dir))


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ctc_run")
    return out, run(corpus_dir, out, 150)


def test_training_lowers_cer_below_an_untrained_model(corpus_dir, trained, tmp_path):
    untrained = run(corpus_dir, tmp_path / "untrained", 1)
    _, results = trained
    before, after = untrained["metrics"]["train-10min"]["cer"], results["metrics"]["train-10min"]["cer"]
    assert after < 0.5 * before, f"CER on the labeled subset: {before:.3f} untrained, {after:.3f} after training"


def test_results_json_says_what_was_run(trained):
    out, results = trained
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["upstream"] == "fbank" and on_disk["subset"] == "10min" and on_disk["frozen"] is True
    assert on_disk["steps"] == 150 and on_disk["tokenizer"] == "char" and on_disk["too_long"] == 0
    for split in ("train-10min", "test"):
        assert set(on_disk["metrics"][split]) >= {"wer", "cer", "utterances"}
    hyps = json.loads((out / "hypotheses.json").read_text())
    assert len(hyps["test"]) == on_disk["metrics"]["test"]["utterances"]
    assert (out / "metrics.jsonl").read_text().count("\n") == 15


def test_final_folder_loads_and_transcribes(corpus_dir, trained):
    out, results = trained
    model = AutoModelForCTC.from_pretrained(out / "final").eval()
    row = load_corpus(f"builtin:{corpus_dir}")["train-10min"][0]
    audio = load_audio(row["audio"])
    asr = pipeline("automatic-speech-recognition", model=str(out / "final"), device="cpu")
    text = asr(audio)["text"]
    with torch.no_grad():
        logits = model(torch.from_numpy(audio)[None]).logits
    assert isinstance(text, str)
    hypothesis = json.loads((out / "hypotheses.json").read_text())["train-10min"]
    assert text == next(h["greedy"] for h in hypothesis if h["id"] == row["id"])
    assert logits.shape[-1] == results["vocab_size"]


def test_recipe_command_line(corpus_dir, tmp_path):
    cmd = [sys.executable, "recipes/finetune_ctc.py", "--config", CONFIG, "--upstream", "mfcc", "--subset", "10min",
           "--data", f"builtin:{corpus_dir}", "--output_dir", str(tmp_path / "cli"), "--max_steps", "3",
           "--training.warmup_steps", "0", "--tokenizer", "sentencepiece", "--vocab_size", "32"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=os.path.join(os.path.dirname(__file__), ".."))
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert results["tokenizer"] == "sentencepiece" and results["vocab_size"] == 32 and results["upstream"] == "mfcc"
