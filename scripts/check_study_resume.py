"""Would a resumed study rerun anything? Lists every stage's pending tasks on committed results; trains nothing.

    python scripts/check_study_resume.py [--config configs/study/default.yaml] [--results_dir docs/study] \
        [--hub_dir hub] [--manifest docs/study/corpus.json] [--scale 1.0]

Copies the results and the exported upstreams' records (results.json, config.json) to a temporary folder,
builds ``recipes/study.py``'s ``Study`` on them and prints each stage's task list (``Study.tasks``). Exit
status 1 when any is not empty, i.e. when ``make study`` would retrain or re-analyse something (a key
changed: a config file edited, a key field added...). ``--manifest``: the corpus manifest, for the subsets
the corpus has (only it is read from the corpus; the study keeps a copy beside its results, ``corpus.json``).
"""

import argparse
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pending_tasks(config: str, results_dir: Path, hub_dir: Path, manifest: Path, scale: float = 1.0, say=print) -> dict:
    """``{stage: [task label, ...]}`` of every stage with tasks, of a study resumed on copies of ``results_dir``
    and of ``hub_dir``'s records, with the corpus manifest ``manifest``."""
    spec = importlib.util.spec_from_file_location("recipe_study", ROOT / "recipes" / "study.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(results_dir, tmp / "results")
        # Only the records: the study reads an upstream's key and probe points, never its weights here.
        shutil.copytree(hub_dir, tmp / "hub", ignore=lambda folder, names: [n for n in names if (Path(folder) / n).is_file()
                                                                           and n not in ("results.json", "config.json")])
        (tmp / "data").mkdir()
        shutil.copy(manifest, tmp / "data" / "manifest.json")
        args = argparse.Namespace(config=config, scale=scale, data_dir=str(tmp / "data"), output_dir=str(tmp / "runs"),
                                  results_dir=str(tmp / "results"), hub_dir=str(tmp / "hub"), jobs=2)
        study = recipe.Study(args)
        study.say = say
        stages = [stage for stage in recipe.STAGES if stage not in ("corpus", "report")]
        return {stage: labels for stage in stages if (labels := [task.label for task in study.tasks(stage)])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/study/default.yaml")
    parser.add_argument("--results_dir", default="docs/study")
    parser.add_argument("--hub_dir", default="hub")
    parser.add_argument("--manifest", default="docs/study/corpus.json")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    pending = pending_tasks(args.config, Path(args.results_dir), Path(args.hub_dir), Path(args.manifest), args.scale)
    for stage, labels in pending.items():
        print(f"{stage}: {len(labels)} task(s) to run: " + ", ".join(labels))
    print("a resumed study would rerun nothing" if not pending else "a resumed study would rerun the tasks above")
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(main())
