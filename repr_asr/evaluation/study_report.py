"""The study's tables and findings, from the ``results.json`` files ``recipes/study.py`` collects.

Layout of ``RESULTS_DIR``: ``pretrain`` results live with the exported upstreams (``hub/NAME/results.json``);
``ctc/NAME/SUBSET/seedS/results.json`` (frozen, characters), ``ctc_phone/...`` (frozen, phones),
``ctc_mix/...`` (frozen, characters, the learned mix of probe points) and ``finetune/...`` (fine-tuned);
``probes/NAME``, ``abx/NAME``, ``codes/NAME`` and ``TASK/NAME`` for each downstream task the study runs
as an analysis (``speaker_id``; ``repr_asr.downstream.REGISTRY``, one ``results.json`` each). :func:`write_report` writes
``RESULTS_DIR/README.md``: the tables, then the talk's findings and the study's goals checked one by one
against the numbers, each saying whether it holds and by how much.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Optional

from ..audio import SPECTRAL_FEATURES
from ..downstream import tasks_with
from .labels import number, setting_words
from .report import SUBSET_ORDER

TOPLINE_TYPE = "phone_topline"  # trained with labels: shown as the topline, never ranked with the unsupervised rows
TOPLINE_GAIN = 30.0  # % relative over filterbanks that the topline must reach (else the harness cannot see it)


def is_topline(pretrained: dict, name: str) -> bool:
    return (pretrained.get(name) or {}).get("model_type") == TOPLINE_TYPE


def row_name(pretrained: dict, name: str) -> str:
    """The representation's name in a table: the topline says what it is."""
    return f"{name} (supervised topline)" if is_topline(pretrained, name) else name


def pretraining_words(study: dict) -> str:
    """How an upstream was pretrained, in words: its config's name and each override (``wavenet_vq_tiny
    config, jitter prob 0``), never a file path or a dotted key."""
    words = [setting_words("study.upstream_key.config", study["config"]).removeprefix("pretrained with ")] if study.get("config") else []
    words += [setting_words(f"study.upstream_key.overrides.{key}", value).removeprefix("pretraining ")
              for key, value in (study.get("overrides") or {}).items()]
    return ", ".join(words) or "–"


def _load(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def _percent(value):
    """results.json holds CER / WER as fractions; the tables show percent."""
    return None if value is None else 100.0 * value


def load_ctc(folder: Path) -> dict:
    """``{(name, subset): [results, ...]}`` over the seeds found under ``folder`` (``ctc`` or ``finetune``)."""
    runs: dict = {}
    for path in sorted(Path(folder).glob("*/*/seed*/results.json")):
        name, subset = path.parts[-4], path.parts[-3]
        runs.setdefault((name, subset), []).append(json.loads(path.read_text()))
    return runs


def mean_std(values: list) -> tuple:
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def _cell(values: list) -> str:
    mean, std, n = mean_std(values)
    if mean is None:
        return "–"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f} (n={n})"


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def ctc_table(runs: dict, metric: str, names: list, subsets: list, labels: Optional[dict] = None) -> list:
    lines = ["| representation | " + " | ".join(f"train-{s}" for s in subsets) + " |", "|---" * (len(subsets) + 1) + "|"]
    for name in names:
        cells = [_cell([_percent(r["metrics"].get("test", {}).get(metric)) for r in runs.get((name, s), [])]) for s in subsets]
        if any(c != "–" for c in cells):
            lines.append(f"| {(labels or {}).get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def ctc_mean(runs: dict, name: str, subset: str, metric: str = "cer", split: str = "test") -> Optional[float]:
    return mean_std([_percent(r["metrics"].get(split, {}).get(metric)) for r in runs.get((name, subset), [])])[0]


def _probe(probes: dict, name: str, point: str, task: str, field: str = "accuracy"):
    return ((probes.get(name) or {}).get("metrics", {}).get(point, {}).get(task) or {}).get(field)


def layer_mix_lines(mixed: dict, frozen: dict, names: list, labels: Optional[dict] = None) -> list:
    """The table "Learned layer mix vs default probe point (test CER)": per upstream and subset the CER of
    the learned mix of probe points (``ctc_mix`` runs) against the default probe point's (the ``ctc`` runs
    of the same seeds: the best single point the study trains a recogniser on), the point the mix weighs
    most, and a line saying where the mix beats that point."""
    lines = ["| representation | subset | default point | its CER | learned mix CER | mix − point | heaviest point (weight) |",
             "|---|---|---|---|---|---|---|"]
    beats, loses = [], []
    order = {n: i for i, n in enumerate(names)}
    for (name, subset), runs in sorted(mixed.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0],
                                                                      SUBSET_ORDER.index(kv[0][1]) if kv[0][1] in SUBSET_ORDER else 99)):
        seeds = {r.get("seed") for r in runs}
        single = [r for r in frozen.get((name, subset), []) if r.get("seed") in seeds]
        mix, _, n = mean_std([_percent(r["metrics"].get("test", {}).get("cer")) for r in runs])
        point_cer, _, n_point = mean_std([_percent(r["metrics"].get("test", {}).get("cer")) for r in single])
        point = next((r.get("probe_point") for r in single if r.get("probe_point")), None) or "default"
        weights: dict = {}
        for r in runs:
            for p, w in (r.get("layer_weights") or {}).items():
                weights[p] = weights.get(p, 0.0) + w / len(runs)
        heaviest = max(weights, key=weights.get) if weights else None
        label = (labels or {}).get(name, name)
        diff = f"{mix - point_cer:+.1f}" if None not in (mix, point_cer) else "–"
        lines.append(f"| {label} | train-{subset} | {point} | {_pct(point_cer)} | {_pct(mix)} | {diff} | "
                     + (f"{heaviest} ({weights[heaviest]:.2f})" if heaviest else "–") + " |")
        if None not in (mix, point_cer):
            (beats if mix < point_cer else loses).append(f"{label} on train-{subset} ({mix:.1f} vs {point_cer:.1f}, n={min(n, n_point)})")
    if beats or loses:
        lines += ["", f"The learned mix beats the best single point (the default probe point, same seeds) in test CER for "
                      f"{len(beats)} of {len(beats) + len(loses)}: " + ("; ".join(beats) if beats else "none")
                  + (f"; not for {'; '.join(loses)}." if loses else ".")]
    return lines


def topline_findings(pretrained: dict, frozen: dict, phones: dict, subsets: list) -> list:
    """Whether the supervised topline beats filterbanks by ``TOPLINE_GAIN`` % relative in CER and PER: if it
    does not, the harness (not the representations) is what cannot see a good representation."""
    lines = []
    for name in (n for n in pretrained if is_topline(pretrained, n)):
        for subset in subsets:
            for metric, runs in (("cer", frozen), ("per", phones)):
                fb, top = ctc_mean(runs, "fbank", subset, metric), ctc_mean(runs, name, subset, metric)
                if fb is None or top is None:
                    continue
                gain = 100.0 * (fb - top) / fb
                n = min(len(runs.get(("fbank", subset), [])), len(runs.get((name, subset), [])))
                verdict = "**holds**" if gain >= TOPLINE_GAIN else "**does not hold**"
                lines.append(f"- Harness check: the supervised topline ({name}) beats filterbanks by ≥ {TOPLINE_GAIN:.0f} % "
                             f"relative {metric.upper()} on train-{subset}: {verdict} — {top:.1f} vs fbank {fb:.1f} on test, "
                             f"{gain:+.1f} % relative (n={n} seed{'s' if n != 1 else ''}).")
    return lines


def findings(pretrained: dict, frozen: dict, probes: dict, abx: dict, subsets: list, phones: Optional[dict] = None,
             chosen_on: Optional[str] = None) -> list:
    """The talk's claims and the study's goals, each with the measured numbers and whether it holds. ``chosen_on``:
    the subset whose dev chose the best WaveNet-AE (``ctc.best_wavenet_on``), by default the largest every one ran on."""
    lines = topline_findings(pretrained, frozen, phones or {}, subsets)
    wavenets = [n for n in pretrained if n.startswith(("wavenet", "hub-wavenet"))]

    def verdict(ok):
        return "**holds**" if ok else "**does not hold**"

    # 1. best WaveNet-AE vs filterbanks, >= 20 % relative CER.
    ran = [n for n in wavenets if any(k[0] == n for k in frozen)]
    full = [s for s in subsets if ran and all(frozen.get((n, s)) for n in ran)]
    for subset in subsets:
        fb = ctc_mean(frozen, "fbank", subset)
        scores = {n: ctc_mean(frozen, n, subset) for n in wavenets}
        scores = {n: v for n, v in scores.items() if v is not None}
        if fb is None or not scores:
            continue
        # chosen on dev, reported on test; a subset only the chosen one ran on (ctc.selected: train-10h) has the
        # WaveNet-AE chosen on the dev of the largest subset every WaveNet-AE ran on
        dev = {n: ctc_mean(frozen, n, subset, split="dev") for n in scores}
        best = min(dev, key=lambda n: dev[n] if dev[n] is not None else float("inf"))
        chosen = "best on dev" if subset in full or not full else f"chosen on train-{chosen_on or full[-1]}'s dev"
        gain = 100.0 * (fb - scores[best]) / fb
        lines.append(f"- Goal: the best WaveNet-AE beats filterbanks by ≥ 20 % relative CER on train-{subset}: "
                     f"{verdict(gain >= 20)} — {best} ({chosen}) {scores[best]:.1f} vs fbank {fb:.1f} on test, "
                     f"{gain:+.1f} % relative.")
    # 2. ABX across at bn <= half of MFCC's.
    mfcc = ((abx.get("mfcc") or {}).get("metrics", {}).get("features") or {}).get("across")
    for name in wavenets:
        bn = ((abx.get(name) or {}).get("metrics", {}).get("bn") or {}).get("across")
        if mfcc is not None and bn is not None and pretrained[name].get("bottleneck") == "vq":
            lines.append(f"- Goal: across-speaker ABX at the VQ bottleneck ≤ half of MFCC's ({name}): {verdict(bn <= mfcc / 2)} — "
                         f"{bn:.1f} % vs MFCC {mfcc:.1f} % (ratio {bn / mfcc:.2f}; the paper: 8.1 vs 23.4, 0.35).")
    # 3. speaker information removed at bn, phones kept.
    for name in wavenets:
        s_enc, s_bn = _probe(probes, name, "enc", "speaker"), _probe(probes, name, "bn", "speaker")
        p_enc, p_bn = _probe(probes, name, "enc", "phone"), _probe(probes, name, "bn", "phone")
        if None in (s_enc, s_bn, p_enc, p_bn):
            continue
        ok = (s_enc - s_bn) >= 30 and abs(p_enc - p_bn) <= 5
        lines.append(f"- Goal: speaker accuracy at bn ≥ 30 points below enc with phone accuracy within 5 points ({name}): "
                     f"{verdict(ok)} — speaker {s_enc:.1f} → {s_bn:.1f} ({s_bn - s_enc:+.1f}), phone {p_enc:.1f} → {p_bn:.1f} ({p_bn - p_enc:+.1f}).")
    # 4. the talk's qualitative findings: jitter helps, MFCC >= fbank input, VQ removes speaker more than VAE / none.
    pairs = [("jitter helps (VQ with vs without jitter)", "wavenet_vq", "wavenet_vq_nojitter"),
             ("MFCC input does at least as well as filterbank input", "wavenet_vq", "wavenet_vq_fbank")]
    for claim, a, b in pairs:
        for subset in subsets:
            (va, sa, na), (vb, sb, nb) = (mean_std([_percent(r["metrics"].get("test", {}).get("cer")) for r in frozen.get((n, subset), [])])
                                          for n in (a, b))
            if va is not None and vb is not None:
                # A difference inside the seeds' spread (or from one seed) is not evidence either way.
                spread = max(sa or 0.0, sb or 0.0)
                caveat = (" (one seed: not conclusive)" if min(na, nb) < 2 else
                          f" (within the seeds' spread of {spread:.1f}: not conclusive)" if abs(va - vb) <= spread else "")
                lines.append(f"- Talk: {claim}, frozen CTC CER on train-{subset}: {verdict(va <= vb)}{caveat} — "
                             f"{a} {va:.1f} (n={na}) vs {b} {vb:.1f} (n={nb}).")
    spk = {n: _probe(probes, n, "bn", "speaker") for n in ("wavenet_vq", "wavenet_vae", "wavenet_ae")}
    if all(v is not None for v in spk.values()):
        ok = spk["wavenet_vq"] < min(spk["wavenet_vae"], spk["wavenet_ae"])
        lines.append(f"- Talk: the VQ bottleneck removes more speaker information than VAE or none (speaker probe at bn): "
                     f"{verdict(ok)} — VQ {spk['wavenet_vq']:.1f}, VAE {spk['wavenet_vae']:.1f}, none {spk['wavenet_ae']:.1f}.")
    # 5. ranking against the other families at equal compute.
    for subset in subsets:
        # Published checkpoints had another budget; the topline had labels.
        same_budget = [n for n in pretrained if not n.startswith("hub-") and not is_topline(pretrained, n)]
        ranked = sorted(((ctc_mean(frozen, n, subset), n) for n in same_budget + list(SPECTRAL_FEATURES)), key=lambda t: (t[0] is None, t[0]))
        ranked = [f"{n} {v:.1f}" for v, n in ranked if v is not None]
        if ranked:
            lines.append(f"- Ranking at equal pretraining FLOPs, frozen CTC test CER on train-{subset}: " + " < ".join(ranked) + ".")
    return lines


def write_report(results_dir, spec: dict, scale: float, hub_dir="hub", published_dir="hub") -> str:
    """``RESULTS_DIR/README.md`` from the results found; ``hub_dir`` holds the upstreams pretrained by this
    study, ``published_dir`` the committed checkpoints of ``spec["published"]`` (rows ``hub-NAME``)."""
    results_dir, hub_dir, published_dir = Path(results_dir), Path(hub_dir), Path(published_dir)
    published = {f"hub-{n}": published_dir / n for n in spec.get("published", [])}
    names = (list(spec.get("baselines", [])) + list(spec["pretrain"]["upstreams"]) + list(published)
             + list(spec.get("evaluate") or {}))
    pretrained = {}
    folders = {**{n: hub_dir / n for n in spec["pretrain"]["upstreams"]}, **published}
    for name, folder in folders.items():
        r = _load(folder / "results.json")
        if r:
            pretrained[name] = {**r, "bottleneck": (r.get("run", {}).get("model") or {}).get("bottleneck")}
    frozen, tuned, phones = load_ctc(results_dir / "ctc"), load_ctc(results_dir / "finetune"), load_ctc(results_dir / "ctc_phone")
    labels = {n: row_name(pretrained, n) for n in names}
    subsets = [s for s in SUBSET_ORDER if any(k[1] == s for k in frozen)]
    probes = {n: _load(results_dir / "probes" / n / "results.json") for n in names}
    abx = {n: _load(results_dir / "abx" / n / "results.json") for n in names}
    codes = {n: _load(results_dir / "codes" / n / "results.json") for n in names}

    out = [f"# {spec.get('title', 'The study (`make study`)')}: results at scale {scale:g}", "",
           f"Corpus: built-in, {spec['corpus']['hours']} h (seed {spec['corpus']['seed']}); every figure on the "
           "`test` speakers, never seen in pretraining or CTC training; settings chosen on `dev`. Written by "
           "`recipes/study.py` (`repr_asr/evaluation/study_report.py`); the run folders' `results.json` are beside this file.", "",
           "## Pretraining at equal compute", "",
           "| upstream | config | steps | FLOPs | wall time |", "|---|---|---|---|---|"]
    for name, r in pretrained.items():
        seconds = (r.get("metrics") or {}).get("train_seconds") or (r.get("metrics") or {}).get("elapsed_s")
        study = r.get("study") or {}
        out.append(f"| {labels.get(name, name)} | {pretraining_words(study)} "
                   f"| {r['steps']} | {number(r['total_flops'])} | {'–' if seconds is None else f'{seconds / 60:.1f} min'} |")
    for metric, runs, unit in (("cer", frozen, "characters"), ("per", phones, "phones"), ("wer", frozen, "characters")):
        if any(k[0] in names for k in runs):
            out += ["", f"## Frozen CTC, test {metric.upper()} (%; {unit})", ""] + ctc_table(runs, metric, names, subsets, labels)
    mixed = load_ctc(results_dir / "ctc_mix")
    if mixed:
        out += ["", "## Learned layer mix vs default probe point (test CER)", ""] + layer_mix_lines(mixed, frozen, names, labels)
    if tuned:
        tuned_subsets = [s for s in SUBSET_ORDER if any(k[1] == s for k in tuned)]
        out += ["", "## Fine-tuned CTC, test CER (%)", ""] + ctc_table(tuned, "cer", [n for n in names if any(k[0] == n for k in tuned)]
                                                                         + sorted({k[0] for k in tuned} - set(names)), tuned_subsets, labels)
    if any(probes.values()):
        out += ["", "## Probes (test speakers; accuracy %, log-mel R²)", "",
                "| representation | point | phone | speaker | gender | log-mel R² |", "|---|---|---|---|---|---|"]
        for name, r in probes.items():
            for point, tasks in (r or {}).get("metrics", {}).items():
                get = lambda t, f="accuracy": (tasks.get(t) or {}).get(f)  # noqa: E731
                r2 = get("fbank", "r2")
                out.append(f"| {name} | {point} | {_pct(get('phone'))} | {_pct(get('speaker'))} | {_pct(get('gender'))} "
                           f"| {'–' if r2 is None else f'{r2:.2f}'} |")
        base = next((r for r in probes.values() if r), None)
        if base:
            tasks = next(iter(base["metrics"].values()))
            out.append("| *majority class* | | " + " | ".join(_pct((tasks.get(t) or {}).get("majority_baseline")) for t in ("phone", "speaker", "gender")) + " | 0 |")
    if any(abx.values()):
        out += ["", "## ABX error (test speakers, %; chance 50)", "", "| representation | point | within | across |", "|---|---|---|---|"]
        for name, r in abx.items():
            for point, m in (r or {}).get("metrics", {}).items():
                out.append(f"| {name} | {point} | {_pct(m.get('within'))} | {_pct(m.get('across'))} |")
    for task in tasks_with("study_table"):  # downstream tasks the study runs as analyses (speaker identification)
        out += task.function("study_table")({n: _load(results_dir / task.name / n / "results.json") for n in names})
    if any(codes.values()):
        out += ["", "## VQ codes (test)", "", "| upstream | used / K | perplexity | bitrate (bit/s) | phone purity (majority) | phone NMI | speaker NMI | mean run (frames) |",
                "|---|---|---|---|---|---|---|---|"]
        for name, r in codes.items():
            if r:
                m = r["metrics"]
                out.append(f"| {name} | {m['codes_used']} / {m['codebook_size']} | {m['perplexity']:.1f} | {m['bitrate']:.0f} "
                           f"| {_pct(m.get('phone_purity'))} ({_pct(m.get('phone_majority'))}) | {m.get('phone_nmi', 0):.3f} "
                           f"| {m.get('speaker_nmi', 0):.3f} | {m['mean_run_frames']:.2f} |")
    out += ["", "## Findings", ""] + (findings(pretrained, frozen, probes, abx, subsets, phones,
                                              (spec.get("ctc") or {}).get("best_wavenet_on")) or ["(no results yet)"])
    path = results_dir / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return str(path)


# The downstream scores a hub/ card's model-index carries: (results folder, metric, what the recogniser writes).
CARD_SCORES = (("ctc", "cer", "characters"), ("ctc_phone", "per", "phones"))


def downstream_scores(name: str, results_dir) -> list[dict]:
    """What the study measured for the upstream ``name`` in the form a model card's ``model-index`` takes
    (``repr_asr.training.model_card.set_study_results``): per labeled subset, the test CER of the frozen
    CTC runs on characters and the test PER of those on phones, in percent, mean over the seeds.

    Returns:
        `list[dict]`: one ``{"metric", "units", "subset", "split", "value", "n", "seeds", "data", "corpus"}``
        per (metric, subset) measured, ``data`` the corpus spec the runs name and ``corpus`` the study's
        corpus record (hours, seed).
    """
    scores = []
    for folder, metric, units in CARD_SCORES:
        runs = load_ctc(Path(results_dir) / folder)
        for subset in sorted({s for n, s in runs if n == name}, key=lambda s: (SUBSET_ORDER.index(s) if s in SUBSET_ORDER else 99, s)):
            measured = [r for r in runs[(name, subset)] if r["metrics"].get("test", {}).get(metric) is not None]
            mean, _, n = mean_std([_percent(r["metrics"]["test"][metric]) for r in measured])
            if mean is None:
                continue
            scores.append({"metric": metric, "units": units, "subset": subset, "split": "test", "value": mean, "n": n,
                           "seeds": [r.get("seed") for r in measured], "data": measured[0].get("data"),
                           "corpus": (measured[0].get("study") or {}).get("corpus")})
    return scores


def scores_section(name: str, results_dir, subsets: Optional[list] = None) -> str:
    """Markdown of what the study measured for the upstream ``name`` (for its model card): frozen CTC
    CER / WER per subset, probe accuracies per probe point, ABX, the downstream analyses (speaker
    identification), code statistics, on the test speakers."""
    results_dir = Path(results_dir)
    frozen, phones = load_ctc(results_dir / "ctc"), load_ctc(results_dir / "ctc_phone")
    subsets = subsets or [s for s in SUBSET_ORDER if (name, s) in frozen or (name, s) in phones]
    lines = ["On the study's test speakers (never seen in training); `make study`, tables in `docs/study/README.md`.", ""]
    for subset in subsets:
        runs = frozen.get((name, subset), [])
        if runs:
            lines.append(f"- frozen CTC on train-{subset}: CER {_cell([_percent(r['metrics'].get('test', {}).get('cer')) for r in runs])}, "
                         f"WER {_cell([_percent(r['metrics'].get('test', {}).get('wer')) for r in runs])} %")
        if phones.get((name, subset)):
            lines.append(f"- frozen CTC on phones, train-{subset}: PER "
                         f"{_cell([_percent(r['metrics'].get('test', {}).get('per')) for r in phones[(name, subset)]])} %")
    probes = _load(results_dir / "probes" / name / "results.json")
    for point, tasks in (probes or {}).get("metrics", {}).items():
        accs = ", ".join(f"{t} {tasks[t]['accuracy']:.1f} %" for t in ("phone", "speaker", "gender") if "accuracy" in (tasks.get(t) or {}))
        lines.append(f"- probes at `{point}`: {accs}")
    abx = _load(results_dir / "abx" / name / "results.json")
    for point, m in (abx or {}).get("metrics", {}).items():
        lines.append(f"- ABX at `{point}`: within {_pct(m.get('within'))} %, across {_pct(m.get('across'))} %")
    for task in tasks_with("card_lines"):
        downstream = _load(results_dir / task.name / name / "results.json")
        lines += task.function("card_lines")(downstream) if downstream else []
    codes = _load(results_dir / "codes" / name / "results.json")
    if codes:
        m = codes["metrics"]
        lines.append(f"- VQ codes: {m['codes_used']} of {m['codebook_size']} used, perplexity {m['perplexity']:.1f}, "
                     f"{m['bitrate']:.0f} bit/s, phone NMI {m.get('phone_nmi', 0):.3f}, speaker NMI {m.get('speaker_nmi', 0):.3f}")
    return "\n".join(lines) + "\n"
