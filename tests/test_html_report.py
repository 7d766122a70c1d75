"""report.html: every kind of result in one self-contained page, blank where nothing was measured, and
rendered by headless Chromium with every table, image and audio clip loaded."""

import importlib.util
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile

from repr_asr.evaluation.code_figures import plot_code_phone_matrix
from repr_asr.evaluation.html_report import find_results, write_html_report

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def _write(folder: Path, results: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))


def build_runs(root: Path) -> None:
    """CTC (fbank: two seeds on 10min and one on 1h; cpc: 10min only, and its learned layer mix), probes, ABX,
    speaker identification, pretraining, codes with a picture, and a resynthesis run with three WAVs."""
    for name, subset, seed, cer in (("fbank", "10min", 0, 70.0), ("fbank", "10min", 1, 74.0), ("fbank", "1h", 0, 55.0), ("cpc", "10min", 0, 66.0)):
        _write(root / "ctc" / f"{name}-{subset}-{seed}", {
            "task": "ctc", "upstream": name, "upstream_name": name, "frozen": True, "subset": subset, "seed": seed,
            "metrics": {"test": {"cer": cer / 100, "wer": 0.99}, "dev": {"cer": cer / 100, "wer": 0.99}}})
    _write(root / "ctc_mix" / "cpc-10min-0", {
        "task": "ctc", "upstream": "cpc", "upstream_name": "cpc", "frozen": True, "subset": "10min", "seed": 0,
        "probe_point": "weighted_sum", "layer_weights": {"enc": 0.3, "ctx": 0.7},
        "layer_mix": {"points": ["enc", "ctx"], "left_out": [], "dim": 256, "projected": [], "frame_rate": 100.0},
        "metrics": {"test": {"cer": 0.64, "wer": 0.98}, "dev": {"cer": 0.64, "wer": 0.98}}})
    for name, points in (("fbank", ["features"]), ("wavenet_vq", ["enc", "bn"])):
        _write(root / "probes" / name, {"task": "probe", "upstream": name, "upstream_name": name, "split": "test",
                                         "model_type": "wavenet_ae" if name != "fbank" else "spectral",
                                         "metrics": {p: {"phone": {"accuracy": 40.0 - k, "majority_baseline": 14.0},
                                                         "speaker": {"accuracy": 60.0 - 30 * k, "majority_baseline": 5.0},
                                                         "fbank": {"r2": 0.7}} for k, p in enumerate(points)}})
        _write(root / "abx" / name, {"task": "abx", "upstream_name": name, "metrics": {p: {"within": 20.0, "across": 30.0} for p in points}})
    _write(root / "speaker_id" / "wavenet_vq", {"task": "speaker_id", "kind": "speaker_id", "upstream_name": "wavenet_vq", "split": "pretrain",
                                                 "num_speakers": 20, "utterances": {"test": 100},
                                                 "metrics": {"enc": {"accuracy": 91.0, "majority_rate": 5.0}, "bn": {"accuracy": 42.0, "majority_rate": 5.0}}})
    _write(root / "hub" / "wavenet_vq", {"task": "pretraining", "model_type": "wavenet_ae", "steps": 400, "flops_per_step": 7.2e10, "total_flops": 3e13})
    codes = {"task": "codes", "upstream": str(root / "hub" / "wavenet_vq"), "phones": ["SIL", "AA"],
             "code_phone": [[5, 0], [1, 4], [0, 0]], "metrics": {"codes_used": 2, "codebook_size": 3, "perplexity": 1.9, "phone_purity": 90.0},
             "top_phones": [{"code": 0, "frames": 5, "purity": 1.0, "phones": [["SIL", 1.0]]}], "figures": {"code_phone": "code_phone.png"}}
    (root / "codes").mkdir()
    plot_code_phone_matrix(codes, root / "codes" / "code_phone.png")
    _write(root / "codes", codes)
    files = []
    for kind, path, voice in (("original", "original/u1.wav", None), ("resynthesized", "resynthesized/u1.wav", "average"),
                              ("converted", "converted/u1-to-9.wav", "9")):
        (root / "audio" / path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(root / "audio" / path, 0.1 * np.sin(np.arange(SR // 4) * 0.05), SR)
        files.append({"id": "u1", "speaker": "7", "kind": kind, "voice": voice, "path": path, "seconds": 0.25})
    _write(root / "audio", {"task": "resynthesis", "split": "test", "files": files, "samples_per_second": 1000.0})


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.cells, self.attrs = {}, [], {}
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs.setdefault(tag, []).append(dict(attrs))
        if tag == "td":
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def test_report_shows_every_kind_and_leaves_missing_cells_blank(tmp_path):
    build_runs(tmp_path / "runs")
    found = find_results([tmp_path / "runs"])
    assert {k: len(v) for k, v in found.items()} == {"ctc": 5, "probe": 2, "abx": 2, "pretraining": 1, "codes": 1, "resynthesis": 1,
                                                     "speaker_id": 1}
    page = Path(write_html_report([tmp_path / "runs"], tmp_path / "report.html")).read_text()
    parsed = _Collect()
    parsed.feed(page)
    assert parsed.tags["table"] == 8  # CER, WER, probes, ABX, speaker identification, compute, codes, audio
    assert parsed.tags["img"] == 3 and parsed.tags["audio"] == 3  # the layer weights, probe figure, code picture; three clips
    assert [a["alt"] for a in parsed.attrs["img"]][0] == "learned layer weights per probe point"  # the mixed CTC run's
    assert "cpc / weighted_sum (frozen)" in parsed.cells and "64.0" in parsed.cells
    assert all(a["src"].startswith("data:") for a in parsed.attrs["img"] + parsed.attrs["audio"])  # self-contained
    assert "72.0 ± 2.8 (n=2)" in parsed.cells and "66.0" in parsed.cells and "55.0" in parsed.cells
    row = parsed.cells[parsed.cells.index("cpc (frozen)"):][:3]
    assert row == ["cpc (frozen)", "66.0", ""]  # cpc has no train-1h run: a blank cell, not a number
    assert "SIL 100%" in page and "as speaker 9" in page
    rows = [parsed.cells[k:k + 3] for k, cell in enumerate(parsed.cells) if cell == "wavenet_vq / bn"]  # probes, ABX, speaker id
    assert ["wavenet_vq / bn", "42.0", "5.0"] in rows  # speaker identification: accuracy and majority rate
    with pytest.raises(FileNotFoundError, match="no results.json"):
        write_html_report([tmp_path / "nothing"], tmp_path / "none.html")


def test_missing_audio_is_left_out_not_a_broken_player(tmp_path, caplog):
    build_runs(tmp_path / "runs")
    (tmp_path / "runs" / "audio" / "converted" / "u1-to-9.wav").unlink()
    page = Path(write_html_report([tmp_path / "runs" / "audio"], tmp_path / "report.html")).read_text()
    assert page.count("<audio") == 2 and "u1-to-9.wav" in caplog.text


def build_demo(root: Path) -> None:
    """What `make demo` leaves in RESULTS: the demo's CPC and the committed hub/cpc, which both call
    themselves cpc (the study names them cpc and hub-cpc), on characters and phones, and one probe point each."""
    for name, upstream, hours, flops in (("cpc", "runs/demo/hub/cpc", 2.0, 1.26e13), ("hub-cpc", "hub/cpc", 4.0, 3e13)):
        upstream_key = {"corpus": {"hours": hours, "seed": 2 if hours == 2.0 else 0}, "scale": 1.0,
                        "config": "configs/pretrain/cpc_tiny.yaml", "flops": flops}
        for folder, metric in (("ctc", "cer"), ("ctc_phone", "per")):
            for subset, steps in (("10min", 1200), ("1h", 2400)):
                _write(root / folder / name / subset / "seed0", {
                    "task": "ctc", "upstream": upstream, "upstream_name": "cpc", "probe_point": "ctx", "frozen": True,
                    "subset": subset, "seed": 0, "steps": steps, "tokenizer": "char" if metric == "cer" else "phone",
                    "metrics": {"test": {metric: 0.6 if name == "cpc" else 0.5}},
                    "study": {"corpus": {"hours": 2.0, "seed": 2}, "max_steps": steps, "upstream_key": upstream_key}})
        for task in ("probes", "abx"):
            _write(root / task / name, {"task": task.rstrip("s") if task == "probes" else task, "upstream": upstream, "upstream_name": "cpc",
                                        "split": "test", "study": {"upstream_key": upstream_key},
                                        "metrics": {"ctx": {"phone": {"accuracy": 40.0, "majority_baseline": 14.0},
                                                            "within": 20.0, "across": 30.0}}})
    _write(root / "ctc" / "fbank" / "10min" / "seed0", {"task": "ctc", "upstream": "fbank", "upstream_name": "fbank", "frozen": True,
                                                         "subset": "10min", "seed": 0, "metrics": {"test": {"cer": 0.7}}, "study": {}})


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium (make install puts Debian's chromium package in as root)")
def test_report_renders_in_headless_chromium_with_all_media_loaded(tmp_path):
    build_runs(tmp_path / "runs")
    spec = importlib.util.spec_from_file_location("recipe_report", ROOT / "recipes" / "report.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    path = recipe.main([str(tmp_path / "runs"), "--output", str(tmp_path / "out" / "report.html"), "--title", "Test report"])
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=15000", "--dump-dom", Path(path).resolve().as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert "<title>Test report</title>" in dom and dom.count("<table") == 8
    status = re.search(r'<p [^>]*id="media-status"[^>]*>', dom)
    images, audio = (re.search(f'data-{kind}="(\\d+)/(\\d+)"', status.group(0)) if status else None for kind in ("images", "audio"))
    assert images and audio, f"the page's media check did not run: {dom[-500:]}"
    assert images.groups() == ("3", "3") and audio.groups() == ("3", "3")
    assert 'alt="learned layer weights per probe point"' in dom  # the layer mix's figure, drawn and loaded


@pytest.mark.skipif(_chromium() is None, reason="no chromium (make install puts Debian's chromium package in as root)")
def test_demo_report_rows_are_named_as_the_study_names_them_in_chromium(tmp_path):
    """The rows of `make demo`'s report, as headless Chromium shows them: cpc and hub-cpc (never two rows of
    one name, never a config path or a dotted key), one row per representation across subsets; the probe
    scores, one point each, are bars; the title's code span is set as code."""
    build_demo(tmp_path / "results")
    path = write_html_report([tmp_path / "results"], tmp_path / "report.html", title="`make demo`")
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=15000", "--dump-dom", Path(path).resolve().as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    parsed = _Collect()
    parsed.feed(dom)
    assert "<h1><code>make demo</code></h1>" in dom and "<title>make demo</title>" in dom  # no literal backticks
    labels = [c for c in parsed.cells if "cpc" in c or "fbank" in c]
    # CER, PER and WER tables (no WER measured here: two tables), then probes and ABX.
    assert labels == ["fbank (frozen)", "cpc / ctx (frozen)", "hub-cpc / ctx (frozen)", "cpc / ctx (frozen)", "hub-cpc / ctx (frozen)",
                      "cpc / ctx", "hub-cpc / ctx", "cpc / ctx", "hub-cpc / ctx"]
    assert not any(mark in c for c in labels for mark in ("=", "study.", "configs/", "[", "upstream_key"))
    assert [a["alt"] for a in parsed.attrs["img"]] == ["probe scores per representation"]
    status = re.search(r'<p [^>]*id="media-status"[^>]*>', dom)
    assert status and 'data-images="1/1"' in status.group(0)  # the bars were drawn and load
