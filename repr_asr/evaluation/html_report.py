"""One self-contained ``report.html`` from any set of run folders: tables, figures and audio in one file.

:func:`write_html_report` walks the given folders for ``results.json`` files and shows each kind it
finds, by its ``task``:

* ``ctc``: CER and WER on the test split per representation (rows) and labeled subset (columns), runs
  that differ only in their seed pooled as mean ± std (:mod:`repr_asr.evaluation.report`), and for the
  runs with a learned layer mix (``layer_weights``) a bar chart of its weights (one bar per probe point);
* ``probe``: accuracy per probe point for each probe task as a figure (one line per representation;
  a representation with one probe point, such as filterbanks, is a dashed level), and as a table;
* ``abx``: within- and across-speaker ABX error per representation and probe point;
* the downstream tasks of ``repr_asr.downstream.REGISTRY`` with an ``html_section`` (speaker
  identification: accuracy and majority rate per representation and probe point);
* ``pretraining``: steps and FLOPs of each pretrained upstream;
* ``codes``: code statistics and the code pictures (``recipes/codes.py``);
* ``resynthesis``: audio players with the original, resynthesised and converted utterances
  (``recipes/resynthesize.py``).

Images and audio are embedded as ``data:`` URIs, so the page can be mailed or attached as it is.
Missing cells are blank; nothing is filled in. A small script at the end of the page counts the images
and audio clips that loaded and says so in the page's last line (a broken file shows there).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..downstream import tasks_with
from ..models import upstream_display_name
from .report import SUBSET_ORDER, comparison_table, load_runs, row_labels

logger = logging.getLogger(__name__)

# Downstream tasks with a section of their own (repr_asr.downstream.REGISTRY), shown after ABX.
DOWNSTREAM = tuple(task for task in tasks_with("html_section") if task.kind != "ctc")
TASKS = ("ctc", "probe", "abx", "pretraining", "codes", "resynthesis") + tuple(task.kind for task in DOWNSTREAM)
PROBE_TASKS = ("phone", "speaker", "gender", "fbank")
SKIP_DIRS = {"checkpoints", "features", "cache", "best", "final", "logs", "tokenizer"}  # a run's insides hold no results

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
audio { width: 14em; }
.note { color: #555; font-size: 0.9em; }
"""

STATUS_SCRIPT = """
<script>
// Count the media that loaded: images by their decoded size, audio once its metadata is read.
window.addEventListener("load", function () {
  var images = Array.from(document.images), clips = Array.from(document.querySelectorAll("audio"));
  var pending = clips.length, ready = 0;
  function report() {
    var shown = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    var status = document.getElementById("media-status");
    status.textContent = shown + " of " + images.length + " images and " + ready + " of " + clips.length + " audio clips loaded.";
    status.dataset.images = shown + "/" + images.length;
    status.dataset.audio = ready + "/" + clips.length;
  }
  if (!pending) { report(); return; }
  clips.forEach(function (clip) {
    function done(ok) { if (clip.dataset.counted) return; clip.dataset.counted = "1"; if (ok) ready++; if (--pending === 0) report(); }
    if (clip.readyState >= 1) { done(true); return; }
    clip.addEventListener("loadedmetadata", function () { done(true); });
    clip.addEventListener("error", function () { done(false); });
    clip.load();
  });
});
</script>
"""


def find_results(folders: Iterable[Union[str, os.PathLike]]) -> dict[str, list[tuple[Path, dict]]]:
    """``{task: [(folder of results.json, results), ...]}`` for every ``results.json`` in or below
    ``folders`` (a file reached twice counts once). A folder with none is an error naming it; an
    unreadable file is skipped with a warning naming it."""
    found: dict[str, list[tuple[Path, dict]]] = {task: [] for task in TASKS}
    seen = set()
    for folder in folders:
        paths = []
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            if "results.json" in files:
                paths.append(Path(root) / "results.json")
        if not paths:
            raise FileNotFoundError(f"{folder}: no results.json in this folder or below it")
        for path in paths:
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            try:
                results = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                logger.warning("%s: skipped, not readable JSON (%s)", path, error)
                continue
            task = results.get("task", "ctc")
            if task in found:
                found[task].append((path.parent, results))
    return found


def name_of(folder: Path, results: dict) -> str:
    """A representation's short name: the recorded ``upstream_name``, else the one rule that wrote it
    (:func:`repr_asr.models.upstream_display_name`) applied to ``upstream``, else the run folder's."""
    if results.get("upstream_name"):
        return str(results["upstream_name"])
    if results.get("upstream"):
        return upstream_display_name(str(results["upstream"]), results.get("model_type"))
    return folder.name


def _e(value) -> str:
    return html.escape(str(value))


def _number(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _table(caption: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are given as HTML (escaped by the caller); an empty string is a blank cell."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


table = _table  # public: the downstream tasks' sections (repr_asr.downstream) build their tables with it


def _data_uri(path: Path, mime: str) -> Optional[str]:
    try:
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as error:
        logger.warning("%s: not embedded (%s)", path, error)
        return None


def _figure_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- sections ---------------------------------------------------------------------------------------


def ctc_section(folders: Sequence[Path], split: str) -> str:
    runs = load_runs([str(f) for f in folders])
    if not runs:
        return ""
    parts = ["<h2>Recognition with little labeled data</h2>",
             f"<p class='note'>CTC on frozen or fine-tuned features, {_e(split)} split, in percent; "
             "a cell pools the runs that differ only in their seed (mean ± std, n runs).</p>"]
    for metric in ("cer", "wer"):
        rows, subsets, cells = comparison_table(runs, split, metric)
        if not rows:
            continue
        subsets = sorted(subsets, key=lambda s: (SUBSET_ORDER.index(s) if s in SUBSET_ORDER else len(SUBSET_ORDER), s))
        table_rows = [[_e(row)] + [_e(cells[(row, s)]) if (row, s) in cells else "" for s in subsets] for row in rows]
        parts.append(_table(f"{metric.upper()} (%) on {split}", ["representation"] + [f"train-{s}" for s in subsets], table_rows))
    mixed = [run for run in runs if run.info.get("layer_weights")]
    if mixed:
        parts += ["<h3>The learned layer mix: which probe points the recogniser reads</h3>",
                  "<p class='note'>Softmax weights of each probe point in the mix the CTC head reads (the model kept as "
                  "<code>final/</code>), one panel per run; the dashed line is a uniform mix, where the weights start.</p>",
                  f"<img alt='learned layer weights per probe point' src='{layer_weights_figure(mixed)}'>"]
    return "\n".join(parts)


def layer_weights_figure(runs) -> str:
    """One bar chart per CTC run with a learned layer mix (``results["layer_weights"]``, ``RunResult`` s of
    :func:`repr_asr.evaluation.report.load_runs`): a bar per probe point, in the upstream's order."""
    from .code_figures import _pyplot

    plt = _pyplot()
    labels = row_labels(runs)
    runs = sorted(runs, key=lambda r: (labels[r.key], SUBSET_ORDER.index(r.subset) if r.subset in SUBSET_ORDER else len(SUBSET_ORDER),
                                       str(r.info.get("seed"))))
    columns = min(4, len(runs))
    rows = -(-len(runs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat[len(runs):]:
        axis.set_visible(False)
    for axis, run in zip(axes.flat, runs):
        weights = run.info["layer_weights"]
        points, values = list(weights), [float(v) for v in weights.values()]
        axis.bar(range(len(points)), values, color="#4c72b0")
        axis.axhline(1.0 / len(points), color="0.5", linestyle="--", linewidth=1)
        axis.set_xticks(range(len(points)), points, fontsize=7, rotation=45 if len(points) > 6 else 0)
        axis.set_ylim(0, max(values + [1.0 / len(points)]) * 1.15)
        axis.set_ylabel("weight", fontsize=8)
        seed = run.info.get("seed")
        axis.set_title(f"{labels[run.key]}\ntrain-{run.subset}" + (f", seed {seed}" if seed is not None else ""), fontsize=8)
    fig.tight_layout()
    uri = _figure_uri(fig)
    plt.close(fig)
    return uri


def _probe_points(entries) -> list[str]:
    points: list[str] = []
    for _, results in entries:
        for point in results.get("metrics", {}):
            if point not in points:
                points.append(point)
    return points


def _score(metrics: dict, task: str):
    return (metrics.get(task) or {}).get("r2" if task == "fbank" else "accuracy")


def probe_figure(entries: Sequence[tuple[Path, dict]], tasks: Sequence[str]) -> str:
    """One row of panels (one per task) per model family, x = that family's probe points in order, a
    line per representation; representations with a single probe point (spectral features) are dashed
    levels in every row, and the majority class a dotted one."""
    from .code_figures import _pyplot

    plt = _pyplot()
    levels = [(f, r) for f, r in entries if len(r.get("metrics", {})) == 1]
    families: dict[str, list] = {}
    for folder, results in entries:
        if len(results.get("metrics", {})) > 1:
            families.setdefault(str(results.get("model_type") or "upstream"), []).append((folder, results))
    if not families:  # only single-point representations: one row with them as levels
        families = {"features": []}
    fig, axes = plt.subplots(len(families), len(tasks), figsize=(3.3 * len(tasks) + 1.6, 2.8 * len(families)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (family, members) in enumerate(families.items()):
        points = _probe_points(members) or ["features"]
        for column, task in enumerate(tasks):
            axis = axes[row][column]
            floors = [m[task]["majority_baseline"] for _, r in entries for m in r.get("metrics", {}).values()
                      if "majority_baseline" in (m.get(task) or {})]
            for k, (folder, results) in enumerate(levels):
                value = _score(next(iter(results["metrics"].values())), task)
                if value is not None:
                    axis.axhline(value, linestyle="--", linewidth=1, color=colours[k % len(colours)], label=name_of(folder, results))
            for k, (folder, results) in enumerate(members):
                pairs = [(points.index(p), _score(m, task)) for p, m in results["metrics"].items() if _score(m, task) is not None]
                if pairs:
                    axis.plot(*zip(*pairs), marker="o", color=colours[(len(levels) + k) % len(colours)], label=name_of(folder, results))
            if floors:
                axis.axhline(sum(floors) / len(floors), color="0.5", linestyle=":", linewidth=1, label="majority class")
            axis.set_xticks(range(len(points)), points, fontsize=7)
            axis.set_title(f"{family}: {task} ({'R²' if task == 'fbank' else 'accuracy %'})", fontsize=9)
        axes[row][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    uri = _figure_uri(fig)
    plt.close(fig)
    return uri


def probe_section(entries: Sequence[tuple[Path, dict]]) -> str:
    if not entries:
        return ""
    tasks = [t for t in PROBE_TASKS if any(t in m for _, r in entries for m in r.get("metrics", {}).values())]
    uri = probe_figure(entries, tasks)
    rows = []
    for folder, results in entries:
        for point, metrics in results.get("metrics", {}).items():
            rows.append([_e(f"{name_of(folder, results)} / {point}")]
                        + [_number(_score(metrics, task), 3 if task == "fbank" else 1) for task in tasks])
    split = entries[0][1].get("split", "")
    return "\n".join([
        "<h2>What the features encode: probes</h2>",
        f"<p class='note'>Classifiers trained on frozen frames ({_e(split)} split): phone and gender on held-out speakers, "
        "speaker on held-out utterances; fbank is the R² of regressing the log-mel spectrogram back. The VQ-VAE's "
        "claim is that speaker information drops from <code>enc</code> to <code>bn</code> while phones stay.</p>",
        f"<img alt='probe accuracy per probe point' src='{uri}'>",
        _table("Probe scores (accuracy %, fbank: R²)", ["representation / probe point"] + tasks, rows),
    ])


def abx_section(entries: Sequence[tuple[Path, dict]]) -> str:
    if not entries:
        return ""
    rows = [[_e(f"{name_of(folder, results)} / {point}"), _number(m.get("within")), _number(m.get("across"))]
            for folder, results in entries for point, m in results.get("metrics", {}).items()]
    return "\n".join(["<h2>Phone discriminability: ABX</h2>",
                      "<p class='note'>Error in percent (chance 50): is a phone token closer to another token of its phone "
                      "than to one of another phone, in the same context? Across: X from another speaker.</p>",
                      _table("ABX error (%)", ["representation / probe point", "within speaker", "across speakers"], rows)])


def pretraining_section(entries: Sequence[tuple[Path, dict]]) -> str:
    if not entries:
        return ""
    rows = [[_e(name_of(folder, r)), _e(r.get("model_type", "")), _e(r.get("steps", "")),
             _number(r.get("flops_per_step") and r["flops_per_step"] / 1e9, 1), _number(r.get("total_flops") and r["total_flops"] / 1e12, 2)]
            for folder, r in entries]
    return "\n".join(["<h2>Pretraining compute</h2>",
                      _table("Compute per upstream", ["upstream", "model", "steps", "GFLOP / step", "total TFLOP"], rows)])


def codes_section(entries: Sequence[tuple[Path, dict]]) -> str:
    if not entries:
        return ""
    rows, pictures = [], []
    for folder, r in entries:
        m = r.get("metrics", {})
        rows.append([_e(name_of(folder, r)), _e(f"{m.get('codes_used', '')} / {m.get('codebook_size', '')}"), _number(m.get("perplexity")),
                     _number(m.get("bitrate"), 0), _number(m.get("nominal_bitrate"), 0), _number(m.get("segments_per_second")),
                     _number(m.get("phone_purity")), _number(m.get("phone_nmi"), 3), _number(m.get("speaker_nmi"), 3)])
        for label, file in (r.get("figures") or {}).items():
            uri = _data_uri(folder / file, "image/png")
            if uri:
                pictures.append(f"<figure><img alt='{_e(label)}' src='{uri}'><figcaption class='note'>{_e(name_of(folder, r))}: "
                                f"{_e(label)}</figcaption></figure>")
        tops = r.get("top_phones") or []
        if tops:
            listed = "; ".join(f"{t['code']}: " + ", ".join(f"{_e(p)} {100 * s:.0f}%" for p, s in t["phones"]) for t in tops[:12])
            pictures.append(f"<p class='note'>{_e(name_of(folder, r))}, most used codes and their phones: {listed}</p>")
    return "\n".join(["<h2>The VQ codes</h2>",
                      _table("Code statistics", ["upstream", "codes used", "perplexity", "bits/s", "nominal bits/s", "segments/s",
                                                 "phone purity %", "phone NMI", "speaker NMI"], rows), *pictures])


def resynthesis_section(entries: Sequence[tuple[Path, dict]]) -> str:
    if not entries:
        return ""
    parts = ["<h2>Listen: resynthesis and voice conversion</h2>",
             "<p class='note'>The original, the WaveNet decoder's reconstruction from the codes with the speaker's own "
             "embedding (an unseen speaker: the average training voice), and the same codes decoded as other training speakers.</p>"]
    for folder, r in entries:
        files = r.get("files", [])
        by_utterance: dict[str, dict[str, list]] = {}
        for entry in files:
            by_utterance.setdefault(entry["id"], {}).setdefault(entry["kind"], []).append(entry)
        voices = sorted({e.get("voice") for e in files if e["kind"] == "converted"})
        rows = []
        for utt, kinds in by_utterance.items():
            def player(entry) -> str:
                uri = _data_uri(folder / entry["path"], "audio/wav") if entry else None
                return f"<audio controls preload='metadata' src='{uri}'></audio>" if uri else ""
            converted = {e.get("voice"): e for e in kinds.get("converted", [])}
            rows.append([_e(utt), player((kinds.get("original") or [None])[0]), player((kinds.get("resynthesized") or [None])[0])]
                        + [player(converted.get(v)) for v in voices])
        parts.append(_table(f"{name_of(folder, r)} ({r.get('split', '')} split, {r.get('samples_per_second', 0):.0f} samples/s generated)",
                            ["utterance", "original", "resynthesized"] + [f"as speaker {v}" for v in voices], rows))
    return "\n".join(parts)


def write_html_report(folders: Sequence[Union[str, os.PathLike]], output: Union[str, os.PathLike], title: str = "repr-asr report",
                      split: str = "test") -> str:
    """Write the report of every ``results.json`` in or below ``folders`` to ``output`` and return its path."""
    found = find_results(folders)
    ctc_folders = sorted({folder for folder, _ in found["ctc"]})
    sections = [ctc_section(ctc_folders, split) if ctc_folders else "", probe_section(found["probe"]), abx_section(found["abx"]),
                *(task.function("html_section")(found[task.kind]) for task in DOWNSTREAM),
                pretraining_section(found["pretraining"]), codes_section(found["codes"]), resynthesis_section(found["resynthesis"])]
    counts = ", ".join(f"{len(v)} {k}" for k, v in found.items() if v)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="note">Written {time.strftime('%Y-%m-%d %H:%M')} from {_e(', '.join(str(f) for f in folders))}: {_e(counts or 'no results')}.
Blank cells were not measured.</p>
{''.join(s + chr(10) for s in sections if s)}
<p class="note" id="media-status">Media not checked (scripts are off).</p>
{STATUS_SCRIPT}
</body></html>
"""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, output)
    return str(output)
