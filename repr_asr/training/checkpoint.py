"""Atomic, verifiable checkpoints under ``DIR/checkpoints/checkpoint-STEP/``.

A checkpoint is written into ``.tmp-checkpoint-STEP/``, every file is fsync-ed, the trainer state
(``trainer_state.json``, holding the size and SHA-256 of every other file) is written last, and only
then is the folder renamed to ``checkpoint-STEP`` (a rename is atomic on POSIX file systems). A crash
at any point leaves either the previous checkpoints untouched or a ``.tmp-*`` folder that resume ignores.
A complete-looking checkpoint whose files were later truncated or corrupted fails the manifest check:
resume skips it with a warning naming it and falls back to the newest one that verifies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
STATE_FILE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names its folder and what is wrong."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some file systems do not allow opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def manifest_of(folder: Path) -> dict:
    """``{relative path: {"size", "sha256"}}`` for every file under ``folder`` except the state file."""
    manifest = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != STATE_FILE:
            manifest[str(path.relative_to(folder))] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return manifest


def finalize_checkpoint(tmp_dir: Path, final_dir: Path, state: dict) -> Path:
    """Seal ``tmp_dir`` (manifest + state, fsync) and rename it to ``final_dir`` atomically."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    for path in tmp_dir.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    state = dict(state, manifest=manifest_of(tmp_dir))
    state_path = tmp_dir / STATE_FILE
    with open(state_path, "w") as handle:
        json.dump(state, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    for path in [tmp_dir, *[p for p in tmp_dir.rglob("*") if p.is_dir()]]:
        _fsync_dir(path)
    if final_dir.exists():  # the same step saved again (e.g. a resumed run ending where it started)
        trash = final_dir.with_name(TRASH_PREFIX + final_dir.name)
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(final_dir, trash)
        os.rename(tmp_dir, final_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp_dir, final_dir)
    _fsync_dir(final_dir.parent)
    return final_dir


def checkpoint_step(path: Path) -> Optional[int]:
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(root: Path) -> list[Path]:
    """Sealed-looking ``checkpoint-STEP`` folders under ``root``, oldest first (temp folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def verify_checkpoint(path: Path) -> dict:
    """The trainer state of a complete checkpoint; ``CheckpointError`` naming the folder otherwise."""
    path = Path(path)
    state_path = path / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: {STATE_FILE} is missing")
    try:
        with open(state_path) as handle:
            state = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path}: {STATE_FILE} is unreadable ({error})") from None
    for key in ("step", "epoch", "batches_in_epoch", "manifest"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path}: {STATE_FILE} has no `{key}`")
    for name, expected in state["manifest"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        size = file.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} has {size} bytes, expected {expected['size']}")
        if _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its recorded SHA-256")
    return state


def latest_checkpoint(root: Path) -> Optional[tuple[Path, dict]]:
    """The newest checkpoint that verifies, with its state; broken newer ones are skipped with a warning.

    Returns ``None`` when there is no checkpoint at all; raises ``CheckpointError`` listing every
    problem when checkpoints exist but none verifies.
    """
    problems = []
    for path in reversed(list_checkpoints(root)):
        try:
            return path, verify_checkpoint(path)
        except CheckpointError as error:
            logger.warning("skipping %s", error)
            problems.append(str(error))
    if problems:
        raise CheckpointError("no usable checkpoint to resume from:\n  " + "\n  ".join(problems))
    return None


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint so that a crash mid-way never leaves a half one under its real name."""
    path = Path(path)
    trash = path.with_name(TRASH_PREFIX + path.name)
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def rotate_checkpoints(root: Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints (0 keeps all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(root)[:-keep]:
        remove_checkpoint(path)


def remove_leftovers(root: Path) -> None:
    """Delete ``.tmp-*`` / ``.trash-*`` folders a crash left behind."""
    root = Path(root)
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.is_dir() and (path.name.startswith(TMP_PREFIX) or path.name.startswith(TRASH_PREFIX)):
            logger.warning("removing %s left by an interrupted save", path)
            shutil.rmtree(path, ignore_errors=True)


def prepare_output_dir(output_dir, resume: bool) -> Path:
    """Check that a run may write into ``output_dir`` *before* anything is written there.

    A folder holding checkpoints is refused without ``resume`` (``CheckpointError`` naming it), so a
    mistyped command never overwrites the ``config.yaml``, tokenizer or metrics of an earlier run.
    Returns the folder as a ``Path`` (created when missing). A folder that another process is writing is
    refused before this, by the run's claim on it (:mod:`repr_asr.run_lock`: the recipes' run functions and
    ``Trainer.train`` hold it).
    """
    output_dir = Path(output_dir)
    root = output_dir / "checkpoints"
    if not resume and list_checkpoints(root):
        raise CheckpointError(
            f"{root} already holds checkpoints: pass --resume to continue that run, or choose another --output_dir"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir
