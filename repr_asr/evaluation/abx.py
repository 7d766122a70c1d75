"""Phone discriminability (ABX) with the Libri-light / ZeroSpeech 2021 conventions, batched in torch.

An ABX triplet asks whether a token X of phone ``a`` lies closer to another token A of ``a`` than to a
token B of phone ``b`` (same triphone context ``prev_next``). The conventions of Libri-light's
``eval/ABX_src`` (and its packaged successor ``zerospeech-libriabx2``) are followed exactly:

* the ``.item`` file: a header line, then ``fileID onset offset phone prev next speaker`` per token;
* a token's frames are ``ceil(r * onset - 0.5) <= t < floor(r * offset - 0.5)`` at ``r`` frames per
  second (frame ``t`` centred at ``(t + 0.5) / r``); tokens with no frame are dropped;
* frames are L2-normalised (an all-zero frame is put at the largest distance from every other frame),
  the frame distance is the angle ``acos(cos) / π``, and two tokens are compared by DTW whose summed
  cost is divided by the length of its path (traced back preferring the diagonal, then ``j - 1``,
  then ``i - 1``);
* within speaker: A, B, X all from one speaker, X ≠ A, both drawn from the group of ``a``; across
  speaker: A and B from one speaker, X from another (at most ``max_x_across`` other speakers, drawn at
  random); groups larger than ``max_size_group`` tokens are subsampled at random;
* each ``(context, speaker, a, b)`` cell scores the share of triplets answered wrongly (ties count
  half); scores are averaged over contexts (and X speakers), then over speakers, then over the
  ordered phone pairs ``(a, b)``.

Differences from the reference code, none of which changes a score: distances are computed for
all needed token pairs at once in padded batches (the reference loops over pairs in Cython), and each
pair is computed once (pairs are registered and deduplicated as integer tensors, not in Python loops). Subsampling uses Python's ``random`` with the same seed and the same draws in
the same order as the reference; the order of tokens within a group follows the item file, whereas
the reference follows the order its directory walk finds the feature files, so subsampled scores can
differ from the reference by sampling noise (scores without subsampling are identical).

Why not ``fastabx`` (PyPI), which computes the same ABX: ``make bench``'s ``abx`` row scores one export with
ours, ``zerospeech-libriabx2`` and fastabx 0.9 (2026-12-06, 8,082 items: within / across 27.92 / 31.20,
27.97 / 31.25 and 27.49 / 31.46 %; 55 s, 273 s and 1.8 s on a loaded 2-core machine). It agrees within
0.5 points (exactly without subsampling, with ``FASTABX_WITH_LIBRILIGHT_BUG=1`` so that its tokens end where
Libri-light's do) and is 30x faster, but it needs Python >= 3.12 while this package supports the 3.11 its
machines default to, and its subsampling does not repeat the reference's draws. Adopt it (keeping the
export and the parity test) once the package requires 3.12; until then the bench row keeps the comparison
current (``BENCH_FASTABX_PYTHON`` names a 3.12 interpreter with fastabx).
"""

from __future__ import annotations

import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..downstream import results_header
from .features import progress_bar

ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
DEFAULT_SEED = 3459  # the reference evaluator's default seed
DEFAULT_MAX_SIZE_GROUP = 10
DEFAULT_MAX_X_ACROSS = 5


class ItemFileError(ValueError):
    """An ``.item`` file or item list that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Item:
    """One phone token: ``phone`` of utterance ``file`` between ``onset`` and ``offset`` seconds."""

    file: str
    onset: float
    offset: float
    phone: str
    prev: str
    next: str
    speaker: str


# --- item files -------------------------------------------------------------------------------------


def make_items(
    utterances: Iterable[Mapping],
    skip_phones: Sequence[str] = ("SIL",),
) -> list[Item]:
    """Triphone items from corpus rows with ``id``, ``speaker_id`` and ``phones``
    (``{"phone": [...], "start": [...], "end": [...]}`` in seconds).

    Every phone that has a neighbour on both sides becomes an item with context ``prev``/``next``;
    phones in ``skip_phones`` (silence by default) are never the centre phone but may be context.
    Rows with no phone timings give no items.
    """
    items: list[Item] = []
    for row in utterances:
        utt_id = str(row["id"])
        phones = row.get("phones") or {}
        labels, starts, ends = phones.get("phone") or [], phones.get("start") or [], phones.get("end") or []
        if not (len(labels) == len(starts) == len(ends)):
            raise ItemFileError(f"utterance {utt_id}: phones has {len(labels)} labels, {len(starts)} starts, {len(ends)} ends")
        for i in range(1, len(labels) - 1):
            if labels[i] in skip_phones:
                continue
            if not float(starts[i]) < float(ends[i]):
                raise ItemFileError(f"utterance {utt_id}: phone {i} ({labels[i]}) starts at {starts[i]} s, not before its end {ends[i]} s")
            items.append(Item(utt_id, float(starts[i]), float(ends[i]), str(labels[i]), str(labels[i - 1]), str(labels[i + 1]), str(row["speaker_id"])))
    return items


def write_item_file(path: Union[str, os.PathLike], items: Iterable[Item]) -> Path:
    """Write ``items`` as an ``.item`` file (header line, then one token per line, times in seconds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [ITEM_HEADER + "\n"]
    for item in items:
        fields = (item.file, item.phone, item.prev, item.next, item.speaker)
        if any(not f or any(c.isspace() for c in f) for f in fields):
            raise ItemFileError(f"{path}: item {item} has an empty field or one with whitespace")
        lines.append(f"{item.file} {item.onset:.4f} {item.offset:.4f} {item.phone} {item.prev} {item.next} {item.speaker}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def read_item_file(path: Union[str, os.PathLike]) -> list[Item]:
    """Read an ``.item`` file (its first line is a header and is skipped, as the reference does)."""
    items = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if number == 1 or not line.strip():
                continue
            fields = line.split()
            if len(fields) != 7:
                raise ItemFileError(f"{path}:{number}: expected 7 fields (file onset offset phone prev next speaker), got {len(fields)}")
            try:
                onset, offset = float(fields[1]), float(fields[2])
            except ValueError:
                raise ItemFileError(f"{path}:{number}: onset/offset {fields[1]!r} {fields[2]!r} are not numbers") from None
            items.append(Item(fields[0], onset, offset, fields[3], fields[4], fields[5], fields[6]))
    return items


# --- distances and DTW ------------------------------------------------------------------------------


def normalize_frames(features: torch.Tensor) -> torch.Tensor:
    """``(frames, dim)`` → ``(frames, dim + 1)`` unit vectors; an all-zero frame becomes a vector at
    angle π from every non-zero frame and 0 from other zero frames (the reference's convention)."""
    features = features.float()
    norm = features.pow(2).sum(-1, keepdim=True)  # (T, 1)
    zero = norm.squeeze(-1) == 0
    out = features / torch.sqrt(norm).clamp(min=1e-30)
    out[zero] = 1.0 / math.sqrt(features.shape[-1])
    border = torch.full((features.shape[0], 1), 1e-12, dtype=out.dtype)
    border[zero] = -2e12
    return torch.cat([out, border], dim=-1)


def angular_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N, Lx, D)`` × ``(N, Ly, D)`` normalised frames → ``(N, Lx, Ly)`` angles ``acos(cos) / π``."""
    return torch.bmm(x, y.transpose(1, 2)).clamp(-1.0, 1.0).acos() / math.pi


def dtw_batch(distances: torch.Tensor, lengths_x: torch.Tensor, lengths_y: torch.Tensor) -> torch.Tensor:
    """Path-length-normalised DTW of ``N`` frame-distance matrices at once.

    Args:
        distances: ``(N, Lx, Ly)``; pair ``n`` uses ``distances[n, :lengths_x[n], :lengths_y[n]]``.
        lengths_x, lengths_y: ``(N,)`` real sizes, each at least 1.

    Returns ``(N,)`` float32: the cheapest monotonic path's summed distance (steps right, down or
    diagonal) divided by the number of cells on the path found by backtracking from the end, choosing
    the diagonal on ties, then the left cell, then the cell above.
    """
    n, lx, ly = distances.shape
    if n == 0:
        return distances.new_zeros(0)
    lengths_x, lengths_y = lengths_x.long(), lengths_y.long()
    if bool((lengths_x < 1).any() or (lengths_y < 1).any()):
        raise ValueError("dtw_batch: every sequence needs at least one frame")
    d = distances.float()
    # cost[n, i + 1, j + 1] is the best cost to reach cell (i, j); row and column 0 are an inf border
    # with a 0 corner, so the first row and column need no special case.
    cost = torch.full((n, lx + 1, ly + 1), math.inf, dtype=torch.float32)
    cost[:, 0, 0] = 0.0
    for k in range(lx + ly - 1):  # anti-diagonals i + j = k: each depends on the two before it only
        i = torch.arange(max(0, k - ly + 1), min(k, lx - 1) + 1)
        j = k - i
        best = torch.minimum(torch.minimum(cost[:, i, j + 1], cost[:, i, j]), cost[:, i + 1, j])  # (N, cells)
        cost[:, i + 1, j + 1] = d[:, i, j] + best
    rows = torch.arange(n)
    total = cost[rows, lengths_x, lengths_y]
    # Backtrack all pairs together, one step per iteration, until each reaches the first row or column.
    i, j = lengths_x - 1, lengths_y - 1
    path = torch.ones(n, dtype=torch.long)
    while True:
        active = (i > 0) & (j > 0)
        if not bool(active.any()):
            break
        up, left, diag = cost[rows, i, j + 1], cost[rows, i + 1, j], cost[rows, i, j]
        take_diag = (diag <= left) & (diag <= up)
        take_left = ~take_diag & (left <= up)
        take_up = ~take_diag & ~take_left
        i = i - (active & (take_diag | take_up)).long()
        j = j - (active & (take_diag | take_left)).long()
        path = path + active.long()
    path = path + i + j  # the rest of the path runs straight along the first row or column
    # The reference divides a float32 cost by an integer in double precision.
    return (total.double() / path.double()).float()


# --- ABX --------------------------------------------------------------------------------------------


def token_frame_range(onset: float, offset: float, frame_rate: float, num_frames: int) -> tuple[int, int]:
    """Frames ``[start, end)`` of a token, as the reference evaluator cuts them (frame ``t`` centred at
    ``(t + 0.5) / frame_rate``); ``end <= start`` means the token has no frame and is dropped."""
    start = max(0, int(math.ceil(frame_rate * onset - 0.5)))
    end = min(num_frames, int(math.floor(frame_rate * offset - 0.5)))
    return start, (end if start < num_frames else start)


@dataclass
class _Tokens:
    """Tokens that kept at least one frame, with integer ids in order of first appearance."""

    frames: list[torch.Tensor]  # normalised (frames, dim + 1) per token
    context: list[int]
    phone: list[int]
    speaker: list[int]
    phones: list[str]
    speakers: list[str]


def _token_frames(items: Sequence[Item], features: Mapping[str, object], frame_rate: float, context_mode: str) -> _Tokens:
    ids: dict[str, dict[str, int]] = {"context": {}, "phone": {}, "speaker": {}}

    def index(kind: str, key: str) -> int:
        return ids[kind].setdefault(key, len(ids[kind]))

    normalised: dict[str, torch.Tensor] = {}
    tokens = _Tokens([], [], [], [], [], [])
    for item in items:
        # Ids over all items, as the reference assigns them while reading the item file.
        c = index("context", f"{item.prev}+{item.next}" if context_mode == "within" else "any")
        p, s = index("phone", item.phone), index("speaker", item.speaker)
        if item.file not in normalised:
            if item.file not in features:
                raise KeyError(f"ABX: no features for file {item.file!r} named in the item list")
            array = torch.as_tensor(np.asarray(features[item.file]), dtype=torch.float32)
            if array.ndim != 2 or array.shape[0] == 0:
                raise ValueError(f"ABX: features of file {item.file!r} must be (frames, dim) with frames > 0, got {tuple(array.shape)}")
            normalised[item.file] = normalize_frames(array)
        file_frames = normalised[item.file]
        start, end = token_frame_range(item.onset, item.offset, frame_rate, file_frames.shape[0])
        if end <= start:
            continue
        tokens.frames.append(file_frames[start:end])
        tokens.context.append(c)
        tokens.phone.append(p)
        tokens.speaker.append(s)
    tokens.phones = list(ids["phone"])
    tokens.speakers = list(ids["speaker"])
    return tokens


class _PairDistances:
    """Collects the (row token, column token) pairs the triplets need, then computes each once.

    Pairs are integer keys ``row * n_tokens + col`` kept as tensors, deduplicated with ``torch.unique``
    and sorted by size with ``argsort``: the former dictionary of tuples filled in a Python double loop
    spent more time registering pairs than computing their DTW."""

    def __init__(self, tokens: _Tokens):
        self.tokens = tokens
        self.n = len(tokens.frames)
        self.blocks: list[torch.Tensor] = []  # flat keys of each need(); -1 on a symmetric block's diagonal
        self.size = 0
        self.values: Optional[torch.Tensor] = None
        self.slots: Optional[torch.Tensor] = None  # per registered key: its row in ``values`` (-1: none)

    def need(self, rows: Sequence[int], cols: Sequence[int], symmetric: bool) -> tuple[int, int, int]:
        """Register ``d(rows[i], cols[j])`` and return a handle for :meth:`matrix` (a
        ``(len(rows), len(cols))`` matrix once computed). With ``symmetric`` (rows == cols) only ``i < j``
        is computed and mirrored, as the reference does, and the diagonal is a dummy 0."""
        r = torch.as_tensor(rows, dtype=torch.long)
        if symmetric:
            i = torch.arange(len(r))
            first, second = torch.minimum(i[:, None], i[None, :]), torch.maximum(i[:, None], i[None, :])
            keys = r[first] * self.n + r[second]
            keys.fill_diagonal_(-1)
        else:
            keys = r[:, None] * self.n + torch.as_tensor(cols, dtype=torch.long)[None, :]
        handle = (self.size, keys.shape[0], keys.shape[1])
        self.blocks.append(keys.reshape(-1))
        self.size += keys.numel()
        return handle

    def compute(self, max_floats: int = 2**24, progress: Optional[bool] = None, desc: str = "ABX distances") -> None:
        """DTW distance of every registered pair, in padded batches (a tqdm bar over the pairs: ``progress``)."""
        keys = torch.cat(self.blocks) if self.blocks else torch.zeros(0, dtype=torch.long)
        valid = keys >= 0
        pairs, inverse = torch.unique(keys[valid], return_inverse=True)
        self.slots = torch.full_like(keys, -1)
        self.slots[valid] = inverse
        frames = self.tokens.frames
        token_lengths = torch.tensor([f.shape[0] for f in frames], dtype=torch.long)
        rows, cols = pairs // max(1, self.n), pairs % max(1, self.n)
        lx, ly = token_lengths[rows], token_lengths[cols]
        values = torch.zeros(len(pairs), dtype=torch.float32)
        # Pairs of similar sizes share a batch, so padding stays small: sorted by (lx, ly).
        order = torch.argsort(lx * (int(ly.max()) + 1 if len(ly) else 1) + ly, stable=True)
        lx_sorted, ly_sorted = lx[order].numpy(), ly[order].numpy()
        dim = frames[0].shape[1] if frames else 1
        # Every token padded once; a batch is then two index_selects (per-batch pad_sequence of the pairs'
        # tokens took half the time). Only when that fits in memory; otherwise padded batch by batch.
        longest = int(token_lengths.max()) if len(frames) else 0
        padded = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True) if 0 < len(frames) * longest * dim <= 2**27 else None
        bar = progress_bar(len(pairs), desc, "pair", progress)
        start = 0
        while start < len(order):
            stop = start + self._batch_size(lx_sorted[start:], ly_sorted[start:], dim, max_floats)
            batch = order[start:stop]
            if padded is not None:
                x = padded[:, : int(lx[batch].max())].index_select(0, rows[batch])  # (N, Lx, D)
                y = padded[:, : int(ly[batch].max())].index_select(0, cols[batch])  # (N, Ly, D)
            else:
                x = torch.nn.utils.rnn.pad_sequence([frames[k] for k in rows[batch].tolist()], batch_first=True)
                y = torch.nn.utils.rnn.pad_sequence([frames[k] for k in cols[batch].tolist()], batch_first=True)
            values[batch] = dtw_batch(angular_distances(x, y), lx[batch], ly[batch])
            bar.update(len(batch))
            start = stop
        bar.close()
        self.values = torch.cat([values, values.new_zeros(1)])  # the last: slot -1, a dummy 0

    @staticmethod
    def _batch_size(lx: np.ndarray, ly: np.ndarray, dim: int, max_floats: int) -> int:
        """How many of the (size-sorted) pairs ``lx, ly`` fit one batch whose padded tensors stay within
        ``max_floats`` (at least one), looking at a window that grows until the batch ends inside it."""
        window = 1024
        while True:
            width_x = lx[:window]  # non-decreasing: the batch's Lx is its last pair's
            width_y = np.maximum.accumulate(ly[:window])
            count = np.arange(1, len(width_x) + 1)
            over = count * (width_x + width_y) * dim + count * width_x * width_y * 3 > max_floats  # False then True
            fits = int(np.searchsorted(over, True))
            if fits < len(width_x) or window >= len(lx):
                return max(1, fits)
            window *= 4

    def matrix(self, handle: tuple[int, int, int]) -> torch.Tensor:
        start, n_rows, n_cols = handle
        slots = self.slots[start:start + n_rows * n_cols].view(n_rows, n_cols)
        return self.values[slots]


def _cell_error(dxa: torch.Tensor, dxb: torch.Tensor, symmetric: bool) -> float:
    """Share of (x, a, b) triplets where x is closer to b than to a (ties count half)."""
    nx, na = dxa.shape
    if symmetric:  # x and a come from the same group; x == a is not a triplet
        dxa = dxa.clone()
        dxa.fill_diagonal_(float(dxb.max()) + 1)
        n_pos = na * (na - 1)
    else:
        n_pos = na * nx
    a, b = dxa[:, :, None], dxb[:, None, :]  # (Nx, Na, 1), (Nx, 1, Nb)
    correct = (a < b).sum().item() + 0.5 * (a == b).sum().item()
    return 1.0 - correct / (n_pos * dxb.shape[1])


def _mean_over(cells: Mapping[tuple, float], keep: Sequence[int]) -> dict[tuple, float]:
    """Average cell scores sharing the coordinates ``keep``."""
    sums: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
    for key, value in cells.items():
        entry = sums[tuple(key[k] for k in keep)]
        entry[0] += value
        entry[1] += 1
    return {key: total / count for key, (total, count) in sums.items()}


def _aggregate(cells: Mapping[tuple, float]) -> Optional[float]:
    """Cells keyed ``(speaker, a, b, context[, x speaker])`` → mean over context (and X speaker), then
    speaker, then phone pair."""
    if not cells:
        return None
    per_speaker = _mean_over(cells, keep=(0, 1, 2))  # (speaker, a, b)
    per_pair = _mean_over(per_speaker, keep=(1, 2))  # (a, b)
    return float(sum(per_pair.values()) / len(per_pair))


def abx_error(
    features: Mapping[str, object],
    items: Sequence[Item],
    frame_rate: float,
    speaker_modes: Sequence[str] = ("within", "across"),
    context_mode: str = "within",
    max_size_group: int = DEFAULT_MAX_SIZE_GROUP,
    max_x_across: int = DEFAULT_MAX_X_ACROSS,
    seed: int = DEFAULT_SEED,
    progress: Optional[bool] = None,
    desc: str = "ABX",
) -> dict:
    """ABX error rates (fractions in [0, 1]) of ``features`` on ``items``.

    Args:
        features: ``{file id: (frames, dim)}`` arrays or tensors, one per utterance named in ``items``.
        items: phone tokens (:func:`make_items` or :func:`read_item_file`).
        frame_rate: frames per second of ``features`` (the reference's ``1 / feature_size``).
        speaker_modes: any of ``"within"`` and ``"across"``.
        context_mode: ``"within"`` (A, B, X share the triphone context: Libri-light's ABX) or
            ``"any"`` (context ignored: ZeroSpeech 2021's phoneme ABX).
        max_size_group: a group of more tokens is subsampled to this many per triplet set.
        max_x_across: across speaker, X comes from at most this many other speakers.
        seed: seeds Python's ``random`` for the subsampling, reseeded for each speaker mode.
        progress: a tqdm bar per speaker mode over the token pairs whose DTW distance is computed (the
            long part), named ``desc`` and the mode (None: on a terminal only).

    Returns ``{"within": error or None, "across": error or None, "tokens": n, "cells": {mode: n}}``;
    a mode without any triplet scores ``None``.
    """
    if context_mode not in ("within", "any"):
        raise ValueError(f"context_mode must be 'within' or 'any', got {context_mode!r}")
    for mode in speaker_modes:
        if mode not in ("within", "across"):
            raise ValueError(f"speaker mode must be 'within' or 'across', got {mode!r}")
    tokens = _token_frames(items, features, frame_rate, context_mode)
    # groups[(context, speaker)][phone] = token indices, in item order (the reference sorts stably).
    groups: dict[tuple[int, int], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for t in range(len(tokens.frames)):
        groups[(tokens.context[t], tokens.speaker[t])][tokens.phone[t]].append(t)
    result: dict = {"tokens": len(tokens.frames), "cells": {}}
    for mode in speaker_modes:
        rng = random.Random(seed)

        def sample(group: list[int]) -> list[int]:
            return rng.sample(group, k=max_size_group) if len(group) > max_size_group else list(group)

        distances = _PairDistances(tokens)
        plans = []  # (cell key, keys of d(x, a), keys of d(x, b), symmetric)
        for (c, s) in sorted(groups):
            by_phone = groups[(c, s)]
            phones = sorted(by_phone)
            if len(phones) < 2:
                continue
            for pa in phones:
                if mode == "within":
                    if len(by_phone[pa]) < 2:
                        continue
                    for pb in phones:
                        if pb == pa:
                            continue
                        b = sample(by_phone[pb])
                        a = sample(by_phone[pa])
                        plans.append(((s, pa, pb, c), distances.need(a, a, True), distances.need(a, b, False), True))
                else:
                    others = [groups[(c, s2)][pa] for (c2, s2) in sorted(groups) if c2 == c and s2 != s and pa in groups[(c2, s2)]]
                    if len(others) > max_x_across:
                        others = rng.sample(others, k=max_x_across)
                    for x_group in others:
                        for pb in phones:
                            if pb == pa:
                                continue
                            a, b, x = sample(by_phone[pa]), sample(by_phone[pb]), sample(x_group)
                            sx = tokens.speaker[x_group[0]]
                            plans.append(((s, pa, pb, c, sx), distances.need(x, a, False), distances.need(x, b, False), False))
        distances.compute(progress=progress, desc=f"{desc} {mode}-speaker")
        cells = {key: _cell_error(distances.matrix(ka), distances.matrix(kb), sym) for key, ka, kb, sym in plans}
        result[mode] = _aggregate(cells)
        result["cells"][mode] = len(cells)
    return result


def export_for_evaluators(features: Mapping[str, object], items: Sequence[Item], directory: Union[str, os.PathLike], item_name: str) -> dict:
    """Write ``features`` (``{file id: (frames, dim)}``) and ``items`` in the layout the official ABX
    evaluators read (Libri-light's ``eval_ABX.py``, ``zerospeech-libriabx2``): one float32
    ``DIRECTORY/<file id>.npy`` per utterance named by the items, and ``DIRECTORY/<item_name>.item``
    (the evaluators take the dataset's name from the item file's name, e.g. ``dev-clean``). Returns
    ``{"features": DIRECTORY, "item_file": path, "files": n}``; give the evaluator ``--feature_size``
    = the frame step in seconds."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = sorted({item.file for item in items})
    for file in files:
        if file not in features:
            raise KeyError(f"ABX export: no features for file {file!r} named in the item list")
        np.save(directory / f"{file}.npy", np.asarray(features[file], dtype=np.float32))
    item_file = write_item_file(directory / f"{item_name}.item", items)
    return {"features": str(directory), "item_file": str(item_file), "files": len(files)}


def evaluate_abx(
    upstream: str,
    data: str,
    split: str = "dev",
    probe_points: Optional[Sequence[str]] = None,
    context_mode: str = "within",
    max_utterances: Optional[int] = None,
    item_file: Union[str, os.PathLike, None] = None,
    write_items: Union[str, os.PathLike, None] = None,
    cache_dir: Optional[str] = None,
    device: Optional[str] = None,
    max_size_group: int = DEFAULT_MAX_SIZE_GROUP,
    max_x_across: int = DEFAULT_MAX_X_ACROSS,
    seed: int = DEFAULT_SEED,
    progress: Optional[bool] = None,
    export_dir: Union[str, os.PathLike, None] = None,
) -> dict:
    """ABX of ``upstream`` (``fbank``, ``mfcc`` or a pretrained folder) at each probe point on ``split``
    of the corpus ``data``. Items come from ``item_file`` when given, else from the split's phone
    timings (written to ``write_items`` when given). Features use the feature extractor saved with the
    upstream (``repr_asr.models.resolve_upstream``) and run on ``device`` (None: the CPU the model
    loads on). Returns the ``results.json`` dictionary with the ``feature_extractor`` settings, the
    upstream's ``weights_sha256`` and ``metrics[probe_point] = {"within": %, "across": %, ...}``
    (error rates in percent) with each point's ``frame_step_seconds``. ``progress``: tqdm bars over the
    extraction and the distances (None: on a terminal only). ``export_dir``: also write each probe
    point's features and the items as ``export_dir/POINT/`` for the official evaluators
    (:func:`export_for_evaluators`; listed under ``metrics[point]["export"]``)."""
    from ..models import resolve_upstream
    from .features import extract_features, load_split

    dataset = load_split(data, split, max_utterances, seed=0)
    if item_file is not None:
        items = read_item_file(item_file)
        known = set(dataset["id"])
        items = [item for item in items if item.file in known]
    else:
        items = make_items(dataset.select_columns(["id", "speaker_id", "phones"]))
        if write_items is not None:
            write_item_file(write_items, items)
    if not items:
        raise ValueError(f"corpus {data} split {split}: no ABX items (the split has no phone timings, or the item file names none of its utterances)")
    model, extractor, _ = resolve_upstream(upstream)
    # The cache is keyed by the weights, extractor and audio themselves (features.py), not by the path.
    split_features = extract_features(
        model, dataset, probe_points, cache_dir=cache_dir, device=device,
        feature_extractor=extractor, progress=progress,
    )
    modes = ["within", "across"]
    metrics = {}
    for point in split_features.features:
        scores = abx_error(
            split_features.as_dict(point), items, split_features.frame_rates[point], modes, context_mode,
            max_size_group, max_x_across, seed, progress, desc=f"ABX {point}",
        )
        metrics[point] = {
            "frame_rate": split_features.frame_rates[point],
            "frame_step_seconds": 1.0 / split_features.frame_rates[point],
            **{mode: (None if scores[mode] is None else 100.0 * scores[mode]) for mode in modes},
            "tokens": scores["tokens"],
            "cells": scores["cells"],
        }
        if export_dir is not None:
            metrics[point]["export"] = export_for_evaluators(split_features.as_dict(point), items, Path(export_dir) / point, split)
    return {
        **results_header("abx", upstream, model=model, weights_sha256=split_features.info["weights_sha256"],
                         feature_extractor=split_features.info["feature_extractor"],
                         probe_points=list(split_features.features), data=data, split=split, seed=seed),
        "num_utterances": len(dataset),
        "num_items": len(items),
        "item_file": str(item_file or write_items or ""),
        "frozen": True,
        "abx": {
            "context_mode": context_mode,
            "distance": "angular (acos of cosine) / pi, DTW normalised by path length",
            "max_size_group": max_size_group,
            "max_x_across": max_x_across,
            "seed": seed,
        },
        "units": {"within": "percent error", "across": "percent error"},
        "metrics": metrics,
    }
