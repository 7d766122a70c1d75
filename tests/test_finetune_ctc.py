"""The CTC recipe end to end on a tiny built-in corpus: training lowers CER, it validates on dev and
keeps the best step as final/, results.json says what was run, a refused relaunch writes nothing, the
head trains on the features final/ and the ASR pipeline compute, undecodable audio is skipped and
named, and decoding splits across processes and runs on the model's device."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jiwer
import numpy as np
import pytest
import soundfile
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCTC, pipeline

import repr_asr  # noqa: F401
from repr_asr.audio import AudioError, load_audio
from repr_asr.data import load_corpus
from repr_asr.data.builtin import build_corpus
from repr_asr.feature_extraction import ReprFeatureExtractor
from repr_asr import MaskedReconConfig, MaskedReconModel
from repr_asr.training import CheckpointError
from repr_asr.training.finetune_ctc import load_ctc_config, run_finetune_ctc

needs_festival = pytest.mark.skipif(shutil.which("festival") is None, reason="needs Festival (scripts/install_system_deps.sh)")

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIG = os.path.join(ROOT, "configs", "ctc", "frozen_tiny.yaml")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    if shutil.which("festival") is None:
        pytest.skip("needs Festival (scripts/install_system_deps.sh)")
    root = tmp_path_factory.mktemp("ctc_corpus") / "builtin"
    build_corpus(root, hours=0.03, seed=5, num_workers=2, progress=False)
    return root


def run(corpus_dir, output_dir, steps, *extra, upstream="fbank", resume=False):
    overrides = [
        "--data", f"builtin:{corpus_dir}", "--data.subset", "10min", "--data.eval_splits", "train-10min,dev,test",
        "--training.max_steps", str(steps), "--training.warmup_steps", "0", "--training.learning_rate", "0.005",
        "--training.lr_schedule", "constant", "--training.log_steps", "10", "--training.save_steps", "0",
        "--training.eval_steps", "50",
        "--model.head_hidden_size", "64", "--model.time_mask_width", "0", "--model.feature_mask_width", "0",
        "--model.dropout", "0.0", *extra,
    ]
    return run_finetune_ctc(load_ctc_config(CONFIG, overrides), upstream, str(output_dir), resume=resume,
                            config_path=CONFIG)


def eval_records(output_dir):
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "eval_cer" in r]


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ctc_run")
    return out, run(corpus_dir, out, 150)


@needs_festival
def test_training_lowers_cer_below_an_untrained_model(corpus_dir, trained, tmp_path):
    untrained = run(corpus_dir, tmp_path / "untrained", 1)
    _, results = trained
    before, after = untrained["metrics"]["train-10min"]["cer"], results["metrics"]["train-10min"]["cer"]
    assert after < 0.5 * before, f"CER on the labeled subset: {before:.3f} untrained, {after:.3f} after training"


@needs_festival
def test_results_json_says_what_was_run(trained):
    out, results = trained
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["upstream"] == "fbank" and on_disk["subset"] == "10min" and on_disk["frozen"] is True
    assert on_disk["steps"] == 150 and on_disk["tokenizer"] == "char" and on_disk["too_long"] == 0
    assert on_disk["config_name"] == "frozen_tiny" and on_disk["validation_split"] == "dev"
    assert on_disk["metric_for_best_model"] == "eval_cer" and on_disk["stopped_early"] is False
    assert on_disk["feature_extractor"]["do_normalize"] is False and on_disk["skipped"] == {}
    for split in ("train-10min", "dev", "test"):
        assert set(on_disk["metrics"][split]) >= {"wer", "cer", "utterances", "skipped"}
    hyps = json.loads((out / "hypotheses.json").read_text())
    assert len(hyps["test"]) == on_disk["metrics"]["test"]["utterances"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 15 + 3  # a training record every 10 steps, a dev evaluation every 50


@needs_festival
def test_validates_on_dev_and_records_the_best_step(corpus_dir, trained):
    out, results = trained
    records = eval_records(out)
    assert [r["step"] for r in records] == [50, 100, 150]
    assert all(0 <= r["eval_cer"] and 0 <= r["eval_wer"] for r in records)
    best = min(records, key=lambda r: (r["eval_cer"], r["step"]))  # ties: the earlier step is kept
    assert results["best_step"] == best["step"] and results["best_dev_cer"] == pytest.approx(best["eval_cer"])
    # final/ decodes dev to the CER the validation measured at the kept step (jiwer, whole set)
    hyps = json.loads((out / "hypotheses.json").read_text())["dev"]
    assert results["metrics"]["dev"]["cer"] == pytest.approx(best["eval_cer"])
    assert jiwer.cer([h["reference"] for h in hyps], [h["greedy"] for h in hyps]) == pytest.approx(best["eval_cer"])


@needs_festival
def test_final_is_the_best_step_and_early_stopping(corpus_dir, tmp_path):
    # A learning rate so small that dev CER cannot keep improving: the run stops at the first evaluation
    # without improvement, and final/ must hold the best step's weights, not the last step's.
    out = tmp_path / "early"
    results = run(corpus_dir, out, 300, "--training.learning_rate", "1e-5", "--training.eval_steps", "10",
                  "--training.save_steps", "10", "--training.save_total_limit", "0",
                  "--training.early_stopping_patience", "1")
    last = results["steps_run"]
    assert results["stopped_early"] is True and last < 300
    best = results["best_step"]
    assert best < last
    records = eval_records(out)
    assert results["best_dev_cer"] == pytest.approx(min(r["eval_cer"] for r in records))
    assert records[-1]["step"] == last and records[-1]["eval_cer"] >= results["best_dev_cer"]
    final = load_file(str(out / "final" / "model.safetensors"))

    def same_weights(step):
        checkpoint = load_file(str(out / "checkpoints" / f"checkpoint-{step}" / "model.safetensors"))
        assert set(checkpoint) == set(final)
        return all(np.array_equal(final[k], checkpoint[k]) for k in final)

    assert same_weights(best) and not same_weights(last)
    assert results["metrics"]["dev"]["cer"] == pytest.approx(results["best_dev_cer"])


@needs_festival
def test_final_folder_loads_and_transcribes(corpus_dir, trained):
    out, results = trained
    model = AutoModelForCTC.from_pretrained(out / "final").eval()
    row = load_corpus(f"builtin:{corpus_dir}")["train-10min"][0]
    audio = load_audio(row["audio"])
    asr = pipeline("automatic-speech-recognition", model=str(out / "final"), device="cpu")
    text = asr(audio)["text"]
    with torch.no_grad():
        logits = model(torch.from_numpy(audio)[None]).logits
    assert isinstance(text, str)
    hypothesis = json.loads((out / "hypotheses.json").read_text())["train-10min"]
    assert text == next(h["greedy"] for h in hypothesis if h["id"] == row["id"])
    assert logits.shape[-1] == results["vocab_size"]


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_festival
def test_refused_relaunch_writes_nothing(corpus_dir, trained):
    out, _ = trained
    before = {"config.yaml": (out / "config.yaml").read_bytes(), **snapshot(out / "tokenizer")}
    assert len(before) > 1
    # Another tokenizer: a relaunch that got as far as writing would change both.
    with pytest.raises(CheckpointError, match="--resume"):
        run(corpus_dir, out, 5, "--data.tokenizer", "sentencepiece", "--data.vocab_size", "32")
    assert {"config.yaml": (out / "config.yaml").read_bytes(), **snapshot(out / "tokenizer")} == before


@needs_festival
def test_head_trains_on_the_features_final_and_the_pipeline_compute(corpus_dir, tmp_path):
    # An upstream pretrained with waveform normalisation: its saved extractor has do_normalize=True.
    upstream = tmp_path / "upstream"
    torch.manual_seed(0)
    MaskedReconModel(MaskedReconConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, n_mels=20)).save_pretrained(upstream)
    ReprFeatureExtractor(do_normalize=True).save_pretrained(upstream)
    out = tmp_path / "ctc"
    results = run(corpus_dir, out, 2, "--data.eval_splits", "dev", upstream=str(upstream))
    assert results["feature_extractor"]["do_normalize"] is True
    asr = pipeline("automatic-speech-recognition", model=str(out / "final"), device="cpu")
    assert asr.feature_extractor.do_normalize is True
    row = load_corpus(f"builtin:{corpus_dir}")["train-10min"][0]
    audio = load_audio(row["audio"])

    def pipeline_features(extractor):
        inputs = extractor(audio, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            hidden = asr.model.upstream(**inputs, output_hidden_states=True).hidden_states
        return dict(zip(asr.model.upstream.probe_points, hidden))[asr.model.probe_point][0].numpy()

    deployed = pipeline_features(asr.feature_extractor)
    # What the head trained on: the cached features of the training split.
    (cache,) = (out / "feature_cache" / "train-10min").glob(f"features-{asr.model.probe_point}*.safetensors")
    trained_on = load_file(str(cache))[row["id"]]
    np.testing.assert_allclose(trained_on, deployed, atol=1e-5)
    # The check has teeth: without normalisation the features differ.
    assert not np.allclose(pipeline_features(ReprFeatureExtractor()), deployed, atol=1e-3)


@pytest.fixture(scope="module")
def damaged_corpus(corpus_dir, tmp_path_factory):
    """A copy of the corpus with one training and one dev utterance replaced by undecodable audio."""
    root = tmp_path_factory.mktemp("damaged") / "builtin"
    shutil.copytree(corpus_dir, root)
    corpus = load_corpus(f"builtin:{root}")
    bad = {}
    for split in ("train-1h", "dev"):  # train-10min holds a single utterance
        row = corpus[split][1]
        # A readable header (the corpus loader reads durations) over samples no recogniser can use.
        samples = np.zeros(8000, np.float32)
        samples[100] = np.nan
        soundfile.write(row["audio"], samples, 16000, format="WAV", subtype="FLOAT")
        bad[split] = (row["id"], len(corpus[split]))
    return root, bad


@needs_festival
@pytest.mark.parametrize("cache_features", ["true", "false"])
def test_undecodable_audio_is_skipped_and_named(damaged_corpus, tmp_path, cache_features):
    root, bad = damaged_corpus
    results = run(root, tmp_path / "run", 4, "--data.cache_features", cache_features, "--data.subset", "1h",
                  "--data.eval_splits", "dev", "--training.eval_steps", "2")
    for split, (utt_id, size) in bad.items():
        assert [s["id"] for s in results["skipped"][split]] == [utt_id], split
        assert utt_id in results["skipped"][split][0]["error"]  # the error names the utterance
    train_id, train_size = bad["train-1h"]
    dev_id, dev_size = bad["dev"]
    assert results["metrics"]["dev"]["utterances"] == dev_size - 1 and results["metrics"]["dev"]["skipped"] == 1
    hyps = json.loads((tmp_path / "run" / "hypotheses.json").read_text())["dev"]
    assert dev_id not in [h["id"] for h in hyps] and len(hyps) == dev_size - 1
    if cache_features == "true":
        assert results["train_utterances"] == train_size - 1
    else:  # skipped by the Trainer while training
        assert results["train_metrics"]["skipped_examples"] == 1
        assert (tmp_path / "run" / "skipped_examples.txt").read_text().startswith(train_id)


@needs_festival
def test_strict_stops_at_undecodable_audio(damaged_corpus, tmp_path):
    root, bad = damaged_corpus
    with pytest.raises(AudioError, match=bad["train-1h"][0]):
        run(root, tmp_path / "run", 2, "--data.subset", "1h", "--training.strict", "true")


# ---------------------------------------------------------------------------------------- decoding


def tiny_decoding_setup(n=7):
    """A random CTC model over filterbanks, a character tokenizer and a few in-memory utterances."""
    from datasets import Dataset

    from repr_asr.models import load_upstream
    from repr_asr.models.upstream_ctc import UpstreamForCTC
    from repr_asr.tokenization import build_char_tokenizer
    from repr_asr.training.finetune_ctc import AudioLabelCollator, AudioLabelDataset

    import tempfile

    tokenizer = build_char_tokenizer(["ABC DEF GHI"], tempfile.mkdtemp())
    torch.manual_seed(0)
    model = UpstreamForCTC.from_upstream(load_upstream("fbank"), vocab_size=len(tokenizer), pad_token_id=0,
                                         head_type="bilstm", head_hidden_size=8).eval()
    with torch.no_grad():
        model.head.output.weight.mul_(50)  # wide logit margins: argmax does not hinge on rounding
    rng = np.random.default_rng(0)
    rows = {"id": [f"u{i}" for i in range(n)],
            "audio": [{"array": rng.standard_normal(1600 + 900 * i).astype(np.float32) * 0.1, "sampling_rate": 16000}
                      for i in range(n)]}
    dataset = AudioLabelDataset(Dataset.from_dict(rows), None, 16000)
    return model, tokenizer, dataset, AudioLabelCollator(ReprFeatureExtractor())


def test_transcribe_keeps_dataset_order_and_batching_does_not_matter():
    from repr_asr.training.finetune_ctc import transcribe

    from accelerate import Accelerator

    model, tokenizer, dataset, collate = tiny_decoding_setup()
    one = transcribe(model, tokenizer, dataset, collate, batch_size=1)
    three = transcribe(model, tokenizer, dataset, collate, batch_size=3)
    assert one["indices"] == three["indices"] == list(range(len(dataset)))
    assert one["greedy"] == three["greedy"] and any(one["greedy"])
    # As the Trainer's eval_fn calls it: with its Accelerator (autocast, device), over several batches.
    accelerated = transcribe(model, tokenizer, dataset, collate, batch_size=3, accelerator=Accelerator())
    assert accelerated["greedy"] == one["greedy"] and accelerated["skipped"] == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_transcribe_on_cuda_matches_cpu():
    from repr_asr.training.finetune_ctc import transcribe

    model, tokenizer, dataset, collate = tiny_decoding_setup()
    on_cpu = transcribe(model, tokenizer, dataset, collate, batch_size=3)
    on_gpu = transcribe(model.to("cuda"), tokenizer, dataset, collate, batch_size=3)
    assert next(model.parameters()).device.type == "cuda"
    assert on_gpu["greedy"] == on_cpu["greedy"] and any(on_cpu["greedy"])


def test_transcribe_splits_work_across_processes_and_gathers_in_order(tmp_path):
    script = tmp_path / "decode.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import torch
        from test_finetune_ctc import tiny_decoding_setup
        from repr_asr.training.finetune_ctc import process_state, transcribe
        torch.set_num_threads(1)
        state = process_state()
        model, tokenizer, dataset, collate = tiny_decoding_setup()
        alone = transcribe(model, tokenizer, dataset, collate, batch_size=2)  # this process, everything
        batches = []  # the batch sizes this process's model decodes
        model.register_forward_hook(lambda module, args, output: batches.append(output.logits.shape[0]))
        split = transcribe(model, tokenizer, dataset, collate, batch_size=2, accelerator=state)
        with open(sys.argv[1] + f"/rank{{state.process_index}}.json", "w") as handle:
            json.dump({{"world": state.num_processes, "alone": alone, "split": split, "batches": batches}}, handle)
        state.destroy_process_group()  # gloo's threads abort the interpreter's exit otherwise
    """))
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    # torchrun picks a free port itself with the c10d rendezvous on localhost.
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
                           "--rdzv_endpoint", "localhost:0", str(script), str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    # 7 items in batches of 2: rank 0 decodes batches 0 and 2, rank 1 batches 1 and 3 (the last one short)
    assert [r["batches"] for r in ranks] == [[2, 2], [2, 1]]
    for r in ranks:  # every process gets every transcript, in dataset order
        assert r["split"]["indices"] == list(range(7))
        assert r["split"]["greedy"] == r["alone"]["greedy"]


@needs_festival
def test_recipe_command_line(corpus_dir, tmp_path):
    cmd = [sys.executable, "recipes/finetune_ctc.py", "--config", CONFIG, "--upstream", "mfcc", "--subset", "10min",
           "--data", f"builtin:{corpus_dir}", "--output_dir", str(tmp_path / "cli"), "--max_steps", "3",
           "--training.warmup_steps", "0", "--tokenizer", "sentencepiece", "--vocab_size", "32"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert results["tokenizer"] == "sentencepiece" and results["vocab_size"] == 32 and results["upstream"] == "mfcc"
    assert results["config_name"] == "frozen_tiny"


def test_two_process_recipe_keeps_the_best_step_and_decodes_split(corpus_dir, tmp_path):
    # The whole recipe on two CPU processes: dev validation, best-step final/, decoding split across ranks.
    out = tmp_path / "two"
    args = ["--config", CONFIG, "--upstream", "fbank", "--subset", "10min", "--output_dir", str(out),
            "--data", f"builtin:{corpus_dir}", "--data.eval_splits", "dev,test", "--training.max_steps", "40",
            "--training.warmup_steps", "0", "--training.learning_rate", "0.005", "--training.eval_steps", "20",
            "--training.save_steps", "0", "--training.batch_size", "2", "--model.head_hidden_size", "32"]
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    launcher = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--multi_gpu", "--num_processes",
                "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    proc = subprocess.run([*launcher, os.path.join(ROOT, "recipes", "finetune_ctc.py"), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2 and results["best_step"] in (20, 40)
    assert results["metrics"]["test"]["utterances"] == len(load_corpus(f"builtin:{corpus_dir}")["test"])
    hypotheses = json.loads((out / "hypotheses.json").read_text())
    assert [h["id"] for h in hypotheses["test"]] == [str(i) for i in load_corpus(f"builtin:{corpus_dir}")["test"]["id"]]
