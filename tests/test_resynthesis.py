"""recipes/resynthesize.py: reconstructions with the utterance's own (or the average) speaker and
conversions to training speakers, as WAV files of the original's length."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from repr_asr import WaveNetAEConfig, WaveNetAEModel
from tone_corpus import SR, build_tone_corpus

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


from recipe_modules import assert_results_header, load_recipe as _recipe  # noqa: E402


def test_resynthesis_and_voice_conversion_write_wavs(tmp_path, monkeypatch, capsys):
    build_tone_corpus(tmp_path / "corpus")  # dev-clean: speakers 101, 102, 201, 202
    torch.manual_seed(0)
    model = WaveNetAEModel(WaveNetAEConfig(
        encoder_hidden_size=24, encoder_num_ff_layers=2, latent_dim=8, codebook_size=16, conditioning_channels=12,
        decoder_layers=4, decoder_dilation_cycles=2, residual_channels=8, gate_channels=8, skip_channels=8, decoder_output_channels=16,
        speaker_conditioning=True, speakers=["101", "900", "901"], speaker_embedding_dim=4))
    with torch.no_grad():
        model.conditioning.speaker_embedding.weight.mul_(20.0)  # an untrained model barely listens to it
    model.save_pretrained(tmp_path / "ae")
    out = tmp_path / "run"
    data = ["--data", f"librispeech:{tmp_path / 'corpus'}", "--split", "dev"]
    results = _recipe("resynthesize").main(["--upstream", str(tmp_path / "ae"), *data, "--output_dir", str(out), "--num_utterances", "8",
                                            "--speakers", "900", "901", "--max_seconds", "0.25", "--temperature", "0"])
    assert json.loads((out / "results.json").read_text())["files"] == results["files"]
    assert_results_header(results, "resynthesis")
    by_kind = {}
    for entry in results["files"]:
        by_kind.setdefault(entry["kind"], []).append(entry)
    assert len(by_kind["original"]) == len(by_kind["resynthesized"]) == 8 and len(by_kind["converted"]) == 16
    voices = {e["speaker"]: e["voice"] for e in by_kind["resynthesized"]}
    assert voices["101"] == "101" and voices["202"] == "average"  # a speaker not seen in training: the average voice
    for entry in results["files"]:
        audio, rate = soundfile.read(out / entry["path"])
        assert rate == SR and len(audio) == int(round(entry["seconds"] * SR)) <= 0.25 * SR and np.isfinite(audio).all()
    first = by_kind["resynthesized"][0]["id"]
    same, _ = soundfile.read(out / "resynthesized" / f"{first}.wav")
    other, _ = soundfile.read(out / "converted" / f"{first}-to-900.wav")
    assert not np.array_equal(same, other)  # the target speaker changes the output
    assert results["samples_per_second"] > 0 and "samples/s" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not training speakers"):
        _recipe("resynthesize").main(["--upstream", str(tmp_path / "ae"), *data, "--output_dir", str(out), "--speakers", "nobody"])
    with pytest.raises(ValueError, match="no decoder"):
        _recipe("resynthesize").main(["--upstream", "fbank", *data, "--output_dir", str(tmp_path / "fbank")])
