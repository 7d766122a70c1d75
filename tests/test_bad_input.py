"""Undecodable utterances in a training split: skipped, named and counted by the crop dataset and its
collator (repr_asr.data.skipping), or a clear error with ``strict``."""

import datasets
import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from repr_asr.audio import AudioError
from repr_asr.data.crops import RandomCropDataset, collate_crops
from repr_asr.data.skipping import SKIPPED_KEY

SR = 16000
CROP = 800


def _split(tmp_path):
    """Six utterances: u1 is a truncated FLAC, u4 a WAV holding NaN; their headers are fine."""
    paths = []
    for i in range(6):
        wave = (0.1 * np.sin(np.arange(SR // 4) * (0.05 + 0.01 * i))).astype(np.float32)
        if i == 4:
            wave[10] = np.nan
            path = tmp_path / f"u{i}.wav"
            soundfile.write(str(path), wave, SR, subtype="FLOAT")
        else:
            path = tmp_path / f"u{i}.flac"
            soundfile.write(str(path), wave, SR, subtype="PCM_16")
        if i == 1:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        paths.append(str(path))
    return datasets.Dataset.from_dict({"id": [f"u{i}" for i in range(6)], "audio": paths})


def test_undecodable_utterances_are_skipped_and_named(tmp_path):
    dataset = RandomCropDataset(_split(tmp_path), crop_samples=CROP)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_crops)
    kept, skipped = 0, []
    for batch in loader:
        if "input_values" in batch:
            assert batch["input_values"].shape[1] == CROP
            assert len(batch["example_seeds"]) == len(batch["input_values"]) == len(batch["attention_mask"])
            kept += len(batch["input_values"])
        skipped += batch.get(SKIPPED_KEY, [])
    assert kept == 4
    assert [s["id"] for s in skipped] == ["u1", "u4"]
    assert "u1.flac" in skipped[0]["error"] and "cannot decode audio" in skipped[0]["error"]
    assert "u4.wav" in skipped[1]["error"] and "NaN" in skipped[1]["error"]
    # The good items of a batch with a skipped one are the items they are alone.
    mixed = collate_crops([dataset[0], dataset[1]])
    alone = collate_crops([dataset[0]])
    assert SKIPPED_KEY not in alone
    assert torch.equal(mixed["input_values"], alone["input_values"])
    assert torch.equal(mixed["example_seeds"], alone["example_seeds"])


def test_batch_of_only_skipped_items(tmp_path):
    dataset = RandomCropDataset(_split(tmp_path), crop_samples=CROP)
    batch = collate_crops([dataset[1], dataset[4]])
    assert list(batch) == [SKIPPED_KEY]
    assert [s["id"] for s in batch[SKIPPED_KEY]] == ["u1", "u4"]


def test_strict_raises_naming_utterance_and_file(tmp_path):
    dataset = RandomCropDataset(_split(tmp_path), crop_samples=CROP, strict=True)
    assert dataset[0]["input_values"].shape == (CROP,)
    with pytest.raises(AudioError, match=r"utterance u1 \(.*u1\.flac\): cannot decode audio"):
        dataset[1]
    with pytest.raises(AudioError, match=r"utterance u4 \(.*u4\.wav\): audio contains NaN"):
        dataset[4]
