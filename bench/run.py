"""Speed benchmarks behind `make bench`: achieved FLOP/s of training steps against the matmul peak
measured in the same run, incremental WaveNet generation against recomputing the receptive field,
and the compute per step of every tiny pretraining config (so comparisons are at equal compute).

Writes bench/results/<name>.json and prints a summary table. Ratios are measured in one run on one
machine; absolute numbers depend on it (the JSON records the machine).

    python bench/run.py [--only NAME ...] [--quick]
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
    """Median wall time of ``fn()`` in seconds (synchronising CUDA)."""
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
    return statistics.median(times)


def matmul_peak(device: str = "cpu", dtype=torch.float32) -> dict:
    """The best sgemm FLOP/s over a few square sizes: the denominator of every utilisation figure."""
    best = {"flops_per_s": 0.0}
    for n in (512, 1024, 2048):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = timeit(lambda: a @ b, warmup=2, repeats=7)
        rate = 2 * n**3 / seconds
        if rate > best["flops_per_s"]:
            best = {"flops_per_s": rate, "n": n, "seconds": seconds}
    return best


def count_forward_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def build_pretraining_model(config_name: str, overrides: dict | None = None):
    """Model and a batch shaped like the config's training batch (batch_size × crop_seconds)."""
    with open(os.path.join(CONFIG_DIR, f"{config_name}.yaml")) as handle:
        experiment = yaml.safe_load(handle)
    model_kwargs = dict(experiment["model"])
    model_kwargs.update(overrides or {})
    config = AutoConfig.for_model(experiment["model_type"], **model_kwargs)
    model = AutoModel.from_config(config)
    training, data = experiment["training"], experiment.get("data", {})
    batch_size = int(training.get("batch_size", 8))
    samples = int(float(data.get("crop_seconds", 1.0)) * config.sampling_rate)
    return model, batch_size, samples


def bench_training_step(config_name: str, peak: float, batch_size: int | None = None, crop: int | None = None) -> dict:
    """FLOPs of one training step (3 × forward: the backward costs about twice the forward) and the
    FLOP/s achieved by forward + backward + AdamW, over the measured matmul peak."""
    model, default_batch, default_crop = build_pretraining_model(config_name)
    batch_size = batch_size or default_batch
    crop = crop or default_crop
    torch.manual_seed(0)
    model.train()
    batch = {
        "input_values": 0.1 * torch.randn(batch_size, crop),
        "attention_mask": torch.ones(batch_size, crop, dtype=torch.long),
    }
    if getattr(model.config, "speaker_conditioning", False) and getattr(model.config, "speakers", None):
        batch["speaker_ids"] = torch.zeros(batch_size, dtype=torch.long)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(**batch, compute_loss=True).loss.backward()
        optimizer.step()

    forward_flops = count_forward_flops(lambda: model(**batch, compute_loss=True))
    seconds = timeit(step, warmup=2, repeats=5)
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
        "audio_seconds_per_s": batch_size * crop / model.config.sampling_rate / seconds,
    }


def write(name: str, payload: dict) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
    return path


BENCHMARKS: dict = {}


def benchmark(fn):
    BENCHMARKS[fn.__name__.removeprefix("bench_")] = fn
    return fn


@benchmark
def bench_pretraining_steps(peak: float, quick: bool) -> dict:
    """Every tiny pretraining config: FLOPs per step and utilisation (equal-compute comparison)."""
    rows = {}
    for name in ("wavenet_vq_tiny", "wavenet_vae_tiny", "wavenet_ae_tiny", "cpc_tiny", "masked_recon_tiny"):
        if os.path.exists(os.path.join(CONFIG_DIR, f"{name}.yaml")):
            rows[name] = bench_training_step(name, peak)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help=f"benchmarks to run (of {sorted(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    torch.manual_seed(0)
    info = machine()
    peak = matmul_peak()
    print(f"machine: {info['processor']}, {info['threads']} threads, torch {info['torch']}, {info['device']}")
    print(f"measured sgemm peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s (n={peak['n']})")
    for name, fn in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        result = fn(peak["flops_per_s"], args.quick)
        path = write(name, {"machine": info, "matmul_peak": peak, "results": result,
                            "wall_seconds": time.perf_counter() - started})
        print(f"\n== {name} ({path})")
        print(summarise(name, result))


def summarise(name: str, result: dict) -> str:
    lines = []
    if name in ("pretraining_steps", "wavenet_step"):
        lines.append(f"{'config':<22} {'GFLOP/step':>11} {'s/step':>8} {'GFLOP/s':>9} {'of peak':>8} {'audio s/s':>10}")
        for key, row in result.items():
            lines.append(
                f"{key:<22} {row['train_step_flops'] / 1e9:>11.2f} {row['step_seconds']:>8.3f} "
                f"{row['achieved_flops_per_s'] / 1e9:>9.1f} {row['fraction_of_matmul_peak']:>8.2f} {row['audio_seconds_per_s']:>10.2f}"
            )
    else:
        for key, value in result.items():
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
