"""The GPU check (bench/gpu.sh): on one CUDA device, in one go, each figure as achieved FLOP/s over the
bf16 matrix-product peak measured in the same run.

* the bf16 peak: the best of large square bf16 products;
* training steps of the paper-scale configs (wavenet_vq, cpc, masked_recon) in bf16 autocast: forward,
  backward and fused AdamW, FLOPs counted on the real batch (3 × forward), and the WaveNet-AE step again
  under ``torch.compile`` (kept only if it pays; a failure to compile is recorded, not fatal);
* feature extraction (every probe point, no decoder) of each paper-scale upstream and of a random
  wav2vec2-base, as real-time factor, in bf16 autocast;
* greedy CTC decoding of a batch of emissions on the device, in utterances per second.

    python bench/gpu.py [--output bench/results/gpu.json]
    python bench/gpu.py --device cpu --quick   # a dry run of every path with the tiny configs (no GPU needed)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

DEVICE = "cuda"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import build_pretraining_model, count_forward_flops, machine, matmul_peak, timeit  # noqa: E402


def training_step(config_name: str, peak: float, compile_model: bool = False, repeats: int = 5) -> dict:
    model, batch_size, crop = build_pretraining_model(config_name)
    model.to(DEVICE).train()
    torch.manual_seed(0)
    batch = {"input_values": 0.1 * torch.randn(batch_size, crop, device=DEVICE),
             "attention_mask": torch.ones(batch_size, crop, dtype=torch.long, device=DEVICE)}
    if getattr(model.config, "speaker_conditioning", False) and getattr(model.config, "speakers", None):
        batch["speaker_ids"] = torch.zeros(batch_size, dtype=torch.long, device=DEVICE)
    forward_flops = count_forward_flops(lambda: model(**batch, compute_loss=True))
    runner = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = runner(**batch, compute_loss=True).loss
        loss.backward()
        optimizer.step()

    started = time.perf_counter()
    step()  # the first step compiles when asked to
    first = time.perf_counter() - started
    seconds = timeit(step, warmup=2, repeats=repeats)
    flops = 3 * forward_flops
    return {"config": config_name, "compiled": compile_model, "batch_size": batch_size, "samples_per_item": crop,
            "train_step_flops": flops, "step_seconds": seconds, "first_step_seconds": first,
            "achieved_flops_per_s": flops / seconds, "fraction_of_bf16_peak": flops / seconds / peak,
            "audio_seconds_per_s": batch_size * crop / model.config.sampling_rate / seconds}


def feature_extraction(peak: float, seconds: float = 10.0, configs=("wavenet_vq", "cpc", "masked_recon")) -> dict:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    audio = 0.1 * torch.randn(8, int(seconds * 16000), device=DEVICE)
    mask = torch.ones_like(audio, dtype=torch.long)
    rows = {}
    models = {name: build_pretraining_model(name)[0] for name in configs}
    models["wav2vec2_base"] = Wav2Vec2Model(Wav2Vec2Config())
    for name, model in models.items():
        model.to(DEVICE).eval()

        def run():
            with torch.no_grad(), torch.autocast(DEVICE, dtype=torch.bfloat16):
                model(audio, attention_mask=mask, output_hidden_states=True)

        flops = count_forward_flops(run)
        best = timeit(run, warmup=2, repeats=5)
        rows[name] = {"real_time_factor": best / (audio.shape[0] * seconds), "forward_flops": flops,
                      "fraction_of_bf16_peak": flops / best / peak}
        model.to("cpu")
    for row in rows.values():
        row["speedup_over_wav2vec2_base"] = rows["wav2vec2_base"]["real_time_factor"] / row["real_time_factor"]
    return rows


def ctc_decoding() -> dict:
    from repr_asr.evaluation.decoding import greedy_ids

    torch.manual_seed(0)
    emissions = torch.randn(64, 800, 32, device=DEVICE).log_softmax(-1)  # 64 utterances of 16 s at 50 Hz
    lengths = torch.full((64,), 800, device=DEVICE)
    best = timeit(lambda: greedy_ids(emissions, lengths), warmup=2, repeats=5)
    return {"utterances": 64, "frames": 800, "seconds": best, "utterances_per_s": 64 / best}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu.json"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny configs and sizes: checks every path in a minute")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA device (--device cpu --quick runs a dry run)")
    configs = ("wavenet_vq_tiny", "cpc_tiny", "masked_recon_tiny") if args.quick else ("wavenet_vq", "cpc", "masked_recon")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    started = time.perf_counter()
    peak = matmul_peak(sizes=(512,) if args.quick else (4096, 8192), device=DEVICE, dtype=torch.bfloat16)
    gpu = torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE
    results = {"machine": {**machine(), "gpu": gpu}, "bf16_peak": peak, "quick": args.quick, "steps": {}}
    print(f"{results['machine']['gpu']}: bf16 peak {peak['flops_per_s'] / 1e12:.0f} TFLOP/s", flush=True)

    def save():
        results["wall_seconds"] = time.perf_counter() - started
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)

    for name in configs:
        row = training_step(name, peak["flops_per_s"])
        results["steps"][name] = row
        print(f"{name}: {row['step_seconds'] * 1e3:.1f} ms/step, {row['fraction_of_bf16_peak']:.2f} of bf16 peak", flush=True)
        save()
    try:
        if args.quick:
            raise RuntimeError("skipped with --quick (compiling takes minutes on a CPU)")
        row = training_step(configs[0], peak["flops_per_s"], compile_model=True)
        results["steps"]["wavenet_vq_compiled"] = row
        print(f"wavenet_vq compiled: {row['step_seconds'] * 1e3:.1f} ms/step, {row['fraction_of_bf16_peak']:.2f} of bf16 peak", flush=True)
    except Exception as error:  # noqa: BLE001  (recorded: compile is optional)
        results["steps"]["wavenet_vq_compiled"] = {"error": f"{type(error).__name__}: {error}"[:500]}
    save()
    results["feature_extraction"] = feature_extraction(peak["flops_per_s"], 1.0 if args.quick else 10.0, configs)
    results["ctc_decoding"] = ctc_decoding()
    save()
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
