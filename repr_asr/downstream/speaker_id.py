"""Speaker identification (SUPERB's SID) on mean-pooled frozen features.

Which speaker said this utterance? A classifier over the speakers of a training split reads one vector
per utterance, its features averaged over the utterance's real frames at one probe point (or a learned
softmax mix of probe points, SUPERB's weighted sum), and is scored on held-out utterances of the same
speakers, next to the majority rate. Per probe point, so how much speaker information a bottleneck
removes (``enc`` → ``bn`` for the WaveNet autoencoder) reads off one table. Where the framewise
speaker probe (:mod:`repr_asr.evaluation.probes`) asks whether single frames carry the speaker, this
asks it of whole utterances, as a speaker-recognition system would.

* **Data** (:func:`select_utterances`, :func:`split_utterances`): the utterances of ``split``
  (default: the ``pretrain`` pool where its rows name speakers, else the first labeled subset that
  does, :data:`DEFAULT_SPLITS`). Per speaker, a seeded subset of at most
  ``max_utterances_per_speaker`` (and ``max_utterances`` in all, shared out evenly); speakers with fewer
  than ``min_utterances_per_speaker`` are dropped and counted. Per speaker, a seeded
  ``held_out_fraction`` of the utterances is scored (at least one) and a ``validation_fraction`` of the
  rest decides early stopping, every speaker keeping at least one training utterance. The upstream may
  have seen these utterances, unlabeled, in pretraining; the classifier never sees a held-out one.
* **Features**: :func:`repr_asr.evaluation.features.extract_features` (cached on disk, keyed by the
  weights, extractor settings and audio), averaged over each utterance's frames.
* **Head**: :func:`repr_asr.evaluation.probes.train_probe`: features standardised with training
  statistics, a linear softmax classifier (or one ReLU hidden layer), Adam in mini-batches, early
  stopping on the validation loss keeping the best epoch. The layer mix (:class:`LayerMixProbe`)
  standardises each probe point, mixes them with learned softmax weights, then classifies; it mixes the
  probe points of the default probe point's dimension (mean pooling makes frame rates irrelevant) and
  exists where there are two or more.
* **Metric**: accuracy on the held-out utterances in percent, and the majority rate: the share of the
  held-out utterances spoken by their most frequent speaker, the best any constant answer scores.
  Features normalised per utterance average to the same vector for every utterance: the spectral
  baselines (``fbank``, ``mfcc``, mean and variance normalised per utterance) have no speaker to give
  here. Such a probe point is flagged ``constant_features`` and its classifier learns the training
  priors alone (:func:`mean_pool`).
* **Results**: :func:`evaluate_speaker_id` returns the ``results.json`` dictionary: the shared header
  (:func:`repr_asr.downstream.results_header`), the counts, the utterance ids of each side, and
  ``metrics[probe_point]``.
"""

from __future__ import annotations

import html
import logging
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..evaluation.probes import Probe, ProbeConfig, held_out_utterances, train_probe
from . import results_header

logger = logging.getLogger(__name__)

KIND = "speaker_id"
LAYER_MIX = "weighted_sum"  # the name CTC results give their learned mix of probe points
DEFAULT_SPLITS = ("pretrain", "train-1h", "train-10h", "train-10min")


@dataclass
class SpeakerIDConfig:
    r"""How the speaker-identification classifier is trained and on which utterances.

    Args:
        hidden_size (`int`, defaults to `0`): width of one ReLU hidden layer, 0 for a linear softmax
            classifier (SUPERB's SID head).
        epochs (`int`, defaults to `300`): most passes over the training utterances; early stopping
            (`patience`) normally ends training first.
        patience (`int`, defaults to `20`): stop after this many epochs without a lower validation loss.
        batch_size (`int`, defaults to `64`): utterances per Adam step (all of them when fewer).
        learning_rate (`float`, defaults to `0.005`): Adam's step size.
        weight_decay (`float`, defaults to `0.0`): Adam's L2 penalty.
        held_out_fraction (`float`, defaults to `0.25`): share of each speaker's utterances scored (at
            least one per speaker).
        validation_fraction (`float`, defaults to `0.1`): share of each speaker's remaining utterances
            kept for early stopping (at least one where a speaker has two or more left).
        max_utterances_per_speaker (`int`, defaults to `20`): a seeded subset of each speaker's utterances.
        max_utterances (`int`, defaults to `400`): utterances in all, shared out evenly over the
            speakers; where every speaker cannot keep `min_utterances_per_speaker`, a seeded subset of
            the speakers is kept.
        min_utterances_per_speaker (`int`, defaults to `4`): speakers with fewer utterances are dropped
            (and counted); at least 2, one to train on and one to score.
        layer_mix (`bool`, defaults to `True`): with every probe point (no `probe_points` given), also
            score a learned softmax mix of the probe points of the default one's dimension, where there
            are two or more (`weighted_sum`).
        seed (`int`, defaults to `0`): seeds the utterance subset, the splits and the classifier.
    """

    hidden_size: int = 0
    epochs: int = 300
    patience: int = 20
    batch_size: int = 64
    learning_rate: float = 0.005
    weight_decay: float = 0.0
    held_out_fraction: float = 0.25
    validation_fraction: float = 0.1
    max_utterances_per_speaker: int = 20
    max_utterances: int = 400
    min_utterances_per_speaker: int = 4
    layer_mix: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.min_utterances_per_speaker < 2:
            raise ValueError("SpeakerIDConfig.min_utterances_per_speaker must be >= 2 (one to train on, one to score)")
        if self.max_utterances_per_speaker < self.min_utterances_per_speaker:
            raise ValueError("SpeakerIDConfig.max_utterances_per_speaker must be >= min_utterances_per_speaker")
        if self.max_utterances < 2 * self.min_utterances_per_speaker:
            raise ValueError("SpeakerIDConfig.max_utterances must leave two speakers min_utterances_per_speaker each")
        self.probe_config()  # checks the fractions and sizes

    def probe_config(self) -> ProbeConfig:
        """The settings :func:`repr_asr.evaluation.probes.train_probe` reads (one utterance is one row,
        so ``batch_size`` is the batch: no minimum number of steps per epoch)."""
        return ProbeConfig(hidden_size=self.hidden_size, epochs=self.epochs, patience=self.patience, batch_size=self.batch_size,
                           min_steps_per_epoch=1, learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                           held_out_fraction=self.held_out_fraction, validation_fraction=self.validation_fraction, seed=self.seed)


# --- data ------------------------------------------------------------------------------------------


def default_split(corpus) -> str:
    """The first of :data:`DEFAULT_SPLITS` that ``corpus`` has with at least two named speakers."""
    for name in DEFAULT_SPLITS:
        if name in corpus.keys() and "speaker_id" in corpus[name].column_names:
            if len({s for s in corpus[name]["speaker_id"] if str(s or "")}) >= 2:
                return name
    raise ValueError(f"speaker identification needs a split with two or more named speakers; none of {list(DEFAULT_SPLITS)} "
                     f"has them (the corpus has {sorted(corpus.keys())}): pass --split")


def select_utterances(speakers: Sequence[str], config: SpeakerIDConfig) -> tuple[list[int], dict]:
    """Indices (ascending) of the utterances kept, and what was left out.

    Speakers with fewer than ``min_utterances_per_speaker`` utterances (or no name) are dropped; each
    other one keeps a seeded subset of at most ``max_utterances_per_speaker``; the total is capped at
    ``max_utterances`` by taking each speaker's utterances in turn (so all keep about as many), after
    leaving out a seeded subset of speakers where all of them cannot keep the minimum."""
    rng = np.random.default_rng(config.seed)
    members: dict[str, list[int]] = {}
    for index, speaker in enumerate(speakers):
        members.setdefault(str(speaker or ""), []).append(index)
    unnamed = len(members.pop("", []))
    too_few = {s: len(m) for s, m in members.items() if len(m) < config.min_utterances_per_speaker}
    kept = sorted(s for s in members if s not in too_few)
    left_out: list[str] = []
    most_speakers = config.max_utterances // config.min_utterances_per_speaker
    if len(kept) > most_speakers:
        chosen = set(rng.choice(kept, size=most_speakers, replace=False).tolist())
        left_out = [s for s in kept if s not in chosen]
        kept = [s for s in kept if s in chosen]
    # (rank within the speaker's shuffled utterances, speaker order): the first max_utterances take turns.
    ranked = []
    for order, speaker in enumerate(kept):
        shuffled = rng.permutation(members[speaker])[: config.max_utterances_per_speaker]
        ranked += [(rank, order, int(index)) for rank, index in enumerate(shuffled)]
    chosen_indices = sorted(index for _, _, index in sorted(ranked)[: config.max_utterances])
    return chosen_indices, {
        "speakers_too_few_utterances": len(too_few),
        "speakers_left_out_by_max_utterances": len(left_out),
        "utterances_without_speaker": unnamed,
        "dropped_speakers": sorted(too_few),
    }


def split_utterances(speakers: Sequence[str], config: SpeakerIDConfig) -> np.ndarray:
    """``"train"`` / ``"validation"`` / ``"test"`` per utterance: per speaker a seeded
    ``held_out_fraction`` scored (:func:`repr_asr.evaluation.probes.held_out_utterances`: at least one of a
    speaker with two or more), then a ``validation_fraction`` of the rest for early stopping (every
    speaker keeps at least one training utterance)."""
    speakers = np.asarray([str(s) for s in speakers])
    sides = np.full(len(speakers), "train", dtype=object)
    test = held_out_utterances(speakers, config.held_out_fraction, config.seed)
    sides[test] = "test"
    rest = np.flatnonzero(~test)
    if config.validation_fraction > 0 and len(rest):
        validation = held_out_utterances(speakers[rest], config.validation_fraction, config.seed + 1)
        sides[rest[validation]] = "validation"
    return sides


def mean_pool(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, bool]:
    """``(utterances, dim)`` float32, each ``(frames, dim)`` array averaged over its frames (in float64), and
    whether the averages are constant: the same for every utterance up to round-off (below 1e-4 of the
    typical spread of frames within an utterance), as features normalised per utterance (the spectral
    baselines' ``normalize_features``) are. Constant averages come back as exact zeros, so a classifier
    learns the training speakers' priors from them instead of fitting round-off."""
    pooled = np.stack([a.astype(np.float64).mean(0) for a in arrays])
    within = float(np.mean([a.std(0).max() if len(a) else 0.0 for a in arrays])) if len(arrays) else 0.0
    constant = bool(len(pooled) > 1 and float(pooled.std(0).max()) <= 1e-4 * within)
    return (np.zeros_like(pooled) if constant else pooled).astype(np.float32), constant


# --- head ------------------------------------------------------------------------------------------


class LayerMixProbe(Probe):
    """A :class:`repr_asr.evaluation.probes.Probe` over ``(utterances, points, dim)`` inputs: each probe
    point standardised with its training statistics, mixed with learned softmax weights (SUPERB's weighted
    sum), then the linear or one-hidden-layer classifier."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_outputs: int, hidden_size: int = 0):
        super().__init__(mean, std, num_outputs, hidden_size)  # mean, std: (points, dim)
        self.layer_weights = nn.Parameter(torch.zeros(mean.shape[0]))

    def mix(self) -> torch.Tensor:
        """``(points,)`` the softmax weights of the probe points."""
        return torch.softmax(self.layer_weights, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        standardised = (x - self.mean) / self.std  # (utterances, points, dim)
        return self.net((self.mix()[:, None] * standardised).sum(-2))


def mix_points(model) -> list[str]:
    """The probe points a layer mix combines: those of the default probe point's dimension, in order."""
    dims = model.probe_dims()
    return [p for p in model.probe_points if dims[p] == dims[model.default_probe_point]]


def resolve_probe_points(model, requested: Optional[Sequence[str]], layer_mix: bool = True) -> tuple[list[str], list[str]]:
    """``(entries, points to extract)``: the probe points scored (``weighted_sum`` for the layer mix) and
    the upstream's probe points they need. ``requested`` None: every probe point, plus the mix where
    ``layer_mix`` and it exists. A name the upstream does not offer, or ``weighted_sum`` where there is
    no mix, is refused by name."""
    available = list(model.probe_points)
    mixable = mix_points(model)
    if requested is None:
        entries = available + ([LAYER_MIX] if layer_mix and len(mixable) > 1 else [])
    else:
        entries = list(dict.fromkeys(requested))
        offered = available + ([LAYER_MIX] if len(mixable) > 1 else [])
        unknown = [p for p in entries if p not in offered]
        if unknown:
            why = "" if len(mixable) > 1 else f"; no {LAYER_MIX}: only {mixable} has the default probe point's dimension"
            raise ValueError(f"probe point(s) {unknown} not offered by this upstream (it has {offered}{why})")
    needed = [p for p in entries if p != LAYER_MIX] + (mixable if LAYER_MIX in entries else [])
    return entries, [p for p in available if p in needed]


def train_and_score(x: np.ndarray, labels: np.ndarray, sides: np.ndarray, num_speakers: int, config: SpeakerIDConfig,
                    progress: Optional[bool] = None, desc: str = "speaker id") -> dict:
    """Train on the ``"train"`` rows of ``x`` (``(utterances, dim)``, or ``(utterances, points, dim)`` for
    the layer mix), stop early on the ``"validation"`` rows, score the ``"test"`` rows."""
    train, validation, test = (sides == "train"), (sides == "validation"), (sides == "test")
    x, y = torch.from_numpy(np.ascontiguousarray(x)).float(), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    probe_class = LayerMixProbe if x.dim() == 3 else Probe
    probe, record = train_probe(x[train], y[train], x[validation], y[validation], "classification", num_speakers,
                                config.probe_config(), progress, desc, probe_class=probe_class)
    with torch.no_grad():
        predicted = probe(x[test]).argmax(-1)
    y_test = y[test]
    counts = torch.bincount(y_test, minlength=num_speakers)
    result = {
        "accuracy": 100.0 * float((predicted == y_test).float().mean()),
        "majority_rate": 100.0 * float(counts.max()) / max(1, len(y_test)),
        "dim": int(x.shape[-1]),
        **record,
    }
    if isinstance(probe, LayerMixProbe):
        result["layer_weights"] = [float(w) for w in probe.mix().detach()]
    return result


# --- the task --------------------------------------------------------------------------------------


def evaluate_speaker_id(
    upstream: str,
    data: str,
    split: Optional[str] = None,
    probe_points: Optional[Sequence[str]] = None,
    config: Optional[SpeakerIDConfig] = None,
    cache_dir: Optional[str] = None,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> dict:
    """Speaker identification with ``upstream`` (``fbank``, ``mfcc`` or a pretrained folder) on ``split``
    of the corpus ``data`` (None: :func:`default_split`), at ``probe_points`` (None: every probe point and
    the layer mix; ``weighted_sum`` names the mix). Features come from
    :func:`repr_asr.evaluation.features.extract_features` with the upstream's saved feature extractor on
    ``device``, cached in ``cache_dir``. Returns the ``results.json`` dictionary; ``metrics[point]`` holds
    ``accuracy`` and ``majority_rate`` in percent, the feature ``dim`` and the training record
    (``best_epoch``, ``epochs_run``, ``validation_loss``; ``layer_weights`` over ``mixed_points`` for
    the mix)."""
    from ..data import load_corpus
    from ..evaluation.features import extract_features
    from ..models import resolve_upstream

    config = config or SpeakerIDConfig()
    model, extractor, _ = resolve_upstream(upstream)
    entries, needed = resolve_probe_points(model, probe_points, config.layer_mix)  # refused before any data is read
    corpus = load_corpus(data)
    split = split or default_split(corpus)
    dataset = corpus[split]  # a missing split raises MissingSplitError (a KeyError) saying why and what there is
    all_speakers = [str(s or "") for s in dataset["speaker_id"]]
    chosen, left_out = select_utterances(all_speakers, config)
    if len({all_speakers[i] for i in chosen}) < 2:
        raise ValueError(f"{data} {split}: fewer than two speakers with at least {config.min_utterances_per_speaker} utterances "
                         f"({left_out['speakers_too_few_utterances']} have fewer)")
    dataset = dataset.select(chosen)
    extracted = extract_features(model, dataset, needed, cache_dir=cache_dir, device=device,
                                 feature_extractor=extractor, progress=progress)
    ids = [str(i) for i in dataset["id"]]
    speakers = np.asarray([str(s) for s in dataset["speaker_id"]])
    # An utterance too short for a frame at some probe point has nothing to average: it takes no part.
    framed = np.array([all(len(extracted.features[p][i]) for p in needed) for i in range(len(ids))], dtype=bool)
    sides = split_utterances(speakers[framed], config)
    inventory = sorted(set(speakers[framed].tolist()))
    labels = np.searchsorted(inventory, speakers[framed])
    pooled, constant = {}, {}
    for point in needed:
        pooled[point], constant[point] = mean_pool([a for a, keep in zip(extracted.features[point], framed) if keep])

    metrics = {}
    for entry in entries:
        logger.info("speaker identification with %s at %s", upstream, entry)
        if entry == LAYER_MIX:
            mixed = mix_points(model)
            x = np.stack([pooled[p] for p in mixed], 1)  # (utterances, points, dim)
            metrics[entry] = {**train_and_score(x, labels, sides, len(inventory), config, progress, f"{entry} "), "mixed_points": mixed,
                              "constant_features": all(constant[p] for p in mixed)}
        else:
            metrics[entry] = {"frame_rate": extracted.frame_rates[entry],
                              **train_and_score(pooled[entry], labels, sides, len(inventory), config, progress, f"{entry} "),
                              "constant_features": constant[entry]}
    kept_ids = np.asarray(ids)[framed]
    return {
        **results_header(KIND, upstream, model=model, weights_sha256=extracted.info["weights_sha256"],
                         feature_extractor=extracted.info["feature_extractor"], probe_points=entries, data=data,
                         split=split, seed=config.seed),
        "frozen": True,
        "pooling": "mean",
        "num_speakers": len(inventory),
        "num_utterances": int(framed.sum()),
        "utterances": {side: int((sides == side).sum()) for side in ("train", "validation", "test")},
        "utterances_without_frames": int((~framed).sum()),
        **left_out,
        "config": asdict(config),
        "units": {"accuracy": "percent", "majority_rate": "percent"},
        "metrics": metrics,
        "utterance_ids": {side: kept_ids[sides == side].tolist() for side in ("train", "validation", "test")},
    }


def run_from_spec(upstream: str, data: str, spec: dict, probe_points, cache_dir: str, folder: str) -> dict:
    """The study's ``speaker_id`` analysis (``repr_asr.evaluation.analysis``): ``spec`` is the study
    config's ``speaker_id:`` section, ``split`` (optional), ``probe_points`` (read by the study) and any
    :class:`SpeakerIDConfig` field; another key is refused by name."""
    names = {f.name for f in fields(SpeakerIDConfig)}
    unknown = sorted(set(spec) - names - {"split", "probe_points"})
    if unknown:
        raise ValueError(f"speaker_id: unknown setting(s) {unknown}; expected split, probe_points or one of {sorted(names)}")
    config = SpeakerIDConfig(**{k: v for k, v in spec.items() if k in names})
    return evaluate_speaker_id(upstream, data, spec.get("split"), probe_points, config, cache_dir=cache_dir, progress=False)


# --- tables ----------------------------------------------------------------------------------------


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def study_table(results: dict) -> list[str]:
    """Markdown lines for the study's README: accuracy and majority rate per representation × probe point
    (``results``: ``{representation: results.json or None}``), then the ``enc`` → ``bn`` change of each
    upstream that has both."""
    present = {name: r for name, r in results.items() if r}
    if not present:
        return []
    first = next(iter(present.values()))
    lines = ["", f"## Speaker identification ({first.get('split')} speakers, held-out utterances; accuracy %)", "",
             "Mean-pooled frozen features, a linear classifier over the speakers; the majority rate is what always "
             "naming the most frequent held-out speaker scores. `weighted_sum`: a learned mix of probe points.", "",
             "| representation | point | accuracy | majority | speakers | test utterances |", "|---|---|---|---|---|---|"]
    drops, constant = [], False
    for name, r in present.items():
        for point, m in r.get("metrics", {}).items():
            mark = " *" if m.get("constant_features") else ""
            constant = constant or bool(mark)
            lines.append(f"| {name} | {point} | {_pct(m.get('accuracy'))}{mark} | {_pct(m.get('majority_rate'))} | {r.get('num_speakers')} "
                         f"| {(r.get('utterances') or {}).get('test')} |")
        enc, bn = (r.get("metrics", {}).get(p, {}).get("accuracy") for p in ("enc", "bn"))
        if enc is not None and bn is not None:
            drops.append(f"{name} {enc:.1f} → {bn:.1f} ({bn - enc:+.1f})")
    if constant:
        lines += ["", "\\* The mean-pooled features are the same for every utterance (features normalised per utterance, "
                  "as the spectral baselines are, average to zero): nothing to tell speakers apart by."]
    if drops:
        lines += ["", "From `enc` to `bn`: " + "; ".join(drops) + "."]
    return lines


def card_lines(results: dict) -> list[str]:
    """Model-card lines: accuracy (and majority rate) per probe point."""
    return [f"- speaker identification at `{point}`: {_pct(m.get('accuracy'))} % (majority {_pct(m.get('majority_rate'))} %; "
            f"held-out utterances of {results.get('num_speakers')} {results.get('split')} speakers)"
            for point, m in results.get("metrics", {}).items()]


def html_section(entries: Sequence[tuple]) -> str:
    """``report.html``'s section: a table of accuracy and majority rate per representation / probe point."""
    if not entries:
        return ""
    from ..evaluation.html_report import name_of, table

    rows = []
    for folder, results in entries:
        for point, m in results.get("metrics", {}).items():
            accuracy = _pct(m.get("accuracy")) + (" (constant features)" if m.get("constant_features") else "")
            rows.append([html.escape(f"{name_of(folder, results)} / {point}"), accuracy, _pct(m.get("majority_rate")),
                         html.escape(str(results.get("num_speakers", ""))), html.escape(str((results.get("utterances") or {}).get("test", "")))])
    split = entries[0][1].get("split", "")
    return "\n".join([
        "<h2>Who is speaking: speaker identification</h2>",
        f"<p class='note'>A linear classifier on mean-pooled frozen features over the speakers of the {html.escape(str(split))} split, "
        "scored on their held-out utterances; the majority rate is what always naming the most frequent held-out speaker scores. "
        "<code>weighted_sum</code>: a learned mix of probe points.</p>",
        table("Speaker identification (accuracy %)", ["representation / probe point", "accuracy", "majority", "speakers", "test utterances"], rows),
    ])
