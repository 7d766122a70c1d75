"""Recipes launched as subprocesses, each with its log file and its share of the cores, several at once.

On 2 cores, two one-thread runs side by side finished a pair of CTC runs 2.5x sooner than one two-thread
run after the other (README, "The study"): a study runs its tasks ``jobs`` at a time, each launch given
``cores // jobs`` threads.
"""

import concurrent.futures
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from .results import fresh_or_resumable

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
LOG_TAIL_LINES = 20


class LaunchError(RuntimeError):
    """A launched recipe exited with an error: the message names the recipe and its log, with the log's last lines."""


class StageFailedError(RuntimeError):
    """Some tasks of :func:`run_parallel` failed (after the others finished): the message names each with its error."""


@dataclass(frozen=True)
class Task:
    """One unit of work of a stage.

    Args:
        label (`str`): what the task is, in progress and failure messages (e.g. ``"ctc fbank train-1h seed 0"``).
        run (`Callable[[], object]`): does it, typically through :func:`launch_recipe`; raises on failure.
    """

    label: str
    run: Callable[[], object]


def launch_command(recipe: str, arguments: Sequence, threads: Optional[int] = None) -> tuple[list, dict]:
    """The command and environment that ``accelerate launch`` runs ``recipes/RECIPE`` with, as one process on
    ``threads`` CPU threads (default: every core), computed by accelerate's own launcher code in this process.

    Running the ``accelerate`` CLI instead would import the launcher anew for each of a study's ~200 runs
    (docs/performance.md, "Tests"), for a process that only sets these variables and starts the recipe."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    args = launch_command_parser().parse_args([
        "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--num_cpu_threads_per_process", str(threads or os.cpu_count() or 1), str(RECIPES / recipe), *map(str, arguments)])
    args, _, _ = _validate_launch_command(args)  # as the CLI does: defaults from the user's accelerate config
    command, env = prepare_simple_launcher_cmd_env(args)
    # tokenizers' thread pool and the DataLoader's forked workers do not mix (a warning per worker, or a hang).
    return command, {**env, "TOKENIZERS_PARALLELISM": "false"}


def launch_recipe(recipe: str, arguments: Sequence, log: Path, threads: Optional[int] = None) -> None:
    """Run ``recipes/RECIPE`` as ``accelerate launch`` would (:func:`launch_command`), its stdout and stderr to
    ``log``; raise :class:`LaunchError` with the log's tail if it fails."""
    command, env = launch_command(recipe, arguments, threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if status.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-LOG_TAIL_LINES:])
        raise LaunchError(f"{recipe} failed (log: {log}):\n{tail}")


def run_parallel(tasks: Sequence[Task], jobs: int, say: Callable[[str], None] = print) -> None:
    """Run ``tasks`` ``jobs`` at a time, in order. A failed task is named (``say``) and the others go on, each
    saving its own result; then :class:`StageFailedError` lists every failure."""
    failed = []
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [(task, pool.submit(task.run)) for task in tasks]
        for task, future in futures:
            try:
                future.result()
            except Exception as error:  # noqa: BLE001  (reported below, after the other tasks have finished)
                failed.append(f"{task.label}: {error}")
                say(f"FAILED: {task.label}: {error}")
    if failed:
        raise StageFailedError(f"{len(failed)} of {len(tasks)} task(s) failed:\n" + "\n".join(failed))


def launch_run(recipe: str, arguments: Sequence, run: Path, key: dict, log: Path, threads: Optional[int] = None) -> dict:
    """Launch a training recipe into the run folder ``run`` and return its ``results.json``: the run resumes from
    its checkpoints when they were made under ``key``, else starts afresh (:func:`~.results.fresh_or_resumable`)."""
    fresh_or_resumable(run, key)
    resume = ["--resume"] if (run / "checkpoints").is_dir() else []
    launch_recipe(recipe, [*arguments, "--output_dir", run, *resume], log, threads)
    return json.loads((run / "results.json").read_text())
