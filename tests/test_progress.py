"""Long evaluation steps show a tqdm bar: feature extraction, probe training, ABX distances. Shown when
asked (or on a terminal), never on a process other than the main one."""

import numpy as np
import torch
from datasets import Dataset

from repr_asr.evaluation.abx import Item, abx_error
from repr_asr.evaluation.features import extract_features
from repr_asr.evaluation.probes import ProbeConfig, train_probe
from repr_asr.models import load_upstream

SR = 16000


def _dataset(n=6):
    rng = np.random.default_rng(0)
    audio = [{"array": (0.1 * rng.standard_normal(SR // 4 + 800 * i)).astype(np.float32), "sampling_rate": SR} for i in range(n)]
    return Dataset.from_dict({"id": [f"u{i}" for i in range(n)], "audio": audio})


def _extract(progress):
    return extract_features(load_upstream("fbank"), _dataset(), max_batch_seconds=0.6, progress=progress)


def test_feature_extraction_bar_counts_utterances(capsys, one_thread):
    _extract(True)
    err = capsys.readouterr().err
    assert "features (features)" in err and "6/6" in err and "utt" in err


def test_bars_are_off_when_asked_and_left_to_tqdm_off_a_terminal(capsys, one_thread):
    _extract(False)
    _extract(None)  # pytest's captured stderr is not a terminal: tqdm shows nothing
    assert "features" not in capsys.readouterr().err


def test_no_bar_on_a_process_other_than_the_main_one(capsys, monkeypatch, one_thread):
    monkeypatch.setenv("LOCAL_RANK", "1")  # what accelerate launch / torchrun set on the second process
    _extract(True)
    assert "features" not in capsys.readouterr().err


def test_probe_training_bar_counts_epochs(capsys, one_thread):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    config = ProbeConfig(epochs=3, patience=10, min_steps_per_epoch=2)
    train_probe(x, y, x[:50], y[:50], "classification", 2, config, progress=True, desc="dev phone")
    err = capsys.readouterr().err
    assert "dev phone" in err and "3/3" in err and "validation_loss" in err


def test_abx_bar_counts_distance_pairs(capsys, one_thread):
    rng = np.random.default_rng(0)
    features = {f"f{s}": rng.standard_normal((40, 3)).astype(np.float32) for s in range(2)}
    # Per speaker (one file each): 3 tokens of A and 3 of B in one context, 0.1 s each.
    items = [Item(f"f{s}", 0.05 * j, 0.05 * j + 0.1, "AB"[j % 2], "x", "y", f"s{s}") for s in range(2) for j in range(6)]
    scores = abx_error(features, items, 100.0, progress=True, desc="ABX test")
    err = capsys.readouterr().err
    assert scores["within"] is not None and scores["across"] is not None
    assert "ABX test within-speaker" in err and "ABX test across-speaker" in err and "pair" in err
