"""recipes/pretrain.py end to end on a LibriSpeech-layout corpus written into tmp_path.

Every shipped tiny pretraining config (configs/pretrain/*_tiny.yaml) is run for a few steps, shrunk
further with command-line overrides so the whole file takes seconds on 2 cores.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

import repr_asr  # noqa: F401
from repr_asr.training import ConfigError, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TINY_CONFIGS = sorted((ROOT / "configs" / "pretrain").glob("*_tiny.yaml"))

# Per model type: overrides that make the shipped tiny configs tinier still (unknown keys are skipped).
SHRINK = {
    "masked_recon": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 1},
    "phone_topline": {"hidden_size": 16, "num_layers": 2},
    "cpc": {"conv_dim": 32, "context_hidden_size": 32, "prediction_steps": 2, "num_negatives": 4},
    "wavenet_ae": {
        "encoder_hidden_size": 32, "latent_dim": 8, "codebook_size": 16, "conditioning_channels": 16,
        "decoder_layers": 4, "decoder_dilation_cycles": 1, "residual_channels": 16, "gate_channels": 16,
        "skip_channels": 16, "decoder_output_channels": 16, "speaker_embedding_dim": 8, "speaker_conditioning": True,
    },
}


def _load_recipe():
    spec = importlib.util.spec_from_file_location("pretrain_recipe", ROOT / "recipes" / "pretrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _chapter(root: Path, split: str, speaker: str, chapter: str, n: int, seed: int, alignments: dict = None) -> None:
    """``n`` tone utterances of one chapter; with ``alignments``, their phone segments are added to it."""
    folder = root / split / speaker / chapter
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        utt = f"{speaker}-{chapter}-{i:04d}"
        duration = 0.3 + 0.1 * i
        if alignments is not None:
            alignments[utt] = [("SIL", 0.0, 0.05), ("AA", 0.05, round(duration - 0.05, 2)), ("SIL", round(duration - 0.05, 2), round(duration, 2))]
        t = np.arange(int(duration * SR)) / SR
        rng = np.random.default_rng(seed + i)
        wave = 0.3 * np.sin(2 * np.pi * (150 + 30 * seed + 20 * i) * t) + 0.02 * rng.standard_normal(t.size)
        soundfile.write(str(folder / f"{utt}.flac"), wave.astype(np.float32), SR, subtype="PCM_16")
        lines.append(f"{utt} HELLO WORLD\n")
    (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """train-clean-100 (the pretrain split: speakers 11 and 12, 3 utterances each), dev-clean, test-clean, with
    phone alignments (each utterance one tone between silences) for the topline, which learns from them."""
    return tone_librispeech(tmp_path_factory.mktemp("LibriSpeech"), train_utterances=3)


def tone_librispeech(root: Path, train_utterances: int) -> Path:
    """Speakers 11 and 12 in train-clean-100 (``train_utterances`` each), 21 in dev-clean, 31 in test-clean,
    and every utterance's phone alignment in librispeech_finetuning/phones/."""
    from repr_asr.data.phones import write_alignments

    for split, speaker, chapter, n, seed in (("train-clean-100", "11", "100", train_utterances, 0),
                                             ("train-clean-100", "12", "200", train_utterances, 5),
                                             ("dev-clean", "21", "300", 2, 9), ("test-clean", "31", "400", 1, 12)):
        alignments: dict = {}
        _chapter(root, split, speaker, chapter, n, seed, alignments)
        write_alignments(root / "librispeech_finetuning" / "phones", alignments, subset=f"{split}-{speaker}")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))


def _args(config: Path, corpus: Path, out: Path, *extra) -> list[str]:
    from repr_asr.training.config import model_config_keys

    model_type = yaml.safe_load(config.read_text())["model_type"]
    valid = set(model_config_keys(model_type))
    shrink = [x for k, v in SHRINK.get(model_type, {}).items() if k in valid for x in (f"--model.{k}", json.dumps(v))]
    return [
        "--config", str(config), "--data", f"librispeech:{corpus}", "--output_dir", str(out),
        "--max_steps", "3", "--save_steps", "2", "--training.batch_size", "2", "--training.log_steps", "1",
        "--training.warmup_steps", "1", "--data.crop_samples", "3200", "--data.cache_audio", "true", *shrink, *extra,
    ]


def test_tiny_configs_exist():
    assert any(p.name.startswith("masked_recon") for p in TINY_CONFIGS)


_SHIPPED_TYPES = {yaml.safe_load(p.read_text())["model_type"] for p in TINY_CONFIGS}
# Upstreams without a shipped tiny config yet run from a config holding only their model_type.
CASES = [(p, None) for p in TINY_CONFIGS] + [(None, t) for t in sorted(SHRINK) if t not in _SHIPPED_TYPES]


@pytest.mark.parametrize("config, model_type", CASES, ids=lambda c: c.stem if isinstance(c, Path) else c)
def test_recipe_end_to_end(config, model_type, corpus, tmp_path):
    from transformers import AutoFeatureExtractor, AutoModel

    if config is None:
        config = tmp_path / f"{model_type}.yaml"
        config.write_text(f"model_type: {model_type}\n")
    out = tmp_path / "run"
    _load_recipe().main(_args(config, corpus, out))

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3] and all(np.isfinite(line["loss"]) for line in lines)
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["training"]["max_steps"] == 3 and resolved["data"]["spec"] == f"librispeech:{corpus}"
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-2", "checkpoint-3"]

    model = AutoModel.from_pretrained(out / "final").eval()
    extractor = AutoFeatureExtractor.from_pretrained(out / "final")
    assert model.config.model_type == resolved["model_type"]
    if getattr(model.config, "speaker_conditioning", False):
        assert model.config.speakers == ["11", "12"]  # sorted speakers of the pretrain split
    card = (out / "final" / "README.md").read_text()
    assert "librispeech:" in card and "3 steps" in card
    inputs = extractor([np.zeros(4000, np.float32), np.zeros(2000, np.float32)], sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        features = model(**inputs).last_hidden_state
    assert features.ndim == 3 and features.shape[0] == 2


def test_recipe_resume_continues_and_eval_split(corpus, tmp_path):
    config = ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"
    out = tmp_path / "run"
    recipe = _load_recipe()
    recipe.main(_args(config, corpus, out, "--max_steps", "2", "--data.eval_split", "dev"))
    recipe.main(_args(config, corpus, out, "--max_steps", "4", "--data.eval_split", "dev", "--resume"))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [1, 2, 3, 4]
    evals = [line for line in lines if "eval_loss" in line]
    assert evals and evals[-1]["step"] == 4 and np.isfinite(evals[-1]["eval_loss"])
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["max_steps"] == 4
    # More steps is no change of the run's settings; another seed is, named in results.json.
    assert json.loads((out / "results.json").read_text())["resumed_with_changes"] == []
    recipe.main(_args(config, corpus, out, "--max_steps", "5", "--data.eval_split", "dev", "--seed", "7", "--resume"))
    assert json.loads((out / "results.json").read_text())["resumed_with_changes"] == ["training.seed: 0 -> 7"]


def test_recipe_rejects_unknown_keys(corpus, tmp_path):
    config = ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"
    with pytest.raises(ConfigError, match="training.max_step.*max_steps"):
        _load_recipe().main(_args(config, corpus, tmp_path / "run", "--training.max_step", "3"))
    assert not (tmp_path / "run").exists()


def test_recipe_runs_as_a_plain_script(corpus, tmp_path):
    config = ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "recipes/pretrain.py", *_args(config, corpus, out, "--max_steps", "2")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "REPR_ASR_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "preprocessor_config.json").exists()
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["step"] == 2
