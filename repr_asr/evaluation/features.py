"""Frozen features of a corpus split at every probe point of an upstream, for probes, ABX and CTC.

:func:`extract_features` runs an upstream (``repr_asr.models.resolve_upstream``) over a split in batches
of similar length, trims each utterance to its real frames at each probe point and returns them as
float32 numpy arrays ``(frames, dim)``.

The audio is prepared by the feature extractor saved with the upstream (``preprocessor_config.json``,
e.g. ``do_normalize`` set at pretraining): pass it as ``feature_extractor=`` (``resolve_upstream(path)`` gives both),
or let :func:`extract_features` find it from the model's ``name_or_path`` when that is a local folder.

With ``cache_dir`` the result is written as one ``features-<probe_point>-<key>.safetensors`` file per
probe point (tensors keyed by utterance id). The key is a hash of everything that decides the features
(:func:`cache_key_parts`): the weights and config (:func:`model_digest`), the feature extractor's
settings, the probe point, the utterance ids with their audio's identity (path + size + mtime, or a
hash of in-memory bytes), and the caller's ``cache_key``. Training the same folder further, changing
the extractor or the audio therefore misses the cache, and a probe, an ABX run and a CTC run on the same
upstream and data share one extraction. An unreadable cache file is recomputed with a warning.

Device and processes: the upstream runs where it already is (``device=None``) or is moved to ``device``
for the extraction only and put back. With ``accelerator`` (an ``accelerate.Accelerator`` or
``PartialState``) of several processes, each process extracts a shard of the utterances and the shards
are gathered to every process (``accelerate.utils.gather_object``), so no rank repeats another's work.

Frame timing convention (shared by the probes and ABX): frame ``t`` at a probe point of rate ``r``
frames per second covers ``[t / r, (t + 1) / r)`` seconds and its centre is ``(t + 0.5) / r`` — the
convention of Libri-light's frame-wise phone alignments and of its ABX evaluator.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import decode_audio
from ..feature_extraction import ReprFeatureExtractor

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the cache layout or the extraction changes meaning

# Config fields that say where, how or by which class a model was saved, not what it computes
# (save_pretrained itself fills in `architectures`).
_CONFIG_NOISE = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype")


@dataclass
class SplitFeatures:
    """Features of one split: ``features[probe_point][i]`` is utterance ``ids[i]``'s ``(frames, dim)`` array.

    ``info`` records what produced them: ``weights_sha256``, ``feature_extractor`` (its settings),
    ``cache_key``, ``probe_points`` and ``cache`` (``"hit"`` / ``"computed"`` per probe point).
    """

    ids: list[str]
    features: dict[str, list[np.ndarray]]
    frame_rates: dict[str, float]
    info: dict = field(default_factory=dict)

    def as_dict(self, probe_point: str) -> dict[str, np.ndarray]:
        """``{utterance id: (frames, dim)}`` at ``probe_point`` (the form ABX takes)."""
        return dict(zip(self.ids, self.features[probe_point]))


def length_batches(lengths: Sequence[int], max_samples: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size (batch × longest) stays within
    ``max_samples``; an utterance longer than ``max_samples`` gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so the newest utterance is the longest of the batch.
        if current and (len(current) + 1) * lengths[index] > max_samples:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


# --- what decides the features: weights, extractor, data ------------------------------------------


def model_digest(model) -> str:
    """sha256 of what decides a model's outputs: its config (without path / version fields) and every
    ``state_dict`` tensor (name, dtype, shape, bytes) in name order.

    Computed afresh on each call (one pass over the weights, well under a second for 100M parameters):
    a memo on the model could miss in-place edits (``param.data.add_``) and serve stale features.
    """
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        settings = {k: v for k, v in config.to_dict().items() if k not in _CONFIG_NOISE and not k.startswith("_")}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"\n{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode("utf-8"))
        flat = tensor.to("cpu").contiguous().reshape(-1)  # (numel,); reshape lets 0-d tensors be viewed as bytes
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def extractor_settings(feature_extractor) -> dict:
    """The feature extractor's settings (``to_dict()`` without private keys), JSON-serialisable."""
    settings = {k: v for k, v in feature_extractor.to_dict().items() if not k.startswith("_")}
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _audio_identity(cell) -> str:
    """What identifies an ``audio`` cell's content cheaply: a file's path + size + mtime, or a hash of
    in-memory bytes / samples."""
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return "bytes:" + hashlib.sha256(cell["bytes"]).hexdigest()
        if cell.get("array") is not None:
            array = np.ascontiguousarray(np.asarray(cell["array"], dtype=np.float32))
            return f"array:{cell.get('sampling_rate')}:" + hashlib.sha256(array.tobytes()).hexdigest()
        cell = cell.get("path")
    if isinstance(cell, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(cell))
        try:
            stat = os.stat(path)
        except OSError:  # decoding will name the missing file
            return f"path:{path}"
        return f"path:{path}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"{type(cell).__name__}:{cell!r}"


def data_digest(dataset) -> str:
    """sha256 of a split's utterance ids in order and each one's audio identity (:func:`_audio_identity`)."""
    digest = hashlib.sha256()
    for utt_id, cell in zip(dataset["id"], dataset["audio"]):
        digest.update(f"{utt_id}\0{_audio_identity(cell)}\n".encode("utf-8"))
    return digest.hexdigest()


def cache_key_parts(weights_sha256: str, settings: dict, probe_point: str, data_sha256: str, cache_key: str = "") -> dict:
    """Everything a cached probe point's features depend on; its hash names and validates the file."""
    return {
        "format": CACHE_FORMAT,
        "weights_sha256": weights_sha256,
        "feature_extractor": settings,
        "probe_point": probe_point,
        "data_sha256": data_sha256,
        "cache_key": cache_key,
    }


def _key_hash(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def _cache_path(cache_dir: Path, probe_point: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in probe_point)
    return cache_dir / f"features-{safe}-{key[:16]}.safetensors"


def _read_cache(cache_dir: Path, probe_point: str, ids: list[str], key: str):
    from safetensors import safe_open

    path = _cache_path(cache_dir, probe_point, key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            if meta.get("key") != key:  # a 16-hex-digit prefix collision: never trust it
                logger.info("%s: cached features are for other weights / extractor / data; extracting again", path)
                return None
            arrays = [handle.get_tensor(utt_id) for utt_id in ids]
            return arrays, float(meta["frame_rate"])
    except Exception as error:  # a truncated or foreign file is recomputed, not trusted
        logger.warning("%s: unreadable feature cache (%s); extracting again", path, error)
        return None


def _write_cache(cache_dir: Path, probe_point: str, ids: list[str], arrays: list[np.ndarray], frame_rate: float,
                 key: str, parts: dict) -> Path:
    from safetensors.numpy import save_file

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache_dir, probe_point, key)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    meta = {"key": key, "frame_rate": repr(frame_rate), "probe_point": probe_point,
            "parts": json.dumps(parts, sort_keys=True)}
    save_file({utt_id: np.ascontiguousarray(a) for utt_id, a in zip(ids, arrays)}, str(tmp), metadata=meta)
    os.replace(tmp, path)  # atomic: a crashed run never leaves half a cache behind
    return path


def progress_bar(total: int, desc: str, unit: str = "it", progress: Optional[bool] = None, accelerator=None, **kwargs) -> tqdm:
    """A tqdm bar for a long evaluation step, on the main process only.

    ``progress``: True always shows it, False never; None leaves it to tqdm, which shows it on a terminal
    and not in a log file. With ``accelerator`` (several processes) only the local main process draws
    one; without it, a process started by ``accelerate launch`` / ``torchrun`` (``LOCAL_RANK`` > 0) draws none.
    """
    if accelerator is not None:
        main = accelerator.is_local_main_process
    else:
        main = os.environ.get("LOCAL_RANK", "0") == "0"
    disable = True if not main else (None if progress is None else not progress)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, **kwargs)


# --- running the model ----------------------------------------------------------------------------


def model_device(model) -> torch.device:
    """Where ``model`` lives: its first parameter's (or buffer's) device, CPU when it has neither."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def shard_indices(lengths: Sequence[int], process_index: int, num_processes: int) -> list[int]:
    """The utterance indices process ``process_index`` of ``num_processes`` extracts: every
    ``num_processes``-th utterance in length order, so every process gets a similar amount of audio."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return order[process_index::num_processes]


def reassemble(gathered: Sequence[tuple[int, np.ndarray]], count: int) -> list[np.ndarray]:
    """``(index, array)`` pairs from every process → the list of ``count`` arrays in index order."""
    out: list = [None] * count
    for index, array in gathered:
        out[index] = array
    missing = [i for i, a in enumerate(out) if a is None]
    if missing:
        raise RuntimeError(f"extract_features: no process returned features for utterance indices {missing[:10]}")
    return out


@torch.no_grad()
def _run(model, waveforms: list[np.ndarray], probe_points: list[str], feature_extractor, device) -> dict[str, list[np.ndarray]]:
    # Padded with the real lengths whatever the extractor's defaults (a transformers Wav2Vec2FeatureExtractor
    # pads only when asked, and then normalises each utterance over its real samples only).
    batch = feature_extractor(waveforms, sampling_rate=feature_extractor.sampling_rate, padding="longest",
                              return_attention_mask=True, return_tensors="pt")
    input_values = batch["input_values"].to(device)
    attention_mask = batch["attention_mask"].to(device)
    output = model(input_values, attention_mask=attention_mask, output_hidden_states=True)
    sample_lengths = attention_mask.long().sum(-1)
    out: dict[str, list[np.ndarray]] = {}
    for index, name in enumerate(model.probe_points):
        if name not in probe_points:
            continue
        hidden = output.hidden_states[index].detach().float().cpu()  # (B, T, D), one transfer per batch
        lengths = model.frame_lengths(sample_lengths, name).clamp(max=hidden.shape[1]).cpu()
        out[name] = [hidden[b, : int(lengths[b])].numpy() for b in range(hidden.shape[0])]
    return out


def default_feature_extractor(model) -> ReprFeatureExtractor:
    """The extractor saved with ``model`` when it was loaded from a local folder (``model.name_or_path``,
    i.e. ``config.name_or_path``), else ``ReprFeatureExtractor(sampling_rate=<config's>)``."""
    from ..models import load_feature_extractor

    source = str(getattr(model, "name_or_path", "") or getattr(getattr(model, "config", None), "name_or_path", "") or "")
    if source and os.path.isdir(source):
        return load_feature_extractor(source)
    sampling_rate = int(getattr(getattr(model, "config", None), "sampling_rate", 16000) or 16000)
    return ReprFeatureExtractor(sampling_rate=sampling_rate)


def _gather(accelerator, pairs: list) -> list:
    """Every process's list concatenated, on every process (single process: the list itself)."""
    if accelerator is None or accelerator.num_processes == 1:
        return pairs
    from accelerate.utils import gather_object

    return gather_object(pairs)


def extract_features(
    model,
    dataset,
    probe_points: Optional[Sequence[str]] = None,
    max_batch_seconds: float = 200.0,
    cache_dir: Union[str, os.PathLike, None] = None,
    cache_key: str = "",
    device: Union[str, torch.device, None] = None,
    feature_extractor: Optional[ReprFeatureExtractor] = None,
    accelerator=None,
    progress: Optional[bool] = None,
) -> SplitFeatures:
    """Frozen features of every utterance of ``dataset`` (a corpus split) at ``probe_points``.

    Args:
        model: an upstream (``repr_asr.models.load_upstream``); run in eval mode without gradients, and
            left in its original mode and on its original device.
        dataset: rows with ``id`` and ``audio`` (decoded with ``repr_asr.audio.decode_audio``);
            ``duration`` (seconds), when present, orders the batches without decoding twice.
        probe_points: names from ``model.probe_points`` (default: all of them).
        max_batch_seconds: padded audio per batch (batch size × longest utterance), in seconds.
        cache_dir: read / write ``features-<probe_point>-<key>.safetensors`` here (None: no cache).
        cache_key: an extra component of the cache key (the weights, extractor, probe point and data
            are always part of it).
        device: where the upstream runs; None: where it already is. Another device is used for this
            call only; the model is moved back afterwards.
        feature_extractor: prepares the audio; None: the one saved with the model's folder
            (:func:`default_feature_extractor`). Pass ``load_feature_extractor(upstream)`` when the model
            was not loaded from its folder (built in memory, or a hub name).
        accelerator: an ``accelerate.Accelerator`` / ``PartialState``; with several processes each
            extracts :func:`shard_indices` and all get every utterance's features. Only process 0
            writes the cache.
        progress: a tqdm bar over this process's utterances (:func:`progress_bar`: None shows it on a
            terminal, on the main process only).
    """
    available = list(model.probe_points)
    probe_points = list(probe_points or available)
    unknown = [p for p in probe_points if p not in available]
    if unknown:
        raise ValueError(f"probe point(s) {unknown} not offered by this upstream (it has {available})")
    ids = [str(i) for i in dataset["id"]]
    if len(set(ids)) != len(ids):
        raise ValueError("extract_features: the split has duplicate utterance ids")
    if feature_extractor is None:
        feature_extractor = default_feature_extractor(model)
    settings = extractor_settings(feature_extractor)
    weights_sha256 = model_digest(model)
    frame_rates = {p: float(model.frame_rate(p)) for p in probe_points}
    num_processes = accelerator.num_processes if accelerator is not None else 1
    process_index = accelerator.process_index if accelerator is not None else 0

    features: dict[str, list[np.ndarray]] = {}
    cache = Path(cache_dir) if cache_dir is not None else None
    keys: dict[str, tuple[str, dict]] = {}
    if cache is not None:
        data_sha256 = data_digest(dataset)
        for point in probe_points:
            parts = cache_key_parts(weights_sha256, settings, point, data_sha256, cache_key)
            keys[point] = (_key_hash(parts), parts)
            hit = _read_cache(cache, point, ids, keys[point][0])
            if hit is not None:
                features[point] = hit[0]
    todo = [p for p in probe_points if p not in features]
    if num_processes > 1:
        # Every process must take part in the same gathers: extract what any of them misses.
        union = {p for todo_list in _gather(accelerator, [todo]) for p in todo_list}
        todo = [p for p in probe_points if p in union]
    status = {p: ("computed" if p in todo else "hit") for p in probe_points}

    if todo and ids:
        sampling_rate = feature_extractor.sampling_rate
        if "duration" in dataset.column_names:
            lengths = [int(round(float(d) * sampling_rate)) for d in dataset["duration"]]
        else:
            lengths = [len(decode_audio(row["audio"], sampling_rate, name=row["id"])) for row in dataset]
        mine = shard_indices(lengths, process_index, num_processes) if num_processes > 1 else list(range(len(ids)))
        original_device = model_device(model)
        run_device = torch.device(device) if device is not None else original_device
        was_training = model.training
        collected: dict[str, list] = {p: [] for p in todo}  # (utterance index, array) pairs of this process
        try:
            model.eval()
            if run_device != original_device:
                model.to(run_device)
            with progress_bar(len(mine), f"features ({', '.join(todo)})", "utt", progress, accelerator) as bar:
                for batch in length_batches([lengths[i] for i in mine], max(1, int(max_batch_seconds * sampling_rate))):
                    indices = [mine[k] for k in batch]
                    rows = dataset.select(indices)
                    waveforms = [decode_audio(row["audio"], sampling_rate, name=row["id"]) for row in rows]
                    out = _run(model, waveforms, todo, feature_extractor, run_device)
                    for point in todo:
                        collected[point].extend(zip(indices, out[point]))
                    bar.update(len(indices))
        finally:
            # The caller's model comes back as it was lent: same device, same mode.
            if run_device != original_device:
                model.to(original_device)
            model.train(was_training)
        for point in todo:
            features[point] = reassemble(_gather(accelerator, collected[point]), len(ids))
            if cache is not None and process_index == 0:
                _write_cache(cache, point, ids, features[point], frame_rates[point], *keys[point])
    elif todo:
        features.update({p: [] for p in todo})
    return SplitFeatures(
        ids=ids, features={p: features[p] for p in probe_points}, frame_rates=frame_rates,
        info={"cache_key": cache_key, "probe_points": probe_points, "weights_sha256": weights_sha256,
              "feature_extractor": settings, "cache": status},
    )


def load_split(data: str, split: str, max_utterances: Optional[int] = None, seed: int = 0):
    """Rows of ``split`` of the corpus ``data`` (a ``--data`` spec); ``max_utterances`` keeps a seeded
    random subset (so a small subset still spans several speakers)."""
    from ..data import load_corpus

    corpus = load_corpus(data)
    try:
        dataset = corpus[split]
    except KeyError as error:
        raise KeyError(f"corpus {data}: no split {split!r} ({error})") from None
    if max_utterances is not None and max_utterances < len(dataset):
        dataset = dataset.shuffle(seed=seed).select(range(max_utterances))
    return dataset
