"""Running a study: many recipe runs side by side, each result kept with the key it was computed under.

* :mod:`.results`: the keyed result cache (``done(path, key)``, ``save``, ``fresh_or_resumable``).
* :mod:`.launch`: one recipe as a subprocess with its log and thread count, and several at once
  (``run_parallel``: a failed task is named with its log's tail, the others finish, then it raises).
* :mod:`.ctc_run`: one CTC run: its folder, command line and key.
* :mod:`.plan`: what a study config asks for (representations, subsets, step budgets, probe points).
* :mod:`.export`: a pretraining run's ``final/`` exported to a hub folder with its feature fingerprint.

Used by ``recipes/study.py`` and ``recipes/wavenet_search.py``; nothing below ``repr_asr.study`` imports it.
"""

from .ctc_run import CtcRun
from .launch import LaunchError, StageFailedError, Task, launch_recipe, launch_run, run_parallel
from .results import done, file_sha256, fresh_or_resumable, save, upstream_key

__all__ = ["CtcRun", "LaunchError", "StageFailedError", "Task", "done", "file_sha256", "fresh_or_resumable", "launch_recipe", "launch_run",
           "run_parallel", "save", "upstream_key"]
