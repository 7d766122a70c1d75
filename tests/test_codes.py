"""Code analysis: the code × phone co-occurrence, each code's phones, the pictures, and recipes/codes.py
on a tiny corpus with a VQ WaveNet-AE."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from repr_asr import WaveNetAEConfig, WaveNetAEModel
from repr_asr.evaluation.code_figures import plot_code_example, plot_code_phone_matrix
from repr_asr.evaluation.codes import code_phone_counts, code_statistics, top_phones
from repr_asr.evaluation.probes import IGNORE
from tone_corpus import SR, build_tone_corpus

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_code_phone_counts_and_each_codes_phones():
    codes = [np.array([0, 0, 1, 1, 2, 3]), np.array([1, 1, 1, 0])]
    phones = [np.array([0, 0, 1, 2, IGNORE, 1]), np.array([1, 1, 2, 0])]
    counts = code_phone_counts(codes, phones, codebook_size=5, num_phones=3)
    assert counts.shape == (5, 3) and counts.sum() == 9  # the unlabelled frame is left out
    assert counts[0].tolist() == [3, 0, 0] and counts[1].tolist() == [0, 3, 2] and counts[4].sum() == 0
    rows = top_phones(counts, ["a", "b", "c"], k=2)
    assert [r["code"] for r in rows] == [1, 0, 3]  # most used first; codes never seen on a labelled frame are absent
    assert rows[0]["phones"] == [("b", 0.6), ("c", 0.4)] and rows[0]["purity"] == pytest.approx(0.6)
    assert rows[1] == {"code": 0, "frames": 3, "purity": 1.0, "phones": [("a", 1.0)]}


def test_segment_rate_and_nominal_bitrate():
    codes = [np.array([5] * 10 + [6] * 10), np.array([7] * 5)]  # 3 runs in 25 frames
    stats = code_statistics(codes, [np.zeros(20, dtype=int), np.zeros(5, dtype=int)], ["a", "b"], codebook_size=64, frame_rate=50.0)
    assert stats["segments_per_second"] == pytest.approx(3 * 50.0 / 25)
    assert stats["nominal_bitrate"] == pytest.approx(6 * 50.0) and stats["bitrate"] < stats["nominal_bitrate"]


def test_pictures_are_drawn(tmp_path):
    rng = np.random.default_rng(0)
    results = {"code_phone": rng.integers(0, 20, size=(8, 4)).tolist(), "phones": ["SIL", "AA", "IY", "M"],
               "metrics": {"phone_purity": 40.0, "phone_nmi": 0.2}}
    path = plot_code_phone_matrix(results, tmp_path / "matrix.png")
    assert Path(path).stat().st_size > 5000 and Path(path).read_bytes()[:4] == b"\x89PNG"
    example = {"id": "u1", "codes": rng.integers(0, 8, size=50).tolist(), "phones": [["SIL", 0.0, 0.2], ["AA", 0.2, 1.0]]}
    path = plot_code_example(example, 0.1 * rng.standard_normal(SR), SR, 50.0, tmp_path / "example.png")
    assert Path(path).stat().st_size > 5000
    with pytest.raises(ValueError, match="no code-phone counts"):
        plot_code_phone_matrix({"code_phone": None, "phones": []}, tmp_path / "none.png")


from recipe_modules import assert_results_header, load_recipe as _recipe  # noqa: E402


def test_codes_recipe_writes_statistics_and_pictures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))
    build_tone_corpus(tmp_path / "corpus")
    torch.manual_seed(0)
    model = WaveNetAEModel(WaveNetAEConfig(
        encoder_hidden_size=24, encoder_num_ff_layers=2, latent_dim=8, codebook_size=16, conditioning_channels=12,
        decoder_layers=4, decoder_dilation_cycles=2, residual_channels=8, gate_channels=8, skip_channels=8, decoder_output_channels=16))
    model.save_pretrained(tmp_path / "vq")
    out = tmp_path / "run"
    results = _recipe("codes").main(["--upstream", str(tmp_path / "vq"), "--data", f"librispeech:{tmp_path / 'corpus'}",
                                     "--split", "dev", "--output_dir", str(out), "--examples", "2"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == results["metrics"] and saved["task"] == "codes"
    assert_results_header(saved, "codes")
    assert set(saved["phones"]) == {"SIL", "AA", "IY", "M"}
    counts = np.array(saved["code_phone"])
    assert counts.shape == (16, 4) and counts.sum() > 0
    assert sum(r["frames"] for r in saved["top_phones"]) == counts.sum()
    assert len(saved["examples"]) == 2 and all(len(e["codes"]) > 0 and e["phones"] for e in saved["examples"])
    assert saved["figures"]["code_phone"] == "code_phone.png" and (out / "code_phone.png").stat().st_size > 5000
    assert len(list(out.glob("codes-*.png"))) == 2
    assert "codes used, perplexity" in capsys.readouterr().out
    # Not a VQ model: a clear error.
    WaveNetAEModel(WaveNetAEConfig(**{**model.config.to_dict(), "bottleneck": "none"})).save_pretrained(tmp_path / "ae")
    with pytest.raises(ValueError, match="VQ bottleneck"):
        _recipe("codes").main(["--upstream", str(tmp_path / "ae"), "--data", f"librispeech:{tmp_path / 'corpus'}", "--split", "dev",
                               "--output_dir", str(tmp_path / "run_ae")])
