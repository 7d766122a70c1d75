"""One writer per run folder: a lock file that a second process opening the folder stops at.

A run (pretraining, CTC fine-tuning, feature export, or any ``Trainer.train``) claims its folder by
creating ``DIR/.run.lock`` atomically (``O_CREAT | O_EXCL``), holding the process id, the host name, the
start time and the command line of its holder. Another process that opens the same folder stops at once
with :class:`RunFolderInUseError`, whose message names the folder and the holder: two runs writing one
folder would interleave their checkpoints, metrics and results, and no number from it could be trusted.

A lock left behind by a process that no longer runs (killed with SIGKILL, or its machine rebooted) is
*stale*: when its holder's host is this host and its process id is not alive (or is alive but started at
another time: the id was reused), the next claim removes it with a warning naming the dead holder and
takes the folder. A lock held on another host cannot be checked from here: the message says to delete the
file when that process is gone. The check-and-take-over step runs under ``flock`` on the folder where the
file system allows it, so two processes cleaning the same stale lock cannot both win.

Several processes of one run (``accelerate launch``, ``torchrun``) hold one lock: only the main process
(global rank 0; ``RANK`` in the environment) claims, the other ranks never look at it. Claims nest within
a process (a recipe claims, then its ``Trainer`` claims again): the lock is released when the outermost
claim ends.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"

# Resolved folder -> how many claims of this process hold it.
_HELD: dict[str, int] = {}
# Folders a claim of this process created: released empty (a run refused before it wrote anything), they go too.
_CREATED: set = set()


class RunFolderInUseError(RuntimeError):
    """The run folder is held by another live process; the message names the folder and the holder."""


def lock_path(folder) -> Path:
    return Path(folder) / LOCK_FILE


def is_main_process() -> bool:
    """Global rank 0 of a launched run (or a plain single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def _start_ticks(pid: int) -> Optional[int]:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its last ")"
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _holder_record() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "start_ticks": _start_ticks(os.getpid()),
        "command": " ".join(sys.argv)[:500],
    }


def holder_alive(holder: dict) -> Optional[bool]:
    """Whether the lock's holder still runs: True / False on this host, None when it cannot be told (another host)."""
    if not holder:
        return False  # an empty or unreadable record that stayed so: its writer died while writing it
    if holder.get("host") != socket.gethostname():
        return None
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False  # an unreadable record: no process can be holding it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    recorded, now = holder.get("start_ticks"), _start_ticks(pid)
    if recorded is not None and now is not None and int(recorded) != now:
        return False  # the id was reused by another process
    return True


def describe_holder(holder: dict) -> str:
    text = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    return text


def _read(path: Path) -> Optional[dict]:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@contextlib.contextmanager
def _folder_flock(folder: Path):
    """``flock`` on the folder itself for the check-and-claim step, where the file system supports it."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the flock


def claim_run_folder(folder, main: Optional[bool] = None) -> bool:
    """Claim ``folder`` (created when missing) for this process, or raise :class:`RunFolderInUseError`.

    ``main``: whether this process is the one that holds the run's lock (default: global rank 0, from
    ``RANK``); other processes of the run return ``False`` at once. Returns whether a claim was taken
    (release it with :func:`release_run_folder`).
    """
    if not (is_main_process() if main is None else main):
        return False
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key] += 1
        return True
    if not folder.exists():
        _CREATED.add(key)
    folder.mkdir(parents=True, exist_ok=True)
    path = lock_path(folder)
    record = _holder_record()
    with _folder_flock(folder):
        unreadable = 0
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(path)
                if holder is None:
                    continue  # released between the two calls
                if not holder and unreadable < 20:  # being written by a claim that has no flock (e.g. NFS)
                    unreadable += 1
                    time.sleep(0.1)
                    continue
                if holder.get("pid") == os.getpid() and holder.get("host") == record["host"]:
                    break  # ours (a claim released by a fork's exit, say): take it again
                alive = holder_alive(holder)
                if alive is False:
                    logger.warning("%s: removing a stale lock of a process that no longer runs (%s)", path,
                                   describe_holder(holder) if holder else "unreadable record")
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                hint = ("" if alive else f"; if that process is gone (it ran on another host, which cannot be "
                        f"checked from here), delete {path}")
                raise RunFolderInUseError(
                    f"run folder {folder} is in use by another process: {describe_holder(holder)}. Two runs writing "
                    f"one folder would mix their checkpoints and results: wait for it to end, or choose another "
                    f"--output_dir{hint}"
                ) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
                handle.flush()
                os.fsync(handle.fileno())
            break
    _HELD[key] = 1
    return True


def release_run_folder(folder) -> None:
    """End one claim of ``folder`` by this process; the lock file goes with the outermost one."""
    key = str(Path(folder).resolve())
    count = _HELD.get(key, 0)
    if count > 1:
        _HELD[key] = count - 1
        return
    if count == 0:
        return
    del _HELD[key]
    path = lock_path(folder)
    holder = _read(path)
    if holder and holder.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if key in _CREATED:
        _CREATED.discard(key)
        with contextlib.suppress(OSError):  # not empty: the run wrote something, which stays
            Path(folder).rmdir()


@contextlib.contextmanager
def run_folder_lock(folder, main: Optional[bool] = None):
    """``with run_folder_lock(DIR):`` claims ``DIR`` for the block (see :func:`claim_run_folder`)."""
    claimed = claim_run_folder(folder, main)
    try:
        yield
    finally:
        if claimed:
            release_run_folder(folder)


def holds_run_folder(argument: str = "output_dir"):
    """Decorator: the call claims the folder passed as ``argument`` for its whole duration (rank 0 only)."""

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments.get(argument)
            if folder is None:
                return function(*args, **kwargs)
            with run_folder_lock(folder):
                return function(*args, **kwargs)

        return wrapper

    return decorate
