"""The study: do the pretrained representations help a recogniser with little labeled data, and what do they encode?

    python recipes/study.py [--config configs/study/default.yaml] [--scale 1.0] [--stages corpus pretrain ...] \
        [--data_dir data/study] [--output_dir runs/study] [--results_dir docs/study] [--hub_dir hub] [--jobs 2]

Stages, in order (``make study`` runs them all; each skips what is done, so a killed study resumes):

1. ``corpus``: synthesise the built-in corpus (``corpus.hours``) into ``--data_dir``.
2. ``pretrain``: every upstream of ``pretrain.upstreams`` at the same ``pretrain.flops`` × scale (FLOPs
   counted on a real batch, written into each result); ``final/`` is exported to ``HUB_DIR/NAME``.
3. ``probes``, ``abx``, ``codes``: phone / speaker / gender / log-mel probes at every probe point,
   within- and across-speaker ABX, and VQ code statistics with their pictures, on the test speakers;
   ``speaker_id`` (and any other downstream task of ``repr_asr.downstream.REGISTRY`` the study runs as an
   analysis, with its config section of the same name): speaker identification on mean-pooled features
   at every probe point, over the pool's speakers; ``resynthesis``: a few test utterances resynthesised
   and converted to training speakers (WAVs).
4. ``ctc``: frozen CTC heads for every upstream and baseline on every subset the corpus has, seed by
   seed, for each unit of ``ctc.units`` (characters: ``RESULTS_DIR/ctc``; phones: ``RESULTS_DIR/ctc_phone``);
   the step budget follows the subset and dev CER (PER for phones) picks the step kept (early stopping).
   With ``ctc.mixed`` (``subsets``, ``seeds``), also the learned mix of every probe point
   (``--model.weighted_sum true``) for each upstream with two probe points or more (``RESULTS_DIR/ctc_mix``).
5. ``finetune``: fine-tuned CTC on ``ctc.finetune.subset`` for the best WaveNet-AE (lowest mean dev
   CER, frozen, on that subset) and the others listed, each run starting from the frozen run of the
   same upstream, subset and seed (its ``final/``; retrained first when ``--output_dir`` lost it).
6. ``report``: ``RESULTS_DIR/README.md`` (tables, and the talk's findings checked one by one) and
   ``RESULTS_DIR/report.html`` (everything, with figures and audio, in one file).

``--jobs`` runs train (and analyses run, in worker processes) at once, the cores shared out among them: on 2 cores, two one-thread runs finished
a pair of CTC runs 2.5× sooner than one two-thread run after the other, and two one-thread tiny
WaveNet-AE pretrainings ran 1.42× the steps per second of one two-thread run (README, "The study").

Heavy outputs (checkpoints, feature caches, logs) go to ``--output_dir``; each run's ``results.json``
is copied to ``--results_dir`` (small, meant to be committed: a stage whose result is there is done,
even in a fresh clone), the pretrained upstreams to ``--hub_dir``. A result made with other settings
(another scale, corpus or config) is redone. Run it with the cores otherwise idle.
"""

import argparse
import concurrent.futures
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from repr_asr.evaluation.analysis import DOWNSTREAM_ANALYSES

ROOT = Path(__file__).resolve().parent.parent
# Probes, ABX, the downstream analyses and codes (minutes) come before the CTC runs (most of the time), and
# the CTC runs go seed by seed, so that a study stopped early already has every representation's analysis
# and a first seed.
STAGES = ("corpus", "pretrain", "probes", "abx", *DOWNSTREAM_ANALYSES, "codes", "resynthesis", "ctc", "finetune", "report")
EXPORTED = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


def file_sha256(path) -> str:
    """Results depend on what a config says, not only on its name."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_fingerprint(folder: Path) -> None:
    """``folder/fingerprint.json``: the exported upstream's features on a fixed signal, loaded as a user would."""
    import repr_asr  # noqa: F401  (registers the model types with the Auto classes)
    from transformers import AutoFeatureExtractor, AutoModel

    from repr_asr.training.hub import feature_fingerprint

    fingerprint = feature_fingerprint(AutoModel.from_pretrained(folder), AutoFeatureExtractor.from_pretrained(folder))
    (folder / "fingerprint.json").write_text(json.dumps(fingerprint) + "\n")


class Study:
    def __init__(self, args):
        self.args = args
        self.spec = yaml.safe_load(Path(args.config).read_text())
        self.scale = args.scale
        self.data_dir = Path(args.data_dir)
        self.data = f"builtin:{self.data_dir}"
        self.out = Path(args.output_dir)
        self.results = Path(args.results_dir)
        self.hub = Path(args.hub_dir)
        self.started = time.time()
        self.cores = os.cpu_count() or 1
        self.jobs = max(1, min(args.jobs, self.cores))

    # --- bookkeeping -------------------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"[study {time.time() - self.started:6.0f}s] {message}", flush=True)

    def key(self, **extra) -> dict:
        """What a result depends on besides its own arguments: the corpus and the scale."""
        return {"corpus": self.spec["corpus"], "scale": self.scale, **extra}

    def done(self, path: Path, key: dict) -> bool:
        if not path.exists():
            return False
        recorded = json.loads(path.read_text()).get("study") or {}
        if recorded != key:
            changed = sorted(k for k in set(key) | set(recorded) if key.get(k) != recorded.get(k))
            self.say(f"{path}: made with other settings ({', '.join(changed)}), redoing it")
            return False
        return True

    def save(self, path: Path, results: dict, key: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**results, "study": key}, indent=1) + "\n")

    def fresh_or_resumable(self, run: Path, key: dict) -> None:
        """Keep ``run`` only when it holds checkpoints of a run with this very ``key`` (then it resumes);
        otherwise start it afresh."""
        marker = run / "study_key.json"
        if run.exists() and not ((run / "checkpoints").is_dir() and marker.exists() and json.loads(marker.read_text()) == key):
            shutil.rmtree(run)
        run.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(key))

    def launch(self, recipe: str, arguments: list, log: Path, threads: int = 0) -> None:
        """One recipe under ``accelerate launch``, its one process given ``threads`` cores (default: all)."""
        accelerate = Path(sys.executable).parent / "accelerate"
        command = [str(accelerate), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                   "--dynamo_backend", "no", "--num_cpu_threads_per_process", str(threads or self.cores),
                   str(ROOT / "recipes" / recipe), *map(str, arguments)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as handle:
            if subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}).returncode:
                tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
                raise RuntimeError(f"{recipe} failed (log: {log}):\n{tail}")

    def run_parallel(self, tasks: list) -> None:
        """Run the callables ``tasks`` ``self.jobs`` at a time, in order. A failed one is named and the others
        go on (each saves its own result); the stage fails at the end if any did."""
        failed = []
        with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(task) for task in tasks]
            for future in futures:
                try:
                    future.result()
                except Exception as error:  # noqa: BLE001  (reported below, after the other runs have finished)
                    failed.append(str(error))
                    self.say(f"FAILED: {error}")
        if failed:
            sys.exit(f"study.py: {len(failed)} run(s) failed:\n" + "\n".join(failed))

    # --- what is studied ---------------------------------------------------------------------

    def upstreams(self) -> dict:
        return self.spec["pretrain"]["upstreams"]

    def representations(self) -> dict:
        """name -> upstream argument of the downstream recipes: the baselines, the upstreams pretrained
        here (exported to HUB_DIR/NAME), the committed checkpoints listed under ``published``
        (ROOT/hub/NAME, evaluated as they are; named ``hub-NAME``) and the upstreams of ``evaluate``
        (``name: folder or hub name``, e.g. a local ``hubert-base-ls960``, evaluated as they are)."""
        reps = {name: name for name in self.spec.get("baselines", [])}
        reps.update({name: str(self.hub / name) for name in self.upstreams()})
        for name in self.spec.get("published", []):
            folder = ROOT / "hub" / name
            if (folder / "config.json").exists():
                reps[f"hub-{name}"] = str(folder)
            else:
                self.say(f"published checkpoint hub/{name} is missing: not evaluated")
        # Any other upstream, evaluated as it is (no pretraining here): a folder or hub name of ours, or of a
        # transformers audio encoder (wav2vec2, HuBERT, WavLM, data2vec-audio).
        reps.update({name: str(path) for name, path in (self.spec.get("evaluate") or {}).items()})
        return reps

    def subsets(self) -> list:
        manifest = json.loads((self.data_dir / "manifest.json").read_text())
        missing = manifest.get("missing_labeled_subsets", {})
        return [s for s in self.spec["ctc"]["subsets"] if f"train-{s}" not in missing and s not in missing]

    # --- stages ------------------------------------------------------------------------------

    def corpus(self) -> None:
        c = self.spec["corpus"]
        self.say(f"corpus: {c['hours']} h into {self.data_dir}")
        from repr_asr.data.builtin import build_corpus

        build_corpus(self.data_dir, hours=c["hours"], seed=c["seed"], num_workers=os.cpu_count() or 1)

    def pretrain(self) -> None:
        """Every upstream at the same FLOPs, ``self.jobs`` at a time (each on its share of the cores)."""
        flops = float(self.spec["pretrain"]["flops"]) * self.scale
        tasks = []
        for name, entry in self.upstreams().items():
            key = self.key(config=entry["config"], config_sha256=file_sha256(entry["config"]), overrides=entry.get("overrides") or {}, flops=flops)
            exported = self.hub / name
            if self.done(exported / "results.json", key):
                self.say(f"pretrain {name}: done ({exported})")
                continue
            tasks.append(lambda name=name, entry=entry, key=key, exported=exported: self._pretrain(name, entry, key, exported, flops))
        self.run_parallel(tasks)

    def _pretrain(self, name: str, entry: dict, key: dict, exported: Path, flops: float) -> None:
        run = self.out / "pretrain" / name
        self.fresh_or_resumable(run, key)
        overrides = [f"--{k}={json.dumps(v) if isinstance(v, (bool, list)) else v}" for k, v in (entry.get("overrides") or {}).items()]
        resume = ["--resume"] if (run / "checkpoints").is_dir() else []
        self.say(f"pretrain {name}: {flops:.3g} FLOPs ({entry['config']} {' '.join(overrides)})")
        self.launch("pretrain.py", ["--config", entry["config"], "--data", self.data, "--output_dir", run,
                                    "--training.flops_budget", flops, *overrides, *resume], self.out / "logs" / f"pretrain-{name}.log",
                    threads=max(1, self.cores // self.jobs))
        results = json.loads((run / "results.json").read_text())
        exported.mkdir(parents=True, exist_ok=True)
        for file in EXPORTED:
            shutil.copy2(run / "final" / file, exported / file)
        export_fingerprint(exported)
        self.save(exported / "results.json", results, key)
        self.say(f"pretrain {name}: {results['steps']} steps, {results['total_flops']:.3g} FLOPs -> {exported}")

    def _ctc(self, name: str, upstream: str, subset: str, seed: int, config: str, max_steps: int, kind: str, training: dict = None,
             init_from: "callable" = None, init_key: dict = None, unit: str = "char", model: dict = None):
        """The CTC run as a callable, or None when its result is already there. ``training`` / ``model``:
        overrides of the config's ``training`` (e.g. ``eval_steps``) / ``model`` (e.g. ``weighted_sum``) section,
        part of the result's key. ``init_from``: a callable run first that returns the trained CTC model folder
        this run starts from; ``init_key`` the key of that run, part of this one's."""
        key = self._ctc_key(config, max_steps, upstream, training, init_key, unit, model)
        result = self.results / kind / name / subset / f"seed{seed}" / "results.json"
        if self.done(result, key):
            return None
        return lambda: self._train_ctc(name, upstream, subset, seed, config, max_steps, kind, training, key, result,
                                       init_from() if init_from else None, unit, model)

    def _ctc_key(self, config: str, max_steps: int, upstream: str, training: dict = None, init_key: dict = None,
                 unit: str = "char", model: dict = None) -> dict:
        # Character runs' keys name no unit: their results predate the other units and stay valid.
        return self.key(config=config, config_sha256=file_sha256(config), max_steps=max_steps, upstream_key=self._upstream_key(upstream),
                        **({"training": training} if training else {}), **({"init": init_key} if init_key else {}),
                        **({"unit": unit} if unit != "char" else {}), **({"model": model} if model else {}))

    def _train_ctc(self, name, upstream, subset, seed, config, max_steps, kind, training, key, result, init_from=None,
                   unit="char", model=None) -> Path:
        """Train one CTC run (resuming it when it can), save its result to ``result``, return its final/."""
        run = self.out / kind / name / subset / f"seed{seed}"
        label = f"{kind} {name} train-{subset} seed {seed}"
        self.fresh_or_resumable(run, key)
        resume = ["--resume"] if (run / "checkpoints").is_dir() else []
        start = ["--init_from", init_from] if init_from else []
        self.say(f"{label}: at most {max_steps} steps" + (f", from {init_from}" if init_from else ""))
        self.launch("finetune_ctc.py", ["--config", config, "--upstream", upstream, "--subset", subset, "--seed", seed,
                                        "--data", self.data, "--output_dir", run, "--max_steps", max_steps,
                                        "--data.cache_dir", self.out / "cache" / name, "--tokenizer", unit, *start,
                                        *[f"--training.{k}={v}" for k, v in (training or {}).items()],
                                        *[f"--model.{k}={json.dumps(v)}" for k, v in (model or {}).items()], *resume],
                    self.out / "logs" / f"{kind}-{name}-{subset}-seed{seed}.log", threads=max(1, self.cores // self.jobs))
        results = json.loads((run / "results.json").read_text())
        if result is not None:
            self.save(result, results, key)
        test = results["metrics"].get("test", {})
        scores = " ".join(f"{m.upper()} {100 * test[m]:.1f} %" for m in ("cer", "per", "wer") if m in test)
        self.say(f"{label}: test {scores} "
                 f"(step {results.get('best_step')} of {results.get('steps_run')})")
        return run / "final"

    def _upstream_key(self, upstream: str):
        """Downstream results depend on the upstream's weights: its pretraining key stands for them."""
        path = Path(upstream) / "results.json"
        return json.loads(path.read_text()).get("study") if path.exists() else None

    def _steps(self, max_steps: int) -> int:
        return max(100, int(round(max_steps * self.scale)))

    def _frozen_ctc(self, subset: str):
        """(training overrides, max_steps) of the frozen CTC runs on ``subset``."""
        spec = self.spec["ctc"]
        return ({k: v for k, v in spec["subsets"][subset].items() if k != "max_steps"},
                self._steps(spec["subsets"][subset]["max_steps"]))

    def ctc(self) -> None:
        spec = self.spec["ctc"]
        tasks = []
        for seed in spec["seeds"]:
            for subset in self.subsets():
                training, steps = self._frozen_ctc(subset)
                for unit in spec.get("units", ["char"]):
                    kind = "ctc" if unit == "char" else f"ctc_{unit}"
                    tasks += [self._ctc(name, upstream, subset, seed, spec["config"], steps, kind, training, unit=unit)
                              for name, upstream in self.representations().items()]
        mixed = spec.get("mixed") or {}
        for seed in mixed.get("seeds", []):  # the learned mix of every probe point, where there are two or more
            for subset in [s for s in mixed.get("subsets", []) if s in self.subsets()]:
                training, steps = self._frozen_ctc(subset)
                tasks += [self._ctc(name, upstream, subset, seed, spec["config"], steps, "ctc_mix", training, model={"weighted_sum": True})
                          for name, upstream in self.representations().items()
                          if name not in self.spec.get("baselines", []) and len(self.probe_point_names(upstream)) >= 2]
        self.run_parallel([task for task in tasks if task is not None])

    @staticmethod
    def probe_point_names(upstream: str) -> list:
        """Every probe point of ``upstream`` (its config.json's, else the loaded upstream's)."""
        config = Path(upstream) / "config.json"
        points = json.loads(config.read_text()).get("probe_points") if config.exists() else None
        if points is None:
            from repr_asr.models import load_upstream

            points = load_upstream(upstream).probe_points
        return list(points)

    def best_wavenet(self, subset: str) -> str:
        from repr_asr.evaluation.study_report import load_ctc

        runs = load_ctc(self.results / "ctc")
        means = {}
        for (name, sub), rows in runs.items():
            if sub == subset and name.startswith("wavenet"):
                means[name] = sum(r["best_dev_cer"] for r in rows) / len(rows)
        if not means:
            raise RuntimeError(f"no frozen CTC result of a WaveNet-AE on train-{subset} yet: run the ctc stage first")
        return min(means, key=means.get)

    def finetune(self) -> None:
        """Fine-tuned CTC, each run starting from the frozen run of the same upstream, subset and seed (its
        final/; retrained, without touching its reported result, when an earlier session's runs/ is gone)."""
        spec = self.spec["ctc"]["finetune"]
        subset = spec["subset"]
        if subset not in self.subsets():
            self.say(f"finetune: the corpus has no train-{subset}; skipped")
            return
        config = self.spec["ctc"]["config"]
        training, steps = self._frozen_ctc(subset)
        names = []
        for name in spec["upstreams"]:
            if name == "best_wavenet":
                name = self.best_wavenet(subset)
                self.say(f"finetune: best WaveNet-AE on dev (frozen, train-{subset}): {name}")
            names.append(name)
        tasks = []
        # Upstream-major, in the order listed (fine-tuning caches no features, so runs side by side share
        # nothing): with the slowest upstream listed first its runs start first and the short ones fill the
        # other core, where seed-major order left CPC's last run alone on one core for seven minutes.
        for name in names:
            for seed in self.spec["ctc"]["seeds"]:
                upstream = str(self.hub / name)
                frozen_key = self._ctc_key(config, steps, upstream, training)

                def frozen_final(name=name, upstream=upstream, seed=seed, frozen_key=frozen_key) -> Path:
                    final = self.out / "ctc" / name / subset / f"seed{seed}" / "final"
                    marker = final.parent / "study_key.json"
                    if (final / "config.json").is_file() and marker.exists() and json.loads(marker.read_text()) == frozen_key:
                        return final
                    self.say(f"finetune {name} seed {seed}: its frozen run's final/ is not here; training it again")
                    return self._train_ctc(name, upstream, subset, seed, config, steps, "ctc", training, frozen_key, None)

                tasks.append(self._ctc(name, upstream, subset, seed, spec["config"], self._steps(spec["max_steps"]), "finetune",
                                       spec.get("training"), init_from=frozen_final, init_key=frozen_key))
        self.run_parallel([task for task in tasks if task is not None])

    @staticmethod
    def probe_points(upstream: str, spec: dict):
        """``probe_points`` of a probes / abx section: a list, ``default`` (the upstream's default probe
        point only) or absent (every probe point)."""
        points = spec.get("probe_points")
        if points != "default":
            return points
        config = Path(upstream) / "config.json"
        point = json.loads(config.read_text()).get("default_probe_point") if config.exists() else None
        if point is None:  # a spectral baseline or a transformers encoder: the loaded upstream knows its own
            from repr_asr.models import load_upstream

            point = load_upstream(upstream).default_probe_point
        return [point]

    def _analysis(self, stage: str) -> None:
        """The ``stage`` analysis (repr_asr.evaluation.analysis) of every representation not yet done,
        ``self.jobs`` at a time in worker processes with their share of the cores each; a failed one is
        named and the others go on."""
        from repr_asr.evaluation.analysis import applies, run_analysis, set_threads

        spec = self.spec.get(stage)
        if spec is None:
            return
        pending = []
        for name, upstream in self.representations().items():
            key = self.key(settings=spec, upstream_key=self._upstream_key(upstream))
            result = self.results / stage / name / "results.json"
            if applies(stage, upstream, spec) and not self.done(result, key):
                pending.append((name, upstream, key, result))
        if not pending:
            return
        # spawn, not fork: a forked child of a process whose OpenMP threads have run can hang
        context = multiprocessing.get_context("spawn")
        failed = []
        with concurrent.futures.ProcessPoolExecutor(min(self.jobs, len(pending)), mp_context=context, initializer=set_threads,
                                                    initargs=(max(1, self.cores // self.jobs),)) as pool:
            futures = {pool.submit(run_analysis, stage, upstream, self.data, spec, self.probe_points(upstream, spec),
                                   str(self.out / "features" / name), str(result.parent)): (name, key, result)
                       for name, upstream, key, result in pending}
            for future in concurrent.futures.as_completed(futures):
                name, key, result = futures[future]
                try:
                    results = future.result()
                except Exception as error:  # noqa: BLE001  (reported below, after the others have finished)
                    failed.append(f"{stage} {name}: {error}")
                    self.say(f"FAILED: {stage} {name}: {error}")
                    continue
                if results is not None:
                    self.save(result, results, key)
                    self.say(f"{stage} {name}: done")
        if failed:
            raise RuntimeError(f"{len(failed)} analysis run(s) failed:\n" + "\n".join(failed))

    def probes(self) -> None:
        self._analysis("probes")

    def abx(self) -> None:
        self._analysis("abx")

    def codes(self) -> None:
        self._analysis("codes")

    def resynthesis(self) -> None:
        """WAVs of a few test utterances through each WaveNet-AE listed under ``resynthesis.upstreams``."""
        self._analysis("resynthesis")

    def run_stage(self, stage: str) -> None:
        """The stage's method, or, for a downstream task run as an analysis (``DOWNSTREAM_ANALYSES``), the
        analysis of that name (skipped when the config has no section for it)."""
        if stage in DOWNSTREAM_ANALYSES:
            self._analysis(stage)
        else:
            getattr(self, stage)()

    def report(self) -> None:
        from repr_asr.evaluation.html_report import write_html_report
        from repr_asr.evaluation.study_report import downstream_scores, scores_section, write_report
        from repr_asr.training.model_card import set_card_section, set_study_results

        path = write_report(self.results, self.spec, self.scale, self.hub, ROOT / "hub")
        folders = [self.results] + [self.hub / name for name in self.upstreams() if (self.hub / name / "results.json").exists()]
        html = write_html_report(folders, self.results / "report.html", title=self.spec.get("title", "The study"))
        self.say(f"report: {html}")
        for name in self.upstreams():  # each exported upstream's card carries its measured scores (text and model-index)
            if (self.hub / name / "README.md").exists():
                set_card_section(self.hub / name / "README.md", "## Measured in the study", scores_section(name, self.results))
                set_study_results(self.hub / name / "README.md", name, downstream_scores(name, self.results))
        self.say(f"report: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/study/default.yaml"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the pretraining FLOPs and the CTC step budgets")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--data_dir", default="data/study")
    parser.add_argument("--output_dir", default="runs/study")
    parser.add_argument("--results_dir", default="docs/study")
    parser.add_argument("--hub_dir", default="hub")
    parser.add_argument("--jobs", type=int, default=2, help="pretraining, CTC and analysis runs at once, the cores shared among them (at most one per core)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    study = Study(args)
    for stage in STAGES:
        if stage in args.stages:
            try:
                study.run_stage(stage)
            except RuntimeError as error:
                sys.exit(f"study.py: {stage}: {error}")
    study.say("finished")


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)
