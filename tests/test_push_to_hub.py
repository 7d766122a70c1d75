"""--push_to_hub on the pretraining recipe: final/ (model, feature extractor, a card the hub parses) is
uploaded to the named repo at the end of the run, and a malformed repo id stops the run before it
writes anything. The hub's HTTP calls (``HfApi.create_repo`` / ``upload_folder``, a third-party boundary)
are replaced by a recorder; HF_HUB_OFFLINE makes any other hub call fail instead of reaching the network.
(The CTC recipe's upload is tested in test_finetune_ctc.py.)"""

import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard

import repr_asr  # noqa: F401
from test_pretrain_recipe import _args, _chapter, _load_recipe

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "pretrain" / "masked_recon_tiny.yaml"
REPO = "someone/masked-recon-tiny"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("LibriSpeech")
    _chapter(root, "train-clean-100", "11", "100", 3, 0)
    _chapter(root, "dev-clean", "21", "300", 1, 9)
    _chapter(root, "test-clean", "31", "400", 1, 12)
    return root


def record_hub_calls(patch) -> list:
    """Replace the hub's HTTP calls through ``patch`` (a pytest MonkeyPatch) by a recorder; returns the
    list it fills (each upload with what the folder holds at upload time)."""
    patch.setenv("HF_HUB_OFFLINE", "1")  # anything not recorded here fails instead of reaching the network
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, **kwargs})
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = os.fspath(folder_path)
        calls.append({"call": "upload_folder", "repo_id": repo_id, "folder_path": folder, **kwargs,
                      "files": sorted(os.listdir(folder)), "card": open(os.path.join(folder, "README.md")).read()})
        return f"https://huggingface.co/{repo_id}/commit/0"

    patch.setattr(HfApi, "create_repo", create_repo)
    patch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The hub calls the recipes make, recorded."""
    monkeypatch.setenv("REPR_ASR_CACHE", str(tmp_path / "cache"))
    return record_hub_calls(monkeypatch)


def test_pretraining_pushes_final_to_the_hub(corpus, tmp_path, hub):
    out = tmp_path / "run"
    _load_recipe().main(_args(CONFIG, corpus, out, "--push_to_hub", REPO))
    assert [c["call"] for c in hub] == ["create_repo", "upload_folder"]
    create, upload = hub
    assert create["repo_id"] == REPO and create["exist_ok"] is True and create["repo_type"] == "model"
    assert upload["repo_id"] == REPO and upload["folder_path"] == str(out / "final") and upload["repo_type"] == "model"
    assert "masked_recon" in upload["commit_message"] and "3 steps" in upload["commit_message"]
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(upload["files"])
    card = ModelCard(upload["card"])  # huggingface_hub's parser, as the hub reads it
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "feature-extraction"
    assert "repr-asr" in card.data.tags and "for 3 steps" in card.text and "FLOPs per step" in card.text


def test_a_malformed_repo_id_stops_the_run_before_it_writes(corpus, tmp_path, hub):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="not a hub repo id"):
        _load_recipe().main(_args(CONFIG, corpus, out, "--push_to_hub", "two words/and/slashes"))
    assert not out.exists() and hub == []
