"""The study: do the pretrained representations help a recogniser with little labeled data, and what do they encode?

    python recipes/study.py [--config configs/study/default.yaml] [--scale 1.0] [--stages corpus pretrain ...] \
        [--data_dir data/study] [--output_dir runs/study] [--results_dir docs/study] [--hub_dir hub] [--jobs 2]

Stages, in order (``make study`` runs them all; each skips what is done, so a killed study resumes):

1. ``corpus``: synthesise the built-in corpus (``corpus.hours``) into ``--data_dir``; its manifest is kept
   beside the results (``RESULTS_DIR/corpus.json``).
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
   ``ctc_selected``: the subsets of ``ctc.selected`` (train-10h, which costs as much as the others together)
   on its representations and seeds only; ``best_wavenet`` there is the WaveNet-AE with the lowest mean dev
   CER of the ``ctc`` stage on its largest subset (``ctc.best_wavenet_on``).
5. ``finetune``: fine-tuned CTC on each of ``ctc.finetune.subsets`` for the best WaveNet-AE and the others
   listed, each run starting from the frozen run of the same upstream, subset and seed (its ``final/``;
   retrained first when ``--output_dir`` lost it).
6. ``report``: ``RESULTS_DIR/README.md`` (tables, and the talk's findings checked one by one) and
   ``RESULTS_DIR/report.html`` (everything, with figures and audio, in one file).

``--jobs`` runs train (and analyses run, each launched as ``recipes/study_analysis.py``) at once, the cores
shared out among them: on 2 cores, two one-thread runs finished a pair of CTC runs 2.5× sooner than one
two-thread run after the other, and two one-thread tiny WaveNet-AE pretrainings ran 1.42× the steps per
second of one two-thread run (README, "The study"). A failed run is named with its log's tail, the others
finish, and the stage fails. The bookkeeping (results kept with their key, launches) is ``repr_asr.study``.

Heavy outputs (checkpoints, feature caches, logs) go to ``--output_dir``; each run's ``results.json``
is copied to ``--results_dir`` (small, meant to be committed: a stage whose result is there is done,
even in a fresh clone), the pretrained upstreams to ``--hub_dir``. A result made with other settings
(another scale, corpus or config) is redone. Run it with the cores otherwise idle.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import yaml

from repr_asr.evaluation.analysis import ANALYSES, applies
from repr_asr.study import CtcRun, Task, done, file_sha256, launch_recipe, launch_run, run_parallel, save, upstream_key
from repr_asr.study import plan
from repr_asr.study.export import export_upstream
from repr_asr.study.results import run_has_key

ROOT = Path(__file__).resolve().parent.parent
# The analyses (minutes) come before the CTC runs (most of the time), and the CTC runs go seed by seed, so
# that a study stopped early already has every representation's analysis and a first seed.
STAGES = ("corpus", "pretrain", *ANALYSES, "ctc", "ctc_selected", "finetune", "report")


class Study:
    """The stages, in the order they run: ``corpus``, then each task-list stage (``tasks(stage)``: the runs
    whose result is not there yet), then ``report``."""

    def __init__(self, args):
        self.spec = yaml.safe_load(Path(args.config).read_text())
        self.scale = args.scale
        self.data_dir = Path(args.data_dir)
        self.data = f"builtin:{self.data_dir}"
        self.out, self.results, self.hub = Path(args.output_dir), Path(args.results_dir), Path(args.hub_dir)
        self.started = time.time()
        self.cores = os.cpu_count() or 1
        self.jobs = max(1, min(args.jobs, self.cores))
        self.threads = max(1, self.cores // self.jobs)  # each of the ``jobs`` runs at once gets its share

    def say(self, message: str) -> None:
        # One write per line: runs started from two threads at once would otherwise share a line.
        sys.stdout.write(f"[study {time.time() - self.started:6.0f}s] {message}\n")
        sys.stdout.flush()

    def key(self, **extra) -> dict:
        """What a result depends on besides its own arguments: the corpus and the scale."""
        return {"corpus": self.spec["corpus"], "scale": self.scale, **extra}

    def tasks(self, stage: str) -> list:
        """The ``Task``s of ``stage`` still to run (none when every result is there with its key)."""
        return self.analysis(stage) if stage in ANALYSES else getattr(self, stage)()

    # 1. corpus
    def corpus(self) -> None:
        c = self.spec["corpus"]
        self.say(f"corpus: {c['hours']} h into {self.data_dir}")
        from repr_asr.data.builtin import build_corpus

        build_corpus(self.data_dir, hours=c["hours"], seed=c["seed"], num_workers=self.cores)
        # The results say which corpus they came from (hours, speakers, subsets, versions): RESULTS_DIR/corpus.json.
        self.results.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.data_dir / "manifest.json", self.results / "corpus.json")

    # 2. pretrain
    def pretrain(self) -> list:
        """Every upstream at the same FLOPs; ``final/`` exported to HUB_DIR/NAME."""
        flops = float(self.spec["pretrain"]["flops"]) * self.scale
        tasks = []
        for name, entry in self.spec["pretrain"]["upstreams"].items():
            key = self.key(config=entry["config"], config_sha256=file_sha256(entry["config"]), overrides=entry.get("overrides") or {}, flops=flops)
            if done(self.hub / name / "results.json", key, self.say):
                self.say(f"pretrain {name}: done ({self.hub / name})")
            else:
                tasks.append(Task(f"pretrain {name}", partial(self._pretrain, name, entry, key, flops)))
        return tasks

    def _pretrain(self, name: str, entry: dict, key: dict, flops: float) -> None:
        run, exported = self.out / "pretrain" / name, self.hub / name
        overrides = [f"--{k}={json.dumps(v) if isinstance(v, (bool, list)) else v}" for k, v in (entry.get("overrides") or {}).items()]
        self.say(f"pretrain {name}: {flops:.3g} FLOPs ({entry['config']} {' '.join(overrides)})")
        results = launch_run("pretrain.py", ["--config", entry["config"], "--data", self.data, "--training.flops_budget", flops, *overrides],
                             run, key, self.out / "logs" / f"pretrain-{name}.log", self.threads)
        export_upstream(run / "final", exported)
        save(exported / "results.json", results, key)
        self.say(f"pretrain {name}: {results['steps']} steps, {results['total_flops']:.3g} FLOPs -> {exported}")

    # 3. the analyses (probes, abx, the downstream tasks run as analyses, codes, resynthesis)
    def analysis(self, stage: str) -> list:
        """The ``stage`` analysis (``repr_asr.evaluation.analysis``) of every representation it applies to."""
        section = self.spec.get(stage)
        tasks = []
        for name, upstream in ({} if section is None else plan.representations(self.spec, self.hub, self.say)).items():
            key = self.key(settings=section, upstream_key=upstream_key(upstream))
            result = self.results / stage / name / "results.json"
            if applies(stage, upstream, section) and not done(result, key, self.say):
                tasks.append(Task(f"{stage} {name}", partial(self._analyse, stage, name, upstream, section, key, result)))
        return tasks

    def _analyse(self, stage: str, name: str, upstream: str, section: dict, key: dict, result: Path) -> None:
        output = self.out / "analyses" / stage / f"{name}.json"
        launch_recipe("study_analysis.py", ["--stage", stage, "--upstream", upstream, "--data", self.data, "--section", json.dumps(section),
                                            "--probe_points", json.dumps(plan.probe_points(upstream, section)),
                                            "--cache_dir", self.out / "features" / name, "--folder", result.parent, "--output", output],
                      self.out / "logs" / f"{stage}-{name}.log", self.threads)
        results = json.loads(output.read_text())
        if results is not None:
            save(result, results, key)
            self.say(f"{stage} {name}: done")

    # 4. ctc, ctc_selected and 5. finetune
    def ctc(self) -> list:
        return self._ctc_tasks(plan.ctc_runs(self.spec, self.hub, self.data_dir, self.scale, self.say))

    def ctc_selected(self) -> list:
        return self._ctc_tasks(plan.selected_ctc_runs(self.spec, self.hub, self.results, self.data_dir, self.scale, self.say))

    def finetune(self) -> list:
        return self._ctc_tasks(plan.finetune_runs(self.spec, self.hub, self.results, self.data_dir, self.scale, self.say))

    def _ctc_tasks(self, runs: list) -> list:
        keyed = [(run, run.key(self.key()), self.results / run.folder / "results.json") for run in runs]
        return [Task(run.label, partial(self._train_ctc, run, key, result)) for run, key, result in keyed if not done(result, key, self.say)]

    def _train_ctc(self, run: CtcRun, key: dict, result: Path = None) -> Path:
        """Train one CTC run (resuming it when it can), save its result to ``result`` (unless None), return its final/.
        A fine-tuning run starts from its frozen run's final/, trained again (result untouched) when ``--output_dir`` lost it."""
        init = self._frozen_final(run.init_from) if run.init_from else None
        self.say(f"{run.label}: at most {run.max_steps} steps" + (f", from {init}" if init else ""))
        results = launch_run("finetune_ctc.py", run.arguments(self.data, self.out / "cache" / run.name, init), self.out / run.folder, key,
                             self.out / "logs" / run.log_name, self.threads)
        if result is not None:
            save(result, results, key)
        test = results["metrics"].get("test", {})
        scores = " ".join(f"{m.upper()} {100 * test[m]:.1f} %" for m in ("cer", "per", "wer") if m in test)
        self.say(f"{run.label}: test {scores} (step {results.get('best_step')} of {results.get('steps_run')})")
        return self.out / run.folder / "final"

    def _frozen_final(self, frozen: CtcRun) -> Path:
        key, final = frozen.key(self.key()), self.out / frozen.folder / "final"
        if (final / "config.json").is_file() and run_has_key(final.parent, key):
            return final
        self.say(f"finetune {frozen.name} seed {frozen.seed}: its frozen run's final/ is not here; training it again")
        return self._train_ctc(frozen, key)

    # 6. report
    def report(self) -> None:
        from repr_asr.evaluation.html_report import write_html_report
        from repr_asr.evaluation.study_report import downstream_scores, scores_section, write_report
        from repr_asr.training.model_card import set_card_section, set_study_results

        upstreams = self.spec["pretrain"]["upstreams"]
        path = write_report(self.results, self.spec, self.scale, self.hub, ROOT / "hub")
        folders = [self.results] + [self.hub / name for name in upstreams if (self.hub / name / "results.json").exists()]
        html = write_html_report(folders, self.results / "report.html", title=self.spec.get("title", "The study"))
        self.say(f"report: {html}")
        for name in upstreams:  # each exported upstream's card carries its measured scores (text and model-index)
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
    # The analyses need only the pretrained upstreams, not each other: their tasks share one pool, so a stage
    # with one task (codes, resynthesis) runs beside the others instead of after them.
    steps = []
    for stage in [stage for stage in STAGES if stage in args.stages]:
        if stage in ANALYSES and steps and steps[-1][0] in ANALYSES:
            steps[-1].append(stage)
        else:
            steps.append([stage])
    for step in steps:
        try:
            if step[0] in ("corpus", "report"):
                getattr(study, step[0])()
            else:
                run_parallel([task for stage in step for task in study.tasks(stage)], study.jobs, study.say)
        except RuntimeError as error:  # a failed run (StageFailedError) or a stage that cannot run yet
            sys.exit(f"study.py: {' + '.join(step)}: {error}")
    study.say("finished")


if __name__ == "__main__":
    from repr_asr.errors import run_recipe

    run_recipe(main)
