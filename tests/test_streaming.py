"""Streamed corpora (repr_asr.data.streaming): a local dataset written as parquet shards, read as a
``datasets`` IterableDataset. Each example comes once per epoch whatever the processes and data-loader
workers (also under two gloo processes), the order is a function of (seed, epoch), a resume passes over
exactly the batches consumed, undecodable audio is skipped and named, and pretraining with --streaming
resumes bit-exactly after SIGKILL."""

import io
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile
import torch

from repr_asr.data.crops import collate_crops
from repr_asr.data.librispeech import CorpusError
from repr_asr.data.streaming import StreamingCropDataset, open_stream
from repr_asr.training import ConfigError
from test_run_integrity import ROOT, _args, _env, _run, _weights, kill_after_checkpoint

SHARDS, UTTERANCES = 4, 24

# datasets sleeps SLEEP_TIME_ON_THREADS_SHUTDOWN (5 s) each time a parquet stream ends, to let pyarrow's
# reader threads close (apache/arrow#45214). Harmless once an epoch over real shards; here, where every
# test reads 24 tiny rows many times over, it was three quarters of this file's time. A short pause keeps
# the workaround's order of events. Streamed runs of the recipe (subprocesses) keep the library's value.
SHORT_SHUTDOWN_SLEEP = 0.1


@pytest.fixture(autouse=True)
def short_shutdown_sleep(monkeypatch):
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", SHORT_SHUTDOWN_SLEEP)


def _wav(seconds: float, frequency: float) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), 16000, format="WAV")
    return buffer.getvalue()


def write_parquet_corpus(root: Path, bad: tuple = ()) -> Path:
    """UTTERANCES short tones of 3 speakers as SHARDS parquet files of split train, 4 more as validation."""
    rows = {"id": [], "audio": [], "speaker_id": [], "text": []}
    for i in range(UTTERANCES + 4):
        rows["id"].append(f"utt{i:03d}")
        rows["audio"].append({"bytes": b"not audio" if i in bad else _wav(0.3 + 0.01 * i, 200 + 10 * i), "path": None})
        rows["speaker_id"].append(f"spk{i % 3}")
        rows["text"].append("a tone")
    table = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(sampling_rate=16000))
    (root / "data").mkdir(parents=True, exist_ok=True)
    train = table.select(range(UTTERANCES))
    for shard in range(SHARDS):
        train.shard(SHARDS, shard, contiguous=True).to_parquet(str(root / "data" / f"train-{shard:05d}-of-{SHARDS:05d}.parquet"))
    table.select(range(UTTERANCES, UTTERANCES + 4)).to_parquet(str(root / "data" / "validation-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_parquet_corpus(tmp_path_factory.mktemp("parquet"))


def _ids(batch):
    return [item["id"] for item in batch]


def epoch_batches(dataset, workers: int, epoch: int = 0, batch_size: int = 3) -> list[list[str]]:
    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_ids)
    return list(loader)


def test_open_stream_reads_the_shards_and_maps_split_names(corpus):
    stream = open_stream(str(corpus), split="pretrain")  # no `pretrain` split: the source's `train`
    assert isinstance(stream, datasets.IterableDataset) and stream.num_shards == SHARDS
    rows = list(stream)
    assert [r["id"] for r in rows] == [f"utt{i:03d}" for i in range(UTTERANCES)]
    assert set(rows[0]["audio"]) == {"bytes", "path"}  # undecoded: the crop dataset decodes each example
    assert [r["id"] for r in open_stream(str(corpus), split="dev")] == [f"utt{i:03d}" for i in range(UTTERANCES, UTTERANCES + 4)]
    with pytest.raises(CorpusError, match="no split 'test'"):
        open_stream(str(corpus), split="test")


@pytest.mark.parametrize("world, workers", [(1, 0), (1, 2), (2, 0), (2, 2), (3, 1)])
def test_each_example_once_per_epoch(corpus, world, workers):
    stream = open_stream(str(corpus), split="train")
    seen = Counter()
    for rank in range(world):
        dataset = StreamingCropDataset(stream, crop_samples=1600, rank=rank, world_size=world, shuffle_buffer=8)
        seen.update(i for batch in epoch_batches(dataset, workers) for i in batch)
    assert seen == Counter({f"utt{i:03d}": 1 for i in range(UTTERANCES)})


def test_order_and_crops_follow_seed_and_epoch(corpus):
    stream = open_stream(str(corpus), split="train")
    dataset = StreamingCropDataset(stream, crop_samples=1600, seed=3, shuffle_buffer=8)
    first = epoch_batches(dataset, 2, epoch=0)
    assert epoch_batches(dataset, 2, epoch=0) == first
    assert epoch_batches(dataset, 2, epoch=1) != first
    assert [i for b in first for i in b] != [f"utt{i:03d}" for i in range(UTTERANCES)]  # shuffled
    # A crop depends on the example and the epoch, not on its place in the stream.
    dataset.set_epoch(0)
    by_id = {item["id"]: item for item in dataset}
    unshuffled = StreamingCropDataset(stream, crop_samples=1600, seed=3, shuffle_buffer=0)
    for item in unshuffled:
        np.testing.assert_array_equal(item["input_values"], by_id[item["id"]]["input_values"])
        assert item["example_seed"] == by_id[item["id"]]["example_seed"]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_passes_over_exactly_the_consumed_batches(corpus, workers):
    stream = open_stream(str(corpus), split="train")
    dataset = StreamingCropDataset(stream, crop_samples=1600, seed=1, shuffle_buffer=8)
    whole = epoch_batches(dataset, workers, epoch=2)
    for consumed in (1, 3, 4):
        dataset.skip_batches(consumed, 3)
        assert epoch_batches(dataset, workers, epoch=2) == whole[consumed:], f"after {consumed} batches"
    dataset.skip_batches(0, 3)


def test_undecodable_audio_is_skipped_and_named(tmp_path):
    root = write_parquet_corpus(tmp_path / "bad", bad=(5,))
    dataset = StreamingCropDataset(open_stream(str(root), split="train"), crop_samples=1600, shuffle_buffer=0)
    batches = [collate_crops(b) for b in torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=list)]
    skipped = [s for b in batches for s in b.get("skipped", [])]
    assert [s["id"] for s in skipped] == ["utt005"] and "utt005" in skipped[0]["error"]
    assert sum(len(b["input_values"]) for b in batches) == UTTERANCES - 1
    strict = StreamingCropDataset(open_stream(str(root), split="train"), crop_samples=1600, shuffle_buffer=0, strict=True)
    with pytest.raises(Exception, match="utt005"):
        list(strict)


TWO_PROCESSES = textwrap.dedent("""
    import json, sys
    import datasets, torch, torch.distributed as dist
    from repr_asr.data.streaming import StreamingCropDataset, open_stream

    datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = float(sys.argv[3])  # see SHORT_SHUTDOWN_SLEEP

    dist.init_process_group("gloo")
    dataset = StreamingCropDataset(open_stream(sys.argv[1], split="train"), crop_samples=1600, shuffle_buffer=8)
    seen = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=lambda b: [i["id"] for i in b])
        seen.append([i for batch in loader for i in batch])
    gathered = [None, None]
    dist.all_gather_object(gathered, seen)
    if dist.get_rank() == 0:
        open(sys.argv[2], "w").write(json.dumps(gathered))
    dist.destroy_process_group()
""")


def test_two_gloo_processes_see_each_example_once_per_epoch(corpus, tmp_path):
    script, out = tmp_path / "two.py", tmp_path / "seen.json"
    script.write_text(TWO_PROCESSES)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(corpus), str(out), str(SHORT_SHUTDOWN_SLEEP)], capture_output=True, text=True, timeout=300,
                          env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = json.loads(out.read_text())
    for epoch in range(2):
        assert rank0[epoch] and rank1[epoch] and not set(rank0[epoch]) & set(rank1[epoch])
        assert sorted(rank0[epoch] + rank1[epoch]) == [f"utt{i:03d}" for i in range(UTTERANCES)]
    assert rank0[0] != rank0[1]  # a new epoch, a new order


def _streamed(corpus, out, *extra):
    config = ROOT / "configs" / "pretrain" / "wavenet_vq_tiny.yaml"
    return [sys.executable, "recipes/pretrain.py",
            *_args(config, corpus, out, "--data", f"hf:{corpus}", "--streaming", "--data.cache_audio", "false",
                   "--data.shuffle_buffer", "8", "--training.num_workers", "2", *extra)]


def test_streamed_pretraining_resumes_bit_exactly_after_sigkill(corpus, tmp_path, monkeypatch):
    # The recipe's processes pause as briefly at each stream's end (SHORT_SHUTDOWN_SLEEP): a sitecustomize
    # on their path sets it before the recipe runs.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import datasets.config\ndatasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = {SHORT_SHUTDOWN_SLEEP}\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    # 24 utterances in batches of 2 over 2 workers: 12 steps an epoch; the kill lands mid-epoch 1.
    args = ["--max_steps", "18", "--save_steps", "14", "--data.eval_split", "dev"]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    sealed = kill_after_checkpoint(_streamed(corpus, killed, *args), killed, 14, tmp_path)
    state = json.loads(sealed.read_text())
    assert state["epoch"] == 1 and state["batches_in_epoch"] == 2

    resumed = _run(_streamed(corpus, killed, *args, "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = _run(_streamed(corpus, reference, *args), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    got, want = _weights(killed / "final"), _weights(reference / "final")
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)
    card = (reference / "final" / "README.md").read_text()
    assert "streamed" in card


def test_streaming_needs_an_hf_corpus(tmp_path):
    from repr_asr.training.config import PretrainDataConfig

    with pytest.raises(ConfigError, match="data.streaming needs an hf:"):
        PretrainDataConfig(spec="builtin:data/builtin", streaming=True)


def save_tiny_upstream(folder: Path, seed: int = 0) -> Path:
    """A random tiny masked-reconstruction upstream (weights drawn with ``seed``) and its feature extractor."""
    from repr_asr import MaskedReconConfig, MaskedReconModel
    from repr_asr.feature_extraction import ReprFeatureExtractor

    torch.manual_seed(seed)
    MaskedReconModel(MaskedReconConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, n_mels=20)).save_pretrained(folder)
    ReprFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    return save_tiny_upstream(tmp_path_factory.mktemp("upstream"))


def test_streamed_feature_export_matches_extraction_resumes_and_shards(corpus, upstream, tmp_path, monkeypatch):
    from repr_asr.evaluation.feature_export import export_features
    from repr_asr.evaluation.features import extract_features
    from repr_asr.models import load_upstream

    out = tmp_path / "features"
    counts = export_features(str(upstream), f"hf:{corpus}", out, split="train", streaming=True, progress=False)
    assert counts == {"written": UTTERANCES, "already_there": 0, "skipped": []}
    model = load_upstream(str(upstream))
    rows = datasets.Dataset.from_list(list(open_stream(str(corpus), split="train")))
    reference = extract_features(model, rows, progress=False)
    for point in model.probe_points:
        for key, array in reference.as_dict(point).items():
            np.testing.assert_allclose(np.load(out / point / f"{key}.npy"), array, atol=1e-5)
    assert json.loads((out / "export.json").read_text())["probe_points"] == list(model.probe_points)

    # Resume: only what is missing is computed.
    (out / model.probe_points[-1] / "utt007.npy").unlink()
    again = export_features(str(upstream), f"hf:{corpus}", out, split="train", streaming=True, progress=False)
    assert again == {"written": 1, "already_there": UTTERANCES - 1, "skipped": []}

    # Two processes (as accelerate launch / torchrun set them): each utterance written by exactly one.
    shared = tmp_path / "two"
    written = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        written.append(export_features(str(upstream), f"hf:{corpus}", shared, split="train", streaming=True,
                                       probe_points=[model.probe_points[0]], progress=False))
    assert [w["already_there"] for w in written] == [0, 0] and sum(w["written"] for w in written) == UTTERANCES
    assert len(list((shared / model.probe_points[0]).glob("*.npy"))) == UTTERANCES


def test_feature_export_refuses_a_folder_another_export_wrote(corpus, upstream, tmp_path):
    from repr_asr.evaluation.feature_export import ExportFolderError, export_features

    out = tmp_path / "features"
    first = dict(split="train", streaming=True, max_utterances=2, progress=False)
    export_features(str(upstream), f"hf:{corpus}", out, **first)
    record = (out / "export.json").read_text()
    other = save_tiny_upstream(tmp_path / "other", seed=1)  # the same probe points, other weights
    with pytest.raises(ExportFolderError, match=rf"upstream '{upstream}' there .*, '{other}' here"):
        export_features(str(other), f"hf:{corpus}", out, **first)
    point = json.loads(record)["probe_points"][0]
    with pytest.raises(ExportFolderError, match=rf"probe_points \[.*\] there, \['{point}'\] here"):
        export_features(str(upstream), f"hf:{corpus}", out, **{**first, "probe_points": [point]})
    assert (out / "export.json").read_text() == record  # nothing relabelled
    assert export_features(str(upstream), f"hf:{corpus}", out, **first)["already_there"] == 2  # the same export resumes


def test_feature_export_skips_and_names_undecodable_audio(upstream, tmp_path):
    from repr_asr.evaluation.feature_export import export_features

    root = write_parquet_corpus(tmp_path / "bad", bad=(5,))
    counts = export_features(str(upstream), f"hf:{root}", tmp_path / "out", split="train", streaming=True, progress=False)
    assert counts["written"] == UTTERANCES - 1 and [s["id"] for s in counts["skipped"]] == ["utt005"]
    assert (tmp_path / "out" / "skipped-0.tsv").read_text().startswith("utt005\t")
