"""A pretraining run's ``final/`` exported to a hub folder, with the fingerprint that checks it still loads the same."""

import json
import shutil
from pathlib import Path

EXPORTED = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


def export_upstream(final: Path, folder: Path) -> None:
    """Copy :data:`EXPORTED` from ``final`` to ``folder`` and write ``folder/fingerprint.json``: the exported
    upstream's features on a fixed signal, loaded as a user would (``AutoModel``)."""
    import repr_asr  # noqa: F401  (registers the model types with the Auto classes)
    from transformers import AutoFeatureExtractor, AutoModel

    from repr_asr.training.hub import feature_fingerprint

    folder.mkdir(parents=True, exist_ok=True)
    for file in EXPORTED:
        shutil.copy2(final / file, folder / file)
    fingerprint = feature_fingerprint(AutoModel.from_pretrained(folder), AutoFeatureExtractor.from_pretrained(folder))
    (folder / "fingerprint.json").write_text(json.dumps(fingerprint) + "\n")
