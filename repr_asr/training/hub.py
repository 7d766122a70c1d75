"""Uploading a run's ``final/`` folder to the Hugging Face Hub (the recipes' ``--push_to_hub REPO``).

The whole folder goes up in one commit with ``huggingface_hub``'s ``HfApi.upload_folder``: weights, config,
feature extractor, tokenizer / processor and the model card, so the hub repo loads exactly as the local
folder does. The token is huggingface_hub's usual one (``HF_TOKEN`` or ``huggingface-cli login``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def check_repo_id(repo_id: str) -> None:
    """Raise an error naming ``repo_id`` when it cannot be a hub repo id; the recipes call it before training,
    so a typo does not surface only after the run."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"--push_to_hub {repo_id!r} is not a hub repo id (NAME or NAMESPACE/NAME): {error}") from error


def push_folder(folder: str | os.PathLike, repo_id: str, commit_message: str) -> str:
    """Create the model repo ``repo_id`` when missing and upload ``folder`` to it in one commit; returns
    the commit's URL. A missing folder or a malformed repo id is an error naming it, raised before any
    network call."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"--push_to_hub {repo_id}: {folder} is not a saved model folder (no config.json)")
    check_repo_id(repo_id)
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=commit_message)
    url = str(getattr(commit, "commit_url", commit))
    logger.info("pushed %s to %s (%s)", folder, repo_id, url)
    return url


def reference_signal(seconds: float = 1.0, sampling_rate: int = 16000) -> "np.ndarray":
    """A fixed test signal (a chirp under seeded noise) whose features identify a checkpoint's behaviour."""
    import numpy as np

    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    chirp = 0.3 * np.sin(2 * np.pi * (150 + 600 * t) * t)
    return (chirp + 0.02 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)


def feature_fingerprint(model, feature_extractor) -> dict:
    """``{probe_point: {"shape", "mean", "std"}}``: the per-dimension time mean and std of every probe
    point's features on :func:`reference_signal`, prepared by ``feature_extractor``. Stored beside an
    exported checkpoint (``hub/NAME/fingerprint.json``) so that a test can check that the weights, as
    loaded by ``AutoModel`` with today's code, still compute the same features."""
    import torch

    inputs = feature_extractor(reference_signal(), sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    model.eval()
    with torch.no_grad():
        out = model(inputs["input_values"], attention_mask=inputs.get("attention_mask"), output_hidden_states=True)
    fingerprint = {}
    for point, hidden in zip(model.config.probe_points, out.hidden_states):
        frames = hidden[0].float()
        fingerprint[point] = {"shape": list(frames.shape), "mean": frames.mean(0).tolist(), "std": frames.std(0).tolist()}
    return fingerprint
