"""Framewise probing classifiers on frozen features: phone, speaker, gender, and log-mel regression.

The paper's four probing tasks (Chorowski et al. 2019, §"probing"): small classifiers read a frozen
probe point frame by frame and say how much of each kind of information it still holds. Features
arrive detached (:mod:`repr_asr.evaluation.features`); a probe is one ReLU hidden layer (or a linear layer)
on standardised frames, trained with Adam until the loss on held-out training utterances stops
improving (early stopping), keeping the weights of its best epoch.

Labels per frame (frame ``t`` at ``r`` Hz covers ``[t / r, (t + 1) / r)``, centre ``(t + 0.5) / r``):

* ``phone``: the phone whose segment covers the frame's centre (frames no segment covers are ignored);
  evaluated on held-out speakers where the split has enough of them.
* ``speaker``: the utterance's speaker; evaluated on held-out utterances of the training speakers.
* ``gender``: the speaker's gender (utterances of unknown gender are left out); held-out speakers
  where each gender keeps a speaker on both sides, else held-out utterances.
* ``fbank``: 80 log-mel energies (25 ms windows every 10 ms) averaged over the frame's span,
  regressed; reported as R² (mean over bands, against the held-out mean) and MSE in log-mel units.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..audio import SpectralFrontEnd, decode_audio
from ..downstream import results_header
from .features import progress_bar

logger = logging.getLogger(__name__)

TASKS = ("phone", "speaker", "gender", "fbank")
IGNORE = -100  # label of frames that take no part in a probe's loss or score
FBANK_RATE = 100.0  # frames per second of the log-mel targets before they are pooled to a probe point


@dataclass
class ProbeConfig:
    r"""How every probe is trained.

    Args:
        hidden_size (`int`, defaults to `256`): width of one ReLU hidden layer, 0 for a linear probe. A
            linear map of single frames of per-utterance normalised features cannot read the speaker even
            where it is plainly there (filterbanks: speaker probe at the majority rate), so the default
            probe has one hidden layer, as the paper's small probing networks do.
        epochs (`int`, defaults to `100`): most passes over the training frames; early stopping (`patience`)
            normally ends a probe first, so that probes are trained to convergence.
        patience (`int`, defaults to `5`): stop after this many epochs without a better validation score.
        batch_size (`int`, defaults to `1024`): frames per Adam step (at most; see `min_steps_per_epoch`).
        min_steps_per_epoch (`int`, defaults to `50`): on small sets the batch shrinks so that an epoch
            still makes this many Adam steps (a tiny corpus would otherwise train for a handful of steps).
        learning_rate (`float`, defaults to `1e-3`): Adam's step size.
        weight_decay (`float`, defaults to `0.0`): Adam's L2 penalty.
        held_out_fraction (`float`, defaults to `0.25`): share of speakers (or utterances) scored.
        validation_fraction (`float`, defaults to `0.1`): share of training utterances kept for early stopping.
        max_train_frames (`int`, defaults to `200000`): training frames are subsampled to at most this many.
        seed (`int`, defaults to `0`): seeds the splits, the subsampling and the probe's initialisation.
    """

    hidden_size: int = 256
    epochs: int = 100
    patience: int = 5
    batch_size: int = 1024
    min_steps_per_epoch: int = 50
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    held_out_fraction: float = 0.25
    validation_fraction: float = 0.1
    max_train_frames: int = 200_000
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(f"ProbeConfig.held_out_fraction must be in (0, 1), got {self.held_out_fraction}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"ProbeConfig.validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.hidden_size < 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("ProbeConfig: hidden_size must be >= 0, epochs and batch_size >= 1")


# --- labels ----------------------------------------------------------------------------------------


def frame_centres(num_frames: int, frame_rate: float) -> np.ndarray:
    """Centre time in seconds of each of ``num_frames`` frames at ``frame_rate`` Hz."""
    return (np.arange(num_frames) + 0.5) / frame_rate


def segment_frame_labels(
    starts: Sequence[float], ends: Sequence[float], labels: Sequence[int], num_frames: int, frame_rate: float
) -> np.ndarray:
    """``(num_frames,)`` int64: the label of the segment covering each frame's centre, :data:`IGNORE`
    where none does. Segments must be sorted and disjoint (``start <= end <= next start``)."""
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(num_frames, IGNORE, dtype=np.int64)
    if len(starts) == 0:
        return out
    centres = frame_centres(num_frames, frame_rate)
    k = np.searchsorted(starts, centres, side="right") - 1  # last segment starting at or before the centre
    inside = (k >= 0) & (centres < ends[np.clip(k, 0, None)])
    out[inside] = labels[k[inside]]
    return out


def pool_to_frames(values: np.ndarray, source_rate: float, num_frames: int, frame_rate: float) -> np.ndarray:
    """Average ``values`` ``(source_frames, dim)`` (source frame ``k`` centred at ``k / source_rate``, as
    :class:`repr_asr.audio.SpectralFrontEnd` frames are) over each target frame's span
    ``[t / r, (t + 1) / r)``; a target frame with no source frame inside takes the nearest one."""
    source_frames = values.shape[0]
    bins = np.floor(np.arange(source_frames) / source_rate * frame_rate).astype(np.int64)  # (source_frames,)
    keep = bins < num_frames
    sums = np.zeros((num_frames, values.shape[1]), dtype=np.float64)
    np.add.at(sums, bins[keep], values[keep])
    counts = np.bincount(bins[keep], minlength=num_frames)[:num_frames]
    empty = counts == 0
    nearest = np.clip(np.round(frame_centres(num_frames, frame_rate) * source_rate).astype(np.int64), 0, source_frames - 1)
    sums[empty] = values[nearest[empty]]
    counts = np.where(empty, 1, counts)
    return (sums / counts[:, None]).astype(np.float32)


def log_mel_targets(waveform: np.ndarray, num_frames: int, frame_rate: float, n_mels: int = 80) -> np.ndarray:
    """``(num_frames, n_mels)`` log-mel energies averaged over each frame's span at ``frame_rate``."""
    front_end = SpectralFrontEnd("fbank", n_mels=n_mels)
    with torch.no_grad():
        fbank = front_end(torch.as_tensor(waveform, dtype=torch.float32)[None])[0].numpy()  # (T100, n_mels)
    return pool_to_frames(fbank, FBANK_RATE, num_frames, frame_rate)


# --- held-out splits -------------------------------------------------------------------------------


def held_out_speakers(speakers: Sequence[str], fraction: float, seed: int, strata: Optional[Sequence[str]] = None) -> Optional[np.ndarray]:
    """Boolean ``(utterances,)`` mask of utterances whose speaker is held out, or ``None`` when the
    speakers cannot be split. With ``strata`` (e.g. gender per utterance) each stratum with at least
    two speakers gives some to each side, so every class is seen in training and in the test."""
    rng = np.random.default_rng(seed)
    speakers = np.asarray(speakers)
    stratified = strata is not None
    strata = np.asarray(strata) if stratified else np.zeros(len(speakers), dtype=np.int64)
    test_speakers: set = set()
    for stratum in sorted(set(strata.tolist())):
        members = sorted(set(speakers[strata == stratum].tolist()))
        if len(members) < 2:
            if stratified:
                return None  # a class with one speaker cannot be on both sides
            continue
        count = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        test_speakers.update(rng.choice(members, size=count, replace=False).tolist())
    if not test_speakers:
        return None
    return np.isin(speakers, sorted(test_speakers))


def held_out_utterances(groups: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Boolean mask holding out ``fraction`` of each group's utterances (at least one of each group of two
    or more), so every group appears in training and in the test."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups)
    mask = np.zeros(len(groups), dtype=bool)
    for group in sorted(set(groups.tolist())):
        members = np.flatnonzero(groups == group)
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        mask[rng.choice(members, size=count, replace=False)] = True
    return mask


# --- training --------------------------------------------------------------------------------------


class Probe(nn.Module):
    """Standardises ``(frames, dim)`` inputs with training statistics, then a linear or 1-hidden-layer map."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_outputs: int, hidden_size: int = 0):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        dim = mean.shape[-1]
        if hidden_size:
            self.net = nn.Sequential(nn.Linear(dim, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_outputs))
        else:
            self.net = nn.Linear(dim, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _predict(probe: Probe, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([probe(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else probe(x)


def _validation_loss(probe: Probe, loss_fn, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192) -> float:
    with torch.no_grad():
        total = sum(float(loss_fn(probe(x[i : i + batch_size]), y[i : i + batch_size])) * len(x[i : i + batch_size])
                    for i in range(0, len(x), batch_size))
    return total / max(1, len(x))


def train_probe(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    task_kind: str,
    num_outputs: int,
    config: ProbeConfig,
    progress: Optional[bool] = None,
    desc: str = "probe",
    probe_class: type = Probe,
) -> tuple[Probe, dict]:
    """Fit a probe on ``(frames, dim)`` inputs; ``y`` is ``(frames,)`` long class ids or ``(frames, k)``
    float targets. Returns the probe with the lowest validation loss (which keeps improving with the
    margins after accuracy saturates) and a small training record. ``progress``: a tqdm bar over the
    epochs named ``desc`` (None: on a terminal only; see ``features.progress_bar``). ``probe_class``: a
    :class:`Probe` subclass built the same way (e.g. one that reads ``(frames, points, dim)`` inputs)."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-5)
    probe = probe_class(mean, std, num_outputs, config.hidden_size)
    optimizer = torch.optim.Adam(probe.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss() if task_kind == "classification" else nn.MSELoss()
    batch_size = max(1, min(config.batch_size, len(x_train) // max(1, config.min_steps_per_epoch)))
    best_state, best_loss, best_epoch, stale = copy.deepcopy(probe.state_dict()), math.inf, 0, 0
    bar = progress_bar(config.epochs, desc, "epoch", progress)
    for epoch in range(1, config.epochs + 1):
        probe.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = loss_fn(probe(x_train[index]), y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        probe.eval()
        # Without validation frames, the training frames stand in (the probe then runs all epochs).
        xv, yv = (x_val, y_val) if len(x_val) else (x_train, y_train)
        loss = _validation_loss(probe, loss_fn, xv, yv)
        bar.update(1)
        bar.set_postfix(validation_loss=f"{loss:.4g}")
        if loss < best_loss:
            best_state, best_loss, best_epoch, stale = copy.deepcopy(probe.state_dict()), loss, epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    bar.close()
    probe.load_state_dict(best_state)
    return probe, {"best_epoch": best_epoch, "epochs_run": epoch, "validation_loss": best_loss}


# --- the four tasks on one probe point -------------------------------------------------------------


def _stack(arrays: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    chosen = [arrays[i] for i in np.flatnonzero(rows)]
    return np.concatenate(chosen) if chosen else np.zeros((0,) + arrays[0].shape[1:], dtype=arrays[0].dtype)


def _fit_and_score(
    name: str,
    features: list[np.ndarray],
    targets: list[np.ndarray],
    test_rows: np.ndarray,
    task_kind: str,
    num_outputs: int,
    config: ProbeConfig,
    held_out: str,
    speakers: Sequence[str],
    strata: Optional[Sequence[str]] = None,
    progress: Optional[bool] = None,
    desc: str = "",
) -> dict:
    """Train on the utterances outside ``test_rows`` (minus a validation share) and score on ``test_rows``.

    When the test holds out speakers, so does the validation set (speakers of the training side, with
    ``strata`` kept on both sides), so early stopping favours what carries over to new speakers."""
    rng = np.random.default_rng(config.seed)
    train_rows = ~test_rows
    val_rows = np.zeros_like(train_rows)
    train_ids = np.flatnonzero(train_rows)
    if config.validation_fraction > 0 and len(train_ids) > 1:
        chosen = None
        if held_out == "speakers":
            chosen = held_out_speakers(np.asarray(speakers)[train_ids], config.validation_fraction, config.seed + 1,
                                       strata=None if strata is None else np.asarray(strata)[train_ids])
        if chosen is None:
            chosen = np.zeros(len(train_ids), dtype=bool)
            n_val = min(len(train_ids) - 1, max(1, int(round(config.validation_fraction * len(train_ids)))))
            chosen[rng.choice(len(train_ids), size=n_val, replace=False)] = True
        val_rows[train_ids[chosen]] = True
    train_rows &= ~val_rows

    def frames(rows):
        x, y = _stack(features, rows), _stack(targets, rows)
        keep = y != IGNORE if task_kind == "classification" else np.ones(len(y), dtype=bool)
        return torch.from_numpy(x[keep]).float(), torch.from_numpy(y[keep])

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = frames(train_rows), frames(val_rows), frames(test_rows)
    if len(x_tr) == 0 or len(x_te) == 0:
        return {"skipped": f"{name}: no labelled frames to train on or to score"}
    if len(x_tr) > config.max_train_frames:
        keep = torch.from_numpy(rng.choice(len(x_tr), size=config.max_train_frames, replace=False))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    result = {"held_out": held_out, "train_frames": len(x_tr), "validation_frames": len(x_va), "test_frames": len(x_te)}
    if task_kind == "regression":
        # Targets standardised with training statistics so every band weighs the same in the loss.
        t_mean, t_std = y_tr.mean(0), y_tr.std(0).clamp(min=1e-5)
        scale = lambda y: (y - t_mean) / t_std  # noqa: E731
        probe, record = train_probe(x_tr, scale(y_tr), x_va, scale(y_va), task_kind, num_outputs, config, progress, desc + name)
        predicted = _predict(probe, x_te) * t_std + t_mean
        residual = ((predicted - y_te) ** 2).sum(0)
        total = ((y_te - y_te.mean(0)) ** 2).sum(0).clamp(min=1e-12)
        result.update(
            r2=float((1 - residual / total).mean()),
            mse=float(((predicted - y_te) ** 2).mean()),
            baseline_mse=float(((t_mean - y_te) ** 2).mean()),  # predicting the training mean
        )
    else:
        probe, record = train_probe(x_tr, y_tr.long(), x_va, y_va.long(), task_kind, num_outputs, config, progress, desc + name)
        predicted = _predict(probe, x_te).argmax(-1)
        majority = int(torch.bincount(y_tr.long(), minlength=num_outputs).argmax())
        result.update(
            accuracy=100.0 * float((predicted == y_te).float().mean()),
            majority_baseline=100.0 * float((y_te == majority).float().mean()),
            classes=num_outputs,
        )
    result.update(record)
    return result


def run_probes(
    features: list[np.ndarray],
    frame_rate: float,
    rows: Sequence[dict],
    tasks: Sequence[str] = TASKS,
    config: Optional[ProbeConfig] = None,
    waveforms: Optional[list[np.ndarray]] = None,
    progress: Optional[bool] = None,
    desc: str = "",
) -> dict:
    """Train and score the probes of ``tasks`` on one probe point.

    Args:
        features: one ``(frames, dim)`` array per row of ``rows``.
        frame_rate: frames per second of ``features``.
        rows: corpus rows with ``id``, ``speaker_id``, ``gender``, ``phones`` (and ``audio`` for ``fbank``).
        tasks: any of :data:`TASKS`.
        config: training settings (default :class:`ProbeConfig`).
        waveforms: decoded audio per row for the ``fbank`` task (decoded from ``audio`` when omitted).
        progress: tqdm bars over each probe's epochs and the log-mel targets (None: on a terminal only).
        desc: prefix of the bars' names (e.g. the probe point).

    Returns ``{task: metrics}``; a task the data cannot support says why under ``"skipped"``.
    """
    config = config or ProbeConfig()
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown probe task(s) {unknown}; choose from {list(TASKS)}")
    if len(features) != len(rows):
        raise ValueError(f"run_probes: {len(features)} feature arrays for {len(rows)} utterances")
    speakers = [str(r["speaker_id"]) for r in rows]
    lengths = [len(f) for f in features]
    results: dict = {}
    by_speaker = held_out_speakers(speakers, config.held_out_fraction, config.seed)
    speaker_split = (by_speaker, "speakers") if by_speaker is not None else (
        held_out_utterances(speakers, config.held_out_fraction, config.seed), "utterances")

    for task in tasks:
        if task == "phone":
            inventory = sorted({p for r in rows for p in (r.get("phones") or {}).get("phone") or []})
            if not inventory:
                results[task] = {"skipped": "no phone timings in this split"}
                continue
            index = {p: i for i, p in enumerate(inventory)}
            targets = []
            for r, n in zip(rows, lengths):
                ph = r.get("phones") or {}
                targets.append(segment_frame_labels(ph.get("start") or [], ph.get("end") or [],
                                                    [index[p] for p in ph.get("phone") or []], n, frame_rate))
            results[task] = _fit_and_score(task, features, targets, speaker_split[0], "classification", len(inventory), config,
                                          speaker_split[1], speakers, progress=progress, desc=desc)
        elif task == "speaker":
            test = held_out_utterances(speakers, config.held_out_fraction, config.seed)
            inventory = sorted(set(speakers))
            if len(inventory) < 2:
                results[task] = {"skipped": "fewer than two speakers"}
                continue
            index = {s: i for i, s in enumerate(inventory)}
            targets = [np.full(n, index[s], dtype=np.int64) for s, n in zip(speakers, lengths)]
            results[task] = _fit_and_score(task, features, targets, test, "classification", len(inventory), config, "utterances", speakers,
                                           progress=progress, desc=desc)
        elif task == "gender":
            genders = [str(r.get("gender") or "") for r in rows]
            known = np.array([g != "" for g in genders])
            if len({g for g in genders if g}) < 2:
                results[task] = {"skipped": "fewer than two genders known in this split"}
                continue
            index = {g: i for i, g in enumerate(sorted({g for g in genders if g}))}
            # Utterances of unknown gender get IGNORE labels, so they take no part on either side.
            targets = [np.full(n, index.get(g, IGNORE), dtype=np.int64) for g, n in zip(genders, lengths)]
            test = held_out_speakers(np.asarray(speakers)[known], config.held_out_fraction, config.seed,
                                     strata=np.asarray(genders)[known])
            held_out = "speakers"
            if test is None:
                test, held_out = held_out_utterances(np.asarray(genders)[known], config.held_out_fraction, config.seed), "utterances"
            full = np.zeros(len(rows), dtype=bool)
            full[np.flatnonzero(known)] = test
            results[task] = _fit_and_score(task, features, targets, full, "classification", len(index), config, held_out,
                                           speakers, genders if held_out == "speakers" else None, progress=progress, desc=desc)
        elif task == "fbank":
            if waveforms is None:
                waveforms = [decode_audio(r["audio"], name=str(r["id"])) for r in rows]
            with progress_bar(len(rows), f"{desc}log-mel targets", "utt", progress) as bar:
                targets = []
                for w, n in zip(waveforms, lengths):
                    targets.append(log_mel_targets(w, n, frame_rate))
                    bar.update(1)
            results[task] = _fit_and_score(task, features, targets, speaker_split[0], "regression", targets[0].shape[1], config,
                                           speaker_split[1], speakers, progress=progress, desc=desc)
    return results


def evaluate_probes(
    upstream: str,
    data: str,
    split: str = "dev",
    probe_points: Optional[Sequence[str]] = None,
    tasks: Sequence[str] = TASKS,
    max_utterances: Optional[int] = None,
    config: Optional[ProbeConfig] = None,
    cache_dir: Optional[str] = None,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> dict:
    """Probe every requested probe point of ``upstream`` (``fbank``, ``mfcc`` or a pretrained folder) on
    ``split`` of the corpus ``data``, with the feature extractor saved with the upstream
    (``repr_asr.models.resolve_upstream``) on ``device`` (None: the CPU the model loads on).
    Returns the ``results.json`` dictionary: what was run (with the ``feature_extractor`` settings and
    the ``weights_sha256`` of the upstream), and ``metrics[probe_point][task]``. ``progress``: tqdm bars
    over the extraction, the audio decoding and each probe's epochs (None: on a terminal only)."""
    from ..models import resolve_upstream
    from .features import extract_features, load_split

    config = config or ProbeConfig()
    dataset = load_split(data, split, max_utterances, seed=config.seed)
    model, extractor, _ = resolve_upstream(upstream)
    # The cache is keyed by the weights, extractor and audio themselves (features.py), not by the path.
    split_features = extract_features(
        model, dataset, probe_points, cache_dir=cache_dir, device=device,
        feature_extractor=extractor, progress=progress,
    )
    rows = [dict(r) for r in dataset.remove_columns([c for c in ("text",) if c in dataset.column_names])]
    waveforms = None
    if "fbank" in tasks:  # decoded once for every probe point's log-mel targets
        with progress_bar(len(rows), "decoding audio", "utt", progress) as bar:
            waveforms = []
            for r in rows:
                waveforms.append(decode_audio(r["audio"], name=str(r["id"])))
                bar.update(1)
    metrics = {}
    for point, arrays in split_features.features.items():
        logger.info("probing %s at %s", upstream, point)
        metrics[point] = {
            "frame_rate": split_features.frame_rates[point],
            "dim": int(arrays[0].shape[1]) if arrays else 0,
            **run_probes(arrays, split_features.frame_rates[point], rows, tasks, config, waveforms, progress, f"{point} "),
        }
    return {
        **results_header("probe", upstream, model=model, weights_sha256=split_features.info["weights_sha256"],
                         feature_extractor=split_features.info["feature_extractor"],
                         probe_points=list(split_features.features), data=data, split=split, seed=config.seed),
        "num_utterances": len(rows),
        "num_speakers": len({r["speaker_id"] for r in rows}),
        "tasks": list(tasks),
        "frozen": True,
        "config": asdict(config),
        "units": {"accuracy": "percent", "majority_baseline": "percent", "r2": "fraction", "mse": "log-mel units squared"},
        "metrics": metrics,
    }
