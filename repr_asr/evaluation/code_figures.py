"""Pictures of what a VQ bottleneck's codes are: the code × phone matrix, and codes over a spectrogram.

Both read the dictionary :func:`repr_asr.evaluation.codes.evaluate_codes` returns:

* :func:`plot_code_phone_matrix`: P(phone | code) for every code seen on a labelled frame, codes grouped
  by their most frequent phone, so a code that stands for one phone shows as one dark cell in its row
  and a phone served by several codes as a dark column segment (the talk's "token 13 near S and Z");
* :func:`plot_code_example`: one utterance's log-mel spectrogram, its codes frame by frame (a colour per
  code, the code number written where it changes) and its phone alignment underneath.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def plot_code_phone_matrix(results: dict, path: Union[str, os.PathLike], max_codes: int = 64) -> str:
    """Draw P(phone | code) for the (at most ``max_codes``) most used codes of ``results`` into ``path``."""
    counts = np.asarray(results.get("code_phone") or [], dtype=np.float64)
    phones: Sequence[str] = results.get("phones") or []
    if counts.size == 0 or counts.sum() == 0:
        raise ValueError("plot_code_phone_matrix: the results have no code-phone counts (no phone timings in the split?)")
    used = np.argsort(-counts.sum(1), kind="stable")[:max_codes]
    used = used[counts[used].sum(1) > 0]
    # Columns: phones by frequency; rows: codes grouped by their most frequent phone, then by use.
    columns = np.argsort(-counts.sum(0), kind="stable")
    columns = columns[counts[:, columns].sum(0) > 0]
    rank = {int(p): k for k, p in enumerate(columns)}
    rows = sorted(used, key=lambda c: (rank[int(np.argmax(counts[c]))], -counts[c].sum()))
    matrix = counts[np.ix_(rows, columns)]
    matrix = matrix / matrix.sum(1, keepdims=True)
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(max(6.0, 0.22 * len(columns) + 2), max(4.0, 0.16 * len(rows) + 1.5)))
    image = axis.imshow(matrix, aspect="auto", cmap="Greys", vmin=0.0, vmax=1.0, interpolation="nearest")
    axis.set_xticks(range(len(columns)), [phones[p] for p in columns], rotation=90, fontsize=7)
    axis.set_yticks(range(len(rows)), [str(int(c)) for c in rows], fontsize=6)
    axis.set_xlabel("phone")
    axis.set_ylabel("code")
    metrics = results.get("metrics", {})
    axis.set_title(f"P(phone | code): {len(rows)} codes, purity {metrics.get('phone_purity', float('nan')):.1f} %, "
                   f"phone NMI {metrics.get('phone_nmi', float('nan')):.2f}", fontsize=9)
    fig.colorbar(image, ax=axis, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def log_mel(waveform: np.ndarray, sampling_rate: int, frame_rate: float = 100.0, n_mels: int = 64) -> np.ndarray:
    """``(n_mels, frames)`` log-mel spectrogram for display (25 ms windows, ``frame_rate`` hops)."""
    import torchaudio

    hop = int(round(sampling_rate / frame_rate))
    mel = torchaudio.transforms.MelSpectrogram(sampling_rate, n_fft=int(0.025 * sampling_rate), hop_length=hop, n_mels=n_mels)
    return torch.log(mel(torch.as_tensor(waveform, dtype=torch.float32)) + 1e-6).numpy()


def plot_code_example(example: dict, waveform: np.ndarray, sampling_rate: int, frame_rate: float, path: Union[str, os.PathLike]) -> str:
    """Draw one utterance of ``results["examples"]`` (``codes``, ``phones``) over its spectrogram into ``path``."""
    codes = np.asarray(example["codes"], dtype=np.int64)
    duration = len(waveform) / sampling_rate
    plt = _pyplot()
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(min(18.0, 2.0 + 4.0 * duration), 4.2), sharex=True,
                                              gridspec_kw={"height_ratios": [3, 0.8, 0.8]})
    top.imshow(log_mel(waveform, sampling_rate), origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, 1))
    top.set_yticks([])
    top.set_ylabel("log-mel")
    top.set_title(f"{example['id']} (speaker {example.get('speaker_id', '?')}): codes and phones", fontsize=9)
    middle.imshow(codes[None, :], aspect="auto", cmap="tab20", interpolation="nearest", extent=(0, len(codes) / frame_rate, 0, 1))
    starts = np.flatnonzero(np.diff(codes, prepend=-1))
    for k, end in zip(starts, np.append(starts[1:], len(codes))):  # a run's code, where the run is wide enough to read
        if end - k >= 3:
            middle.text((k + end) / 2 / frame_rate, 0.5, str(int(codes[k])), ha="center", va="center", fontsize=6)
    middle.set_yticks([])
    middle.set_ylabel("code", fontsize=8)
    for label, start, end in example.get("phones") or []:
        bottom.axvline(start, color="0.6", linewidth=0.5)
        bottom.text((start + end) / 2, 0.5, label, ha="center", va="center", fontsize=6)
    bottom.set_yticks([])
    bottom.set_ylabel("phone", fontsize=8)
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, duration)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def draw_code_figures(results: dict, data: str, folder: Union[str, os.PathLike], sampling_rate: int,
                      max_utterances: Optional[int] = None) -> dict:
    """Draw ``folder/code_phone.png`` and ``folder/codes-ID.png`` for each of ``results["examples"]``
    (their audio read again from the corpus ``data``, the split and subset :func:`evaluate_codes` used)
    and return ``{label: file name}``."""
    from ..audio import decode_audio
    from .features import load_split

    os.makedirs(folder, exist_ok=True)
    figures = {}
    if results.get("code_phone"):
        figures["code_phone"] = os.path.basename(plot_code_phone_matrix(results, os.path.join(folder, "code_phone.png")))
    examples = results.get("examples") or []
    if examples:
        rows = load_split(data, results["split"], max_utterances, seed=0).select(range(len(examples)))
        audio = {str(row["id"]): row["audio"] for row in rows}
        for example in examples:
            waveform = decode_audio(audio[example["id"]], sampling_rate, name=example["id"])
            path = os.path.join(folder, f"codes-{example['id']}.png")
            figures[f"example {example['id']}"] = os.path.basename(plot_code_example(example, waveform, sampling_rate, results["frame_rate"], path))
    return figures
