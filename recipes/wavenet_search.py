"""Compare tiny WaveNet-AE settings at equal CPU time: what each learns per CPU-minute, scored on dev.

    python recipes/wavenet_search.py --output_dir runs/search [--data builtin:data/study] [--minutes 5] \
        [--candidates configs/study/wavenet_search.yaml] [--only NAME ...] [--max_utterances 300]

For each candidate (a pretraining config plus overrides) it times a few training steps, sets
``max_steps`` so that training takes ``--minutes`` of wall time on this machine, pretrains, then scores
the result on the dev split (speakers never seen in training): framewise phone and speaker probes at
``enc`` and ``bn``, within/across-speaker ABX at ``bn``, and the codebook perplexity and bits per sample
at the end of training. Writes OUTPUT_DIR/NAME/... per candidate and OUTPUT_DIR/search.{md,json}.
Every stage is skipped when its output exists, so a killed search resumes where it stopped. Run it with
the cores otherwise idle: the step timing decides the step counts.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from repr_asr.evaluation.abx import evaluate_abx
from repr_asr.evaluation.probes import ProbeConfig, evaluate_probes
from repr_asr.evaluation.report import write_results
from repr_asr.study import LaunchError, launch_recipe

ROOT = Path(__file__).resolve().parent.parent


def read_metrics(run_dir: Path) -> list:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def pretrain(config: str, overrides: dict, output_dir: Path, data: str) -> None:
    """One candidate's pretraining into ``output_dir`` (resumed from its checkpoints), logged to ``output_dir.log``."""
    args = [f"--{k}={json.dumps(v) if isinstance(v, (list, bool)) else v}" for k, v in overrides.items()]
    resume = ["--resume"] if (output_dir / "checkpoints").is_dir() else []
    try:
        launch_recipe("pretrain.py", ["--config", config, "--data", data, "--output_dir", output_dir, *args, *resume],
                      output_dir.parent / f"{output_dir.name}.log")
    except LaunchError as error:
        sys.exit(f"wavenet_search.py: {error}")


def steps_per_second(calibration: Path) -> float:
    """Steady-state training speed from the timing records of a short run (the first record, which
    carries the start-up, is only used as the origin)."""
    records = [r for r in read_metrics(calibration) if "elapsed_s" in r]
    if len(records) < 2:
        raise RuntimeError(f"no timing records in {calibration}/metrics.jsonl")
    first, last = records[0], records[-1]
    return (last["step"] - first["step"]) / max(1e-9, last["elapsed_s"] - first["elapsed_s"])


def last_value(records: list, key: str):
    values = [r[key] for r in records if key in r]
    return values[-1] if values else None


def score(upstream: str, data: str, cache: Path, max_utterances: int, points=("enc", "bn")) -> dict:
    probes = evaluate_probes(upstream, data, "dev", list(points), ["phone", "speaker"], max_utterances,
                             ProbeConfig(hidden_size=256, epochs=100, patience=5), cache_dir=str(cache), progress=False)
    abx = evaluate_abx(upstream, data, "dev", [points[-1]], "within", max_utterances, cache_dir=str(cache), progress=False)
    return {"probes": probes["metrics"], "abx": abx["metrics"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--data", default="builtin:data/study")
    parser.add_argument("--candidates", default=str(ROOT / "configs/study/wavenet_search.yaml"))
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall time per candidate")
    parser.add_argument("--only", nargs="+", default=None, help="candidate names to run (default: all)")
    parser.add_argument("--max_utterances", type=int, default=300, help="dev utterances scored")
    parser.add_argument("--references", nargs="*", default=["mfcc", "fbank"], help="features scored alongside (no pretraining)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.output_dir)
    candidates = yaml.safe_load(Path(args.candidates).read_text())["candidates"]
    rows = []
    for candidate in candidates:
        name = candidate["name"]
        if args.only and name not in args.only:
            continue
        folder = out / name
        results_path = folder / "results.json"
        if results_path.exists():
            rows.append(json.loads(results_path.read_text()))
            continue
        overrides = dict(candidate.get("overrides") or {})
        if not (folder / "calibration" / "results.json").exists():
            print(f"[{name}] timing 30 steps", flush=True)
            pretrain(candidate["config"], {**overrides, "training.max_steps": 30, "training.warmup_steps": 3,
                                           "training.log_steps": 10, "training.save_steps": 1000},
                     folder / "calibration", args.data)
        speed = steps_per_second(folder / "calibration")
        steps = max(10, int(args.minutes * 60 * speed))
        final = folder / "pretrain" / "final"
        if not (folder / "pretrain" / "results.json").exists():
            print(f"[{name}] {speed:.2f} steps/s: pretraining {steps} steps ({args.minutes} min)", flush=True)
            pretrain(candidate["config"], {**overrides, "training.max_steps": steps,
                                           "training.warmup_steps": max(1, steps // 20),
                                           "training.save_steps": max(1, steps // 4)},
                     folder / "pretrain", args.data)
        records = read_metrics(folder / "pretrain")
        pretrained = json.loads((folder / "pretrain" / "results.json").read_text())
        print(f"[{name}] scoring on dev", flush=True)
        row = {"name": name, "note": candidate.get("note", ""), "config": candidate["config"], "overrides": overrides,
               "steps": pretrained["steps"], "steps_per_s": speed, "minutes": args.minutes,
               "total_flops": pretrained["total_flops"],
               "train_seconds": last_value(records, "elapsed_s"),
               "codebook_perplexity": last_value(records, "codebook_perplexity"),
               "bits_per_sample": last_value(records, "bits_per_sample"),
               **score(str(final), args.data, folder / "features", args.max_utterances)}
        write_results(str(folder), row)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    for name in args.references:  # the same scores for features without pretraining, at "features"
        path = out / name / "results.json"
        if not path.exists():
            print(f"[{name}] scoring on dev", flush=True)
            write_results(str(out / name), {"name": name, "note": "no pretraining", **score(name, args.data, out / name / "features",
                                                                                           args.max_utterances, ("features",))})
        rows.append(json.loads(path.read_text()))
    (out / "search.json").write_text(json.dumps(rows, indent=1))
    (out / "search.md").write_text(markdown(rows))
    print(markdown(rows))


def markdown(rows: list) -> str:
    def pct(value):
        return "–" if value is None else f"{value:.1f}"

    lines = ["| setting | steps | FLOPs | perplexity | bits/sample | phone enc | phone bn | speaker enc | speaker bn "
             "| ABX within bn | ABX across bn |", "|" + "---|" * 11]
    for r in rows:
        p = r["probes"]
        enc, bn = ("enc", "bn") if "bn" in p else ("features", "features")
        get = lambda point, task: p.get(point, {}).get(task, {}).get("accuracy")  # noqa: E731
        abx = r["abx"].get(bn, {})
        flops = f"{r['total_flops']:.3g}" if "total_flops" in r else "–"
        lines.append(f"| {r['name']} | {r.get('steps', '–')} | {flops} | {pct(r.get('codebook_perplexity'))} "
                     f"| {pct(r.get('bits_per_sample'))} | {pct(get(enc, 'phone'))} | {pct(get(bn, 'phone'))} "
                     f"| {pct(get(enc, 'speaker'))} | {pct(get(bn, 'speaker'))} "
                     f"| {pct(abx.get('within'))} | {pct(abx.get('across'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_recipe(main)  # a user-input error: one line and exit status 1, no traceback
