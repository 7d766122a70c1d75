"""Frozen features of a whole corpus split written to disk, one ``.npy`` per utterance and probe point,
from a streamed corpus (``hf:... --streaming``) or any ``load_corpus`` spec.

``DIR/POINT/ID.npy`` holds the ``(frames, dim)`` float32 features of utterance ``ID`` at ``POINT``
(names made safe for file systems); ``DIR/export.json`` says what made them. Processes split the
utterances (a stream by its shards, :mod:`repr_asr.data.streaming`; a loaded split by index) and each
writes its own files, atomically. Resume is per utterance: one whose files all exist is read past
without being decoded, so a killed export continues where it stopped; a folder that another export wrote
(other upstream weights, data, split or probe points, as its ``export.json`` records them) is refused with
:class:`ExportFolderError` naming both, and a folder another process is exporting into with
``RunFolderInUseError`` (:mod:`repr_asr.run_lock`). Undecodable audio is skipped, named in
``DIR/skipped-RANK.tsv`` and counted; ``strict`` stops at it instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..audio import AudioError, decode_audio
from ..run_lock import holds_run_folder
from .features import _run, model_device, model_digest, progress_bar

logger = logging.getLogger(__name__)


def safe_name(key: str) -> str:
    """A file name for an utterance id (path separators and odd characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key).lstrip(".") or "_"


class ExportFolderError(ValueError):
    """An export folder written by another export (other upstream weights, data, split or probe points)."""


def check_same_export(output_dir: Path, record: dict) -> None:
    """Raise :class:`ExportFolderError` naming both when ``output_dir/export.json`` records another export
    than ``record`` (the upstream by its weights' hash, or by name in a record that has none)."""
    path = Path(output_dir) / "export.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ExportFolderError(f"{path} is unreadable ({error}): export into another --output_dir, or delete it") from None
    differences = []
    if old.get("upstream_sha256") and old["upstream_sha256"] != record["upstream_sha256"] or (
            not old.get("upstream_sha256") and old.get("upstream") != record["upstream"]):
        differences.append(f"upstream {old.get('upstream')!r} there (weights {str(old.get('upstream_sha256'))[:12]}), "
                           f"{record['upstream']!r} here (weights {record['upstream_sha256'][:12]})")
    for key in ("data", "split", "probe_points"):
        if old.get(key) != record[key]:
            differences.append(f"{key} {old.get(key)!r} there, {record[key]!r} here")
    if differences:
        raise ExportFolderError(f"{output_dir} holds features of another export ({'; '.join(differences)}): export into "
                                "another --output_dir (or delete that folder)")


def _rows(data: str, split: str, streaming: bool, rank: int, world: int, max_utterances: Optional[int]):
    """(this process's rows, their count or None for a stream)."""
    location = data.partition(":")[2]
    if streaming:
        from datasets.distributed import split_dataset_by_node

        from ..data.streaming import open_stream

        stream = open_stream(location, split=split)
        if max_utterances:
            stream = stream.take(max_utterances)
        if world > 1:
            stream = split_dataset_by_node(stream, rank=rank, world_size=world)
        return (row for row in stream), None
    from ..data import load_corpus

    table = load_corpus(data)[split]
    if max_utterances:
        table = table.select(range(min(max_utterances, len(table))))
    mine = table.select(range(rank, len(table), world)).select_columns(["id", "audio"])
    return iter(mine), len(mine)


@holds_run_folder("output_dir")
def export_features(
    upstream: str,
    data: str,
    output_dir: str | os.PathLike,
    split: str = "test",
    probe_points: Optional[Sequence[str]] = None,
    streaming: bool = False,
    max_utterances: Optional[int] = None,
    strict: bool = False,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> dict:
    """Write the features of ``split`` of ``data`` (a ``--data`` spec) at ``probe_points`` (default: every
    one) under ``output_dir``; see the module docstring. Returns this process's counts: ``written``,
    ``already_there`` and ``skipped`` (``[{"id", "error"}]``)."""
    from ..data.streaming import example_key, process_position
    from ..models import resolve_upstream

    if streaming and not str(data).startswith("hf:"):
        raise ValueError(f"streaming needs an hf:NAME_OR_PATH corpus, got {data!r}")
    output_dir = Path(output_dir)
    rank, world = process_position()
    model, feature_extractor, _ = resolve_upstream(upstream)
    model.eval()
    if device:
        model.to(device)
    points = list(probe_points or model.probe_points)
    unknown = sorted(set(points) - set(model.probe_points))
    if unknown:
        raise ValueError(f"probe points {unknown} are not among the upstream's {list(model.probe_points)}")
    record = {
        "upstream": upstream, "upstream_sha256": model_digest(model), "data": data, "split": split,
        "streaming": streaming, "probe_points": points, "frame_step_seconds": {p: 1.0 / model.frame_rate(p) for p in points},
    }
    # A folder another export wrote (other weights, data, split or probe points) is refused: its files would be
    # kept as they are (resume) under a record that names what did not make them.
    check_same_export(output_dir, record)
    for point in points:
        (output_dir / safe_name(point)).mkdir(parents=True, exist_ok=True)
    if rank == 0:
        partial = output_dir / f"export.json.tmp{os.getpid()}"
        partial.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(partial, output_dir / "export.json")

    rows, total = _rows(data, split, streaming, rank, world, max_utterances)
    counts = {"written": 0, "already_there": 0, "skipped": []}
    bar = progress_bar(total, f"features of {split}", unit="utt", progress=progress) if rank == 0 else None
    target = model_device(model)
    for row in rows:
        key = example_key(row)
        paths = {p: output_dir / safe_name(p) / f"{safe_name(key)}.npy" for p in points}
        if all(path.exists() for path in paths.values()):
            counts["already_there"] += 1
        else:
            try:
                waveform = decode_audio(row["audio"], feature_extractor.sampling_rate, name=f"utterance {key}")
            except AudioError as error:
                if strict:
                    raise
                logger.warning("skipping utterance %s: %s", key, error)
                counts["skipped"].append({"id": key, "error": str(error)})
                waveform = None
            if waveform is not None:
                features = _run(model, [waveform], points, feature_extractor, target)
                for point, path in paths.items():
                    array = np.ascontiguousarray(features[point][0], dtype=np.float32)
                    if not np.isfinite(array).all():
                        raise ValueError(f"utterance {key}: non-finite features at {point}; nothing written for it")
                    partial = path.with_suffix(f".tmp{rank}.npy")
                    np.save(partial, array)
                    os.replace(partial, path)  # a killed export never leaves a half-written file under the final name
                counts["written"] += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if counts["skipped"]:
        (output_dir / f"skipped-{rank}.tsv").write_text("".join(f"{s['id']}\t{s['error']}\n" for s in counts["skipped"]))
    return counts
