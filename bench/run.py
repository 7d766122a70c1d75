"""Speed benchmarks behind `make bench`: achieved FLOP/s of training steps against the matmul peak
measured in the same run, incremental WaveNet generation against recomputing the receptive field,
the compute per step of every tiny pretraining config (so comparisons are at equal compute), the data
loader's crops per second against what a training step consumes (files and a parquet stream), and our
ABX against the reference evaluator and (with ``BENCH_FASTABX_PYTHON``) fastabx on the same items.

Writes bench/results/<name>.json and prints a summary table. Ratios are measured in one run on one
machine; absolute numbers depend on it (the JSON records the machine). What it measured on the
reference machine, and the speed work behind it: docs/performance.md.

    python bench/run.py [--only NAME ...] [--quick] [--output_dir DIR]

``--quick`` runs every row at the smallest size that still goes through its code (a batch of 2 short
crops, one timed repeat, a few ABX files): its numbers mean nothing, it only shows that each row runs.
``tests/test_bench.py`` runs it, so a change that breaks a benchmark fails where it is made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import repr_asr  # noqa: E402,F401  (registers the models)
import yaml  # noqa: E402
from repr_asr.modules.wavenet import plain_wavenet_stack  # noqa: E402
from repr_asr.training.memory import keep_freed_memory  # noqa: E402
from transformers import AutoConfig, AutoModel  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "pretrain")


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


def timeit(fn, warmup: int = 2, repeats: int = 5) -> float:
    """Best wall time of ``fn()`` in seconds (synchronising CUDA): on shared cores other jobs only ever
    slow a run down, so the minimum is the least noisy estimate (for the peak and the steps alike)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(sizes=(512, 1024, 2048), warmup: int = 2, repeats: int = 7, device: str = "cpu",
                dtype=torch.float32) -> dict:
    """The best sgemm FLOP/s over a few square sizes: the denominator of every utilisation figure."""
    best = {"flops_per_s": 0.0}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = timeit(lambda: a @ b, warmup=warmup, repeats=repeats)
        rate = 2 * n**3 / seconds
        if rate > best["flops_per_s"]:
            best = {"flops_per_s": rate, "n": n, "seconds": seconds}
    return best


def quick_peak() -> float:
    """The sgemm rate right now (512² and 1024² products, ~0.1 s): the machine's speed drifts by 10-20%
    within minutes (shared cores), so each timed step is paired with one of these."""
    return matmul_peak(sizes=(512, 1024), warmup=1, repeats=4)["flops_per_s"]


# FlopCounterMode knows out-of-place addmm only; the WaveNet stack accumulates in place.
from repr_asr.training.flops import IN_PLACE_FLOPS as _IN_PLACE_FLOPS  # noqa: E402


def timed_against_peak(step, flops: float, warmup: int, repeats: int) -> tuple[float, dict]:
    """Best wall time of ``step`` and, for each timed step, its FLOP/s over the sgemm rate measured just
    before it (:func:`quick_peak`): the median and range of these paired fractions."""
    for _ in range(warmup):
        step()
    times, fractions = [], []
    for _ in range(repeats):
        peak = quick_peak()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        fractions.append(flops / times[-1] / peak)
    return min(times), {"median": statistics.median(fractions), "min": min(fractions), "max": max(fractions)}


def count_forward_flops(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping=_IN_PLACE_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def build_pretraining_model(config_name: str, overrides: dict | None = None):
    """Model and a batch shaped like the config's training batch (batch_size × crop_seconds)."""
    with open(os.path.join(CONFIG_DIR, f"{config_name}.yaml")) as handle:
        experiment = yaml.safe_load(handle)
    model_kwargs = dict(experiment["model"])
    model_kwargs.update(overrides or {})
    if model_kwargs.get("speaker_conditioning") and not model_kwargs.get("speakers"):
        model_kwargs["speakers"] = ["speaker0", "speaker1"]  # the recipe fills them from the training split
    config = AutoConfig.for_model(experiment["model_type"], **model_kwargs)
    model = AutoModel.from_config(config)
    training, data = experiment["training"], experiment.get("data", {})
    batch_size = int(training.get("batch_size", 8))
    samples = int(data.get("crop_samples", 16000))
    return model, batch_size, samples


def training_batch(model, batch_size: int, samples: int) -> dict:
    """Random audio shaped ``(batch_size, samples)`` with a full attention mask, and speaker ids (all the
    first speaker) when the model is speaker-conditioned: its training loss needs them."""
    batch = {
        "input_values": 0.1 * torch.randn(batch_size, samples),
        "attention_mask": torch.ones(batch_size, samples, dtype=torch.long),
    }
    if getattr(model.config, "speaker_conditioning", False) and getattr(model.config, "speakers", None):
        batch["speaker_ids"] = torch.zeros(batch_size, dtype=torch.long)
    return batch


def bench_training_step(config_name: str, peak: float, batch_size: int | None = None, crop: int | None = None,
                        repeats: int = 5, warmup: int = 3) -> dict:
    """FLOPs of one training step (3 × forward: the backward costs about twice the forward) and the
    FLOP/s achieved by forward + backward + AdamW, over the measured matmul peak."""
    model, default_batch, default_crop = build_pretraining_model(config_name)
    batch_size = batch_size or default_batch
    crop = crop or default_crop
    torch.manual_seed(0)
    model.train()
    batch = training_batch(model, batch_size, crop)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the trainer's

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(**batch, compute_loss=True).loss.backward()
        optimizer.step()

    forward_flops = count_forward_flops(lambda: model(**batch, compute_loss=True))
    # Three warm-up steps: the allocator reaches its steady state (no page faults) by the third.
    seconds, paired = timed_against_peak(step, 3 * forward_flops, warmup=warmup, repeats=repeats)
    train_flops = 3 * forward_flops
    return {
        "config": config_name,
        "batch_size": batch_size,
        "samples_per_item": crop,
        "parameters": sum(p.numel() for p in model.parameters()),
        "forward_flops": forward_flops,
        "train_step_flops": train_flops,
        "step_seconds": seconds,
        "achieved_flops_per_s": train_flops / seconds,
        "fraction_of_matmul_peak": train_flops / seconds / peak,
        "fraction_of_adjacent_peak": paired,
        "audio_seconds_per_s": batch_size * crop / model.config.sampling_rate / seconds,
    }


def write(name: str, payload: dict, directory: str = RESULTS_DIR) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.json")
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
    return path


BENCHMARKS: dict = {}

# --quick: the training steps' size, small enough for the test suite (tests/test_bench.py) yet long enough
# for every config (CPC predicts 12 frames ahead: 3,200 samples are 20 of its frames).
QUICK_STEP = {"batch_size": 1, "crop": 3200, "repeats": 1, "warmup": 0}
QUICK_PAPER_SAMPLES = 1600  # the paper-scale WaveNet's rows: one crop of 0.1 s


def benchmark(fn):
    BENCHMARKS[fn.__name__.removeprefix("bench_")] = fn
    return fn


@benchmark
def bench_pretraining_steps(peak: float, quick: bool) -> dict:
    """Every tiny pretraining config: FLOPs per step and utilisation (equal-compute comparison)."""
    rows = {}
    for name in ("wavenet_vq_tiny", "wavenet_vae_tiny", "wavenet_ae_tiny", "cpc_tiny", "masked_recon_tiny"):
        if os.path.exists(os.path.join(CONFIG_DIR, f"{name}.yaml")):
            rows[name] = bench_training_step(name, peak, **QUICK_STEP) if quick else bench_training_step(name, peak)
    return rows


def bench_decoder_step(config_name: str, peak: float, batch_size: int, samples: int, repeats: int = 5,
                       plain: bool = False, warmup: int = 3) -> dict:
    """The WaveNet decoder of a config alone (stack + head + softmax cross-entropy, no encoder), with the
    fused stack or (``plain``) the textbook ``conv1d`` + autograd one over the same parameters
    (:func:`plain_wavenet_stack`): the references the whole autoencoder step is compared with."""
    model, _, _ = build_pretraining_model(config_name)
    decoder = model.decoder
    torch.manual_seed(0)
    spf = model.samples_per_latent
    inputs = torch.randint(0, decoder.quantization_channels, (batch_size, samples))
    cond = torch.randn(batch_size, samples // spf, decoder.cond_proj.in_channels)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=1e-4, fused=True)

    def loss():
        skip = (plain_wavenet_stack(decoder, inputs, cond) if plain else decoder(inputs, cond)).reshape(-1, decoder.skip_channels)
        return torch.nn.functional.cross_entropy(decoder.head(skip), inputs.reshape(-1))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    forward_flops = count_forward_flops(loss)
    seconds, paired = timed_against_peak(step, 3 * forward_flops, warmup=warmup, repeats=repeats)
    return {
        "config": f"{config_name} (decoder only, {'plain conv1d' if plain else 'fused'} stack)",
        "batch_size": batch_size,
        "samples_per_item": samples,
        "parameters": sum(p.numel() for p in decoder.parameters()),
        "forward_flops": forward_flops,
        "train_step_flops": 3 * forward_flops,
        "step_seconds": seconds,
        "achieved_flops_per_s": 3 * forward_flops / seconds,
        "fraction_of_matmul_peak": 3 * forward_flops / seconds / peak,
        "fraction_of_adjacent_peak": paired,
        "audio_seconds_per_s": batch_size * samples / model.config.sampling_rate / seconds,
    }


@benchmark
def bench_wavenet_step(peak: float, quick: bool) -> dict:
    """The WaveNet autoencoder's training step at tiny scale (its config's batch) and at paper scale
    (one of the config's 1 s crops: the paper's batch of 32 does not fit CPU time), and the decoder
    alone for both, with the fused stack and with the plain ``conv1d`` one (the textbook PyTorch
    WaveNet, the same parameters)."""
    if quick:
        tiny_batch, paper_samples = (QUICK_STEP["batch_size"], QUICK_STEP["crop"]), QUICK_PAPER_SAMPLES
        repeats = {"tiny": 1, "paper": 1, "plain_paper": 1, "warmup": 0}
    else:
        tiny_batch, paper_samples = build_pretraining_model("wavenet_vq_tiny")[1:], 16000
        repeats = {"tiny": 5, "paper": 6, "plain_paper": 4, "warmup": 3}
    warmup = repeats["warmup"]
    return {
        "ae_tiny": bench_training_step("wavenet_vq_tiny", peak, *tiny_batch, repeats=repeats["tiny"], warmup=warmup),
        "decoder_tiny": bench_decoder_step("wavenet_vq_tiny", peak, *tiny_batch, repeats=repeats["tiny"], warmup=warmup),
        "decoder_plain_tiny": bench_decoder_step("wavenet_vq_tiny", peak, *tiny_batch, repeats=repeats["tiny"], plain=True,
                                                 warmup=warmup),
        "ae_paper": bench_training_step("wavenet_vq", peak, batch_size=1, crop=paper_samples, repeats=repeats["paper"],
                                        warmup=warmup),
        "decoder_paper": bench_decoder_step("wavenet_vq", peak, 1, paper_samples, repeats=repeats["paper"], warmup=warmup),
        "decoder_plain_paper": bench_decoder_step("wavenet_vq", peak, 1, paper_samples, repeats=repeats["plain_paper"],
                                                  plain=True, warmup=warmup),
    }


@benchmark
def bench_wavenet_generation(peak: float, quick: bool) -> dict:
    """Incremental generation (the cached step of ``resynthesize``) against recomputing the receptive
    field for every sample, paper-scale decoder (20 layers, receptive field 2047 samples), at batch 1
    and batch 8 (resynthesising several utterances at once).

    The recomputation runs over whole conditioning frames (a window a little longer than the receptive
    field); its time is scaled by ``receptive_field / window`` (a convolution stack's cost is linear in
    the length) so that the speed-up is against recomputing exactly the receptive field.
    """
    model, _, _ = build_pretraining_model("wavenet_vq")
    model.eval()
    decoder, spf = model.decoder, model.samples_per_latent
    field = decoder.receptive_field
    frames = -(-field // spf) + 1
    window = frames * spf
    steps, recomputed, warmup, batches = (10, 1, 0, (1, 2)) if quick else (300, 3, 1, (1, 8))
    rows = {"receptive_field": field, "recompute_window_samples": window}
    for batch in batches:
        torch.manual_seed(0)
        cond = torch.randn(batch, frames, decoder.cond_proj.in_channels)
        with torch.no_grad():
            cache = decoder.init_cache(cond, spf)
            prev = torch.zeros(batch, dtype=torch.long)
            for _ in range(2 if quick else 20):  # warm-up
                decoder.step(prev, cache)
            start = time.perf_counter()
            for _ in range(steps):
                prev = decoder.step(prev, cache).argmax(-1)
            cached_seconds = (time.perf_counter() - start) / steps
            history = torch.randint(0, decoder.quantization_channels, (batch, window))

            def one_sample():
                return decoder.head(decoder(history, cond)[:, field - 1])

            window_seconds = timeit(one_sample, warmup=warmup, repeats=recomputed)
        recompute_seconds = window_seconds * field / window
        rows[f"batch_{batch}"] = {
            "cached_samples_per_s": batch / cached_seconds,
            "recompute_samples_per_s": batch / recompute_seconds,
            "speedup": recompute_seconds / cached_seconds,
        }
    return rows


@benchmark
def bench_wavenet_features(peak: float, quick: bool) -> dict:
    """Feature extraction (``compute_loss=False``) against a full training forward, tiny config, its
    training batch; forward hooks count the decoder's module calls in each (must be 0 for features)."""
    model, batch_size, samples = build_pretraining_model("wavenet_vq_tiny")
    repeats = 1 if quick else 5
    if quick:
        batch_size, samples = QUICK_STEP["batch_size"], QUICK_STEP["crop"]
    model.train()
    torch.manual_seed(0)
    batch = training_batch(model, batch_size, samples)
    calls = {"n": 0}
    handles = [m.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1)) for m in model.decoder.modules()]

    def counted(compute_loss: bool) -> int:
        calls["n"] = 0
        model(**batch, compute_loss=compute_loss, output_hidden_states=True)
        return calls["n"]

    feature_calls, training_calls = counted(False), counted(True)
    if feature_calls:
        raise AssertionError(f"feature extraction ran the decoder ({feature_calls} module calls)")
    with torch.no_grad():
        features_seconds = timeit(lambda: model(**batch, output_hidden_states=True), repeats=repeats)
    training_forward_seconds = timeit(lambda: model(**batch, compute_loss=True), repeats=repeats)
    for handle in handles:
        handle.remove()
    return {
        "batch_size": batch_size,
        "samples_per_item": samples,
        "decoder_module_calls_features": feature_calls,
        "decoder_module_calls_training": training_calls,
        "features_seconds": features_seconds,
        "training_forward_seconds": training_forward_seconds,
        "training_forward_over_features": training_forward_seconds / features_seconds,
    }


@benchmark
def bench_feature_extraction(peak: float, quick: bool) -> dict:
    """Real-time factor (compute seconds per second of audio) of each upstream's feature extraction
    (``output_hidden_states``, every probe point, no decoder and no loss) and of a randomly initialised
    ``transformers`` Wav2Vec2Model in its base configuration, on the same audio in the same run, in
    float32 on this machine's device, batch of 4 utterances of 10 s (of 0.5 s with ``--quick``)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    seconds = 0.5 if quick else 10.0
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(4, int(seconds * 16000), device=device)
    mask = torch.ones_like(audio, dtype=torch.long)
    audio_seconds = audio.shape[0] * seconds
    rows = {}

    def measure(name: str, model, call) -> None:
        model.to(device).eval()
        with torch.no_grad():
            best = timeit(call, warmup=0 if quick else 1, repeats=1 if quick else 3)
        rows[name] = {"seconds": best, "real_time_factor": best / audio_seconds,
                      "parameters_millions": sum(p.numel() for p in model.parameters()) / 1e6}
        model.to("cpu")

    for config_name in ("wavenet_vq", "cpc", "masked_recon", "wavenet_vq_tiny", "cpc_tiny", "masked_recon_tiny"):
        model, _, _ = build_pretraining_model(config_name)
        measure(config_name, model, lambda: model(audio, attention_mask=mask, output_hidden_states=True))
    wav2vec2 = Wav2Vec2Model(Wav2Vec2Config())  # the base configuration (95M parameters), random weights
    measure("wav2vec2_base", wav2vec2, lambda: wav2vec2(audio, attention_mask=mask, output_hidden_states=True))
    reference = rows["wav2vec2_base"]["real_time_factor"]
    for row in rows.values():
        row["speedup_over_wav2vec2_base"] = reference / row["real_time_factor"]
    return {"device": device, "audio_seconds": audio_seconds, "rows": rows,
            "goal": "the paper-scale WaveNet-AE encoder (wavenet_vq) at least 5x faster than wav2vec2_base",
            "goal_met": rows["wavenet_vq"]["speedup_over_wav2vec2_base"] >= 5.0}


@benchmark
def bench_data_loading(peak: float, quick: bool) -> dict:
    """Does data loading keep up with training? Crops per second that the pretraining DataLoader delivers
    (over the first three quarters of one pass, 0 and 2 workers, worker start-up included) from the built-in corpus (FLAC files through
    ``RandomCropDataset``) and from the same utterances streamed from 4 parquet shards
    (``StreamingCropDataset``), against the crops per second one training step of ``wavenet_vq_tiny``
    consumes (its batch over its measured step time). Reads ``data/builtin`` when it exists (``make
    demo`` builds it), else synthesises a 0.25 h built-in corpus into a temporary folder. ``quick``: 16
    FLAC files of noise instead of a corpus (synthesising one takes longer than the rest of the quick
    run), 2 workers only."""
    import tempfile
    from pathlib import Path

    import datasets

    from repr_asr.data import load_corpus
    from repr_asr.data.builtin import build_corpus
    from repr_asr.data.crops import RandomCropDataset, collate_crops
    from repr_asr.data.streaming import StreamingCropDataset, open_stream

    step = bench_training_step("wavenet_vq_tiny", peak, **QUICK_STEP) if quick else bench_training_step("wavenet_vq_tiny", peak, repeats=3)
    batch_size, crop = step["batch_size"], step["samples_per_item"]
    needed = batch_size / step["step_seconds"]
    utterances = 16 if quick else 400
    with tempfile.TemporaryDirectory() as folder:
        if quick:
            import numpy as np
            import soundfile

            rng = np.random.default_rng(0)
            paths = [str(Path(folder) / f"noise{u:02d}.flac") for u in range(utterances)]
            for path in paths:
                soundfile.write(path, (0.1 * rng.standard_normal(2 * crop)).astype(np.float32), 16000)
            split = datasets.Dataset.from_dict({"id": [Path(p).stem for p in paths], "audio": paths})
        else:
            root = Path("data/builtin")
            if not (root / "manifest.json").exists():
                root = Path(folder) / "builtin"
                try:
                    build_corpus(root, hours=0.25, seed=0, num_workers=2, progress=False)
                except Exception as error:  # noqa: BLE001 - no speech synthesiser on this machine
                    return {"skipped": f"no built-in corpus and none could be built ({error})"}
            split = load_corpus(f"builtin:{root}")["pretrain"]
            split = split.select(range(min(utterances, len(split)))).select_columns(["id", "audio"])
        files = [cell if isinstance(cell, str) else cell["path"] for cell in split["audio"]]
        table = datasets.Dataset.from_dict({"id": list(split["id"]),
                                            "audio": [{"bytes": Path(f).read_bytes(), "path": None} for f in files]})
        table = table.cast_column("audio", datasets.Audio(sampling_rate=16000))
        shards = Path(folder) / "parquet" / "data"
        shards.mkdir(parents=True)
        for shard in range(4):
            table.shard(4, shard, contiguous=True).to_parquet(str(shards / f"train-{shard:05d}-of-00004.parquet"))
        sources = {
            "builtin (files)": RandomCropDataset(split, crop_samples=crop, seed=0),
            "streamed (parquet)": StreamingCropDataset(open_stream(str(shards.parent), split="train"), crop_samples=crop,
                                                       seed=0, shuffle_buffer=32),
        }
        rows = {}
        for name, dataset in sources.items():
            for workers in (2,) if quick else (0, 2):
                loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                                     collate_fn=collate_crops, shuffle=False)
                started = time.perf_counter()
                arrivals = []  # (crops so far, seconds) at each batch
                for batch in loader:
                    arrivals.append(((arrivals[-1][0] if arrivals else 0) + len(batch["input_values"]),
                                     time.perf_counter() - started))
                seconds = time.perf_counter() - started
                crops = arrivals[-1][0]
                # The rate over the first three quarters of the pass: when a shuffled stream's source runs dry,
                # `datasets` sleeps a fixed 5 s (config.SLEEP_TIME_ON_THREADS_SHUTDOWN) before the shuffle
                # buffer drains, once per pass and reader, not per crop (the whole pass is reported beside
                # it); the buffer is kept small enough (32) for every reader's source to last that long.
                done, at = [a for a in arrivals if a[0] <= 0.75 * crops][-1]
                rows[f"{name}, {workers} workers"] = {"crops": crops, "pass_seconds": seconds, "crops_per_s": done / at,
                                                      "over_training_need": done / at / needed}
    return {"config": "wavenet_vq_tiny", "batch_size": batch_size, "crop_samples": crop, "step_seconds": step["step_seconds"],
            "training_needs_crops_per_s": needed, "rows": rows}


def abx_bench_data(quick: bool) -> tuple[dict, list]:
    """Features and items for the ABX row: utterances of back-to-back tokens (50-120 ms, 8 triphone contexts
    at most), 100 frames per second of 32-d noise to which each token adds its phone's mean vector and each
    utterance its speaker's, so the error lies well between 0 and chance and within-speaker below across."""
    import numpy as np

    from repr_asr.evaluation.abx import Item

    rng = np.random.default_rng(0)
    files, speakers, phones, contexts, seconds = ((6, 3, list("abc"), ["x+y", "y+x"], 3.0) if quick else
                                                  (80, 10, list("abcdefgh"), ["x+y", "y+x", "x+x"], 9.5))
    dim = 32
    # Means a quarter of the noise's scale put the error near 30 % within and 35 % across speakers.
    phone_means = {p: 0.25 * rng.standard_normal(dim) for p in phones}
    speaker_means = [0.8 * rng.standard_normal(dim) for _ in range(speakers)]
    features, items = {}, []
    for f in range(files):
        name, speaker = f"utt{f:03d}", f % speakers
        array = rng.standard_normal((int(100 * seconds) + 50, dim)) + speaker_means[speaker]
        t = 0.0
        while t < seconds:
            duration = float(rng.uniform(0.05, 0.12))
            prev, nxt = str(rng.choice(contexts)).split("+")
            phone = str(rng.choice(phones))
            items.append(Item(name, round(t, 4), round(t + duration, 4), phone, prev, nxt, f"s{speaker}"))
            array[int(100 * t):int(100 * (t + duration))] += phone_means[phone]
            t += duration + 0.01
        features[name] = array.astype(np.float32)
    return features, items


def fastabx_scores(item_file: str, features_dir: str, frame_rate: int) -> dict:
    """fastabx's scores of an export (``bench/fastabx_abx.py``, run by the Python >= 3.12 interpreter that
    ``BENCH_FASTABX_PYTHON`` names), or ``{"skipped": why}``."""
    import subprocess

    python = os.environ.get("BENCH_FASTABX_PYTHON")
    if not python:
        return {"skipped": "BENCH_FASTABX_PYTHON is not set: fastabx needs Python >= 3.12 in its own environment "
                           "(python3.12 -m venv /work/venv312 && /work/venv312/bin/pip install fastabx; "
                           "BENCH_FASTABX_PYTHON=/work/venv312/bin/python make bench)"}
    if not os.access(python, os.X_OK):
        return {"skipped": f"BENCH_FASTABX_PYTHON={python} is not an executable file"}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastabx_abx.py")
    done = subprocess.run([python, script, item_file, features_dir, "--frequency", str(frame_rate)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{python} {script} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@benchmark
def bench_abx(peak: float, quick: bool) -> dict:
    """Our ABX (``repr_asr.evaluation.abx``) against the reference evaluator ``zerospeech-libriabx2`` and,
    when ``BENCH_FASTABX_PYTHON`` names a Python >= 3.12 with it installed, ``fastabx``, on the same
    features and item file (:func:`abx_bench_data`, a few thousand triphone tokens; a few hundred with
    ``quick``) written by ``export_for_evaluators``, each timed in this run: within and across speakers,
    Libri-light's triphone contexts, the default subsampling (each evaluator draws its own subsample, so
    the scores differ by sampling noise)."""
    import tempfile

    from repr_asr.evaluation.abx import abx_error, export_for_evaluators, read_item_file

    try:
        from zrc_abx2.eval_ABX import EvalABX, EvalArgs
    except ImportError:
        return {"skipped": "zerospeech-libriabx2 is not installed (pip install -e '.[test]')"}
    features, items = abx_bench_data(quick)
    frame_rate = 100
    with tempfile.TemporaryDirectory() as folder:
        export = export_for_evaluators(features, items, folder, "bench")
        items = read_item_file(export["item_file"])
        started = time.perf_counter()
        ours = abx_error(features, items, float(frame_rate), progress=False)
        ours_seconds = time.perf_counter() - started
        args = EvalArgs(path_data=folder, path_item_file=export["item_file"], file_extension=".npy",
                        feature_size=1 / frame_rate, context_mode="within")
        started = time.perf_counter()
        theirs = {r["abx-s-condition"]: r["score"] for r in EvalABX().eval_abx(args)}
        theirs_seconds = time.perf_counter() - started
        fast = fastabx_scores(export["item_file"], folder, frame_rate)
    modes = ("within", "across")
    result = {
        "items": len(items),
        "files": export["files"],
        "ours_seconds": ours_seconds,
        "reference_seconds": theirs_seconds,
        "reference_over_ours": theirs_seconds / ours_seconds,
        "ours_percent": {m: 100 * ours[m] for m in modes},
        "reference_percent": {m: 100 * theirs[m] for m in modes},
    }
    if "skipped" in fast:
        result["fastabx"] = fast
    else:
        result["fastabx"] = {"version": fast["fastabx"], "seconds": fast["seconds"],
                             "fastabx_over_ours": fast["seconds"] / ours_seconds,
                             "percent": {m: 100 * fast[m] for m in modes},
                             "largest_gap_to_ours_points": max(abs(100 * fast[m] - 100 * ours[m]) for m in modes)}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help=f"benchmarks to run (of {sorted(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="the smallest sizes, to check that every row runs")
    parser.add_argument("--output_dir", default=RESULTS_DIR, help="where each row's NAME.json goes")
    args = parser.parse_args()
    unknown = sorted(set(args.only or []) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}: choose from {sorted(BENCHMARKS)}")
    keep_freed_memory()  # as the trainer does on CPU
    torch.manual_seed(0)
    info = machine()
    peak = matmul_peak(sizes=(512, 1024), repeats=3) if args.quick else matmul_peak()
    print(f"machine: {info['processor']}, {info['threads']} threads, torch {info['torch']}, {info['device']}")
    print(f"measured sgemm peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s (n={peak['n']})")
    for name, fn in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        result = fn(peak["flops_per_s"], args.quick)
        path = write(name, {"machine": info, "matmul_peak": peak, "quick": args.quick, "results": result,
                            "wall_seconds": time.perf_counter() - started}, args.output_dir)
        print(f"\n== {name} ({path})")
        print(summarise(name, result))


def summarise(name: str, result: dict) -> str:
    lines = []
    if name in ("pretraining_steps", "wavenet_step"):
        lines.append(f"{'config':<22} {'GFLOP/step':>11} {'s/step':>8} {'GFLOP/s':>9} {'of peak':>8} "
                     f"{'of adjacent peak: median (range)':>33} {'audio s/s':>10}")
        for key, row in result.items():
            paired = row["fraction_of_adjacent_peak"]
            adjacent = f"{paired['median']:.2f} ({paired['min']:.2f}-{paired['max']:.2f})"
            lines.append(
                f"{key:<22} {row['train_step_flops'] / 1e9:>11.2f} {row['step_seconds']:>8.3f} "
                f"{row['achieved_flops_per_s'] / 1e9:>9.1f} {row['fraction_of_matmul_peak']:>8.2f} "
                f"{adjacent:>33} {row['audio_seconds_per_s']:>10.2f}"
            )
    elif name == "feature_extraction":
        lines.append(f"{'upstream':<20} {'params (M)':>10} {'RTF':>8} {'x wav2vec2 base':>16}  ({result['device']}, {result['audio_seconds']:.0f} s of audio)")
        for key, row in result["rows"].items():
            lines.append(f"{key:<20} {row['parameters_millions']:>10.1f} {row['real_time_factor']:>8.4f} {row['speedup_over_wav2vec2_base']:>16.1f}")
        lines.append(f"goal ({result['goal']}): {'met' if result['goal_met'] else 'NOT met'}")
    elif name == "data_loading" and "rows" in result:
        lines.append(f"training step ({result['config']}, batch {result['batch_size']} x {result['crop_samples']} samples): "
                     f"{result['step_seconds']:.3f} s, needs {result['training_needs_crops_per_s']:.1f} crops/s")
        lines.append(f"{'source':<34} {'crops/s':>9} {'x need':>8} {'whole pass (s)':>15}")
        for key, row in result["rows"].items():
            lines.append(f"{key:<34} {row['crops_per_s']:>9.1f} {row['over_training_need']:>8.1f} {row['pass_seconds']:>15.2f}")
    elif name == "abx" and "items" in result:
        lines.append(f"{result['items']} items in {result['files']} files; ABX error (%) within / across speakers, seconds:")
        rows = [("ours", result["ours_percent"], result["ours_seconds"]),
                ("zerospeech-libriabx2", result["reference_percent"], result["reference_seconds"])]
        fast = result["fastabx"]
        if "percent" in fast:
            rows.append((f"fastabx {fast['version']}", fast["percent"], fast["seconds"]))
        for key, percent, seconds in rows:
            lines.append(f"{key:<22} {percent['within']:>7.2f} {percent['across']:>7.2f} {seconds:>9.2f}")
        if "skipped" in fast:
            lines.append(f"fastabx: skipped: {fast['skipped']}")
    else:
        for key, value in result.items():
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
