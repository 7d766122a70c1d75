"""The CTC recipe end to end on a tiny built-in corpus: training lowers CER, it validates on dev and
keeps the best step as final/, results.json says what was run, a refused relaunch writes nothing, the
head trains on the features final/ and the ASR pipeline compute, undecodable audio is skipped and
named, and decoding splits across processes and runs on the model's device. final/ holds a processor
(AutoProcessor) and a model card whose model-index carries the decoded WER / CER; the ASR pipeline reads
audio files; a prebuilt LM file (ARPA) decodes with beam search, recorded in results.json; and
--push_to_hub uploads final/ (the hub's API replaced by a recorder: no network)."""

import importlib.util
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
from huggingface_hub import ModelCard
from transformers import AutoModelForCTC, AutoProcessor, Wav2Vec2CTCTokenizer, Wav2Vec2Processor, pipeline

import repr_asr  # noqa: F401
from repr_asr.audio import AudioError, load_audio
from repr_asr.data import load_corpus
from repr_asr.feature_extraction import ReprFeatureExtractor
from repr_asr import MaskedReconConfig, MaskedReconModel
from repr_asr.training import CheckpointError, ConfigError
from repr_asr.downstream.ctc import load_ctc_config, run_finetune_ctc
from recipe_modules import assert_results_header

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIG = os.path.join(ROOT, "configs", "ctc", "frozen_tiny.yaml")


@pytest.fixture(scope="module")
def corpus_dir(labeled_corpus_dir):
    return labeled_corpus_dir  # conftest's: the smallest corpus with a real train-10min


def run(corpus_dir, output_dir, steps, *extra, upstream="fbank", resume=False, init_from=None):
    overrides = [
        "--data", f"builtin:{corpus_dir}", "--data.subset", "10min", "--data.eval_splits", "train-10min,dev,test",
        "--training.max_steps", str(steps), "--training.warmup_steps", "0", "--training.learning_rate", "0.005",
        "--training.lr_schedule", "constant", "--training.log_steps", "10", "--training.save_steps", "0",
        "--training.eval_steps", "50",
        "--model.head_hidden_size", "64", "--model.time_mask_width", "0", "--model.feature_mask_width", "0",
        "--model.dropout", "0.0", *extra,
    ]
    return run_finetune_ctc(load_ctc_config(CONFIG, overrides), upstream, str(output_dir), resume=resume,
                            config_path=CONFIG, init_from=init_from)


def eval_records(output_dir):
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "eval_cer" in r]


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ctc_run")
    # 10 minutes of labels: a head leaves CTC's all-blank start after a few hundred steps.
    return out, run(corpus_dir, out, 600, "--training.learning_rate", "0.01", "--training.eval_steps", "100")


@pytest.mark.needs_synthesiser
def test_training_lowers_cer_below_an_untrained_model(corpus_dir, trained, tmp_path):
    untrained = run(corpus_dir, tmp_path / "untrained", 1)
    _, results = trained
    before, after = untrained["metrics"]["train-10min"]["cer"], results["metrics"]["train-10min"]["cer"]
    assert after < 0.85 * before, f"CER on the labeled subset: {before:.3f} untrained, {after:.3f} after training"


@pytest.mark.needs_synthesiser
def test_results_json_says_what_was_run(trained):
    out, results = trained
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert_results_header(on_disk, "ctc")  # the header every downstream result starts with
    assert on_disk["probe_points"] == ["features"] and on_disk["split"] is None and on_disk["seed"] == 0
    assert on_disk["upstream"] == "fbank" and on_disk["subset"] == "10min" and on_disk["frozen"] is True
    assert on_disk["steps"] == 600 and on_disk["tokenizer"] == "char" and on_disk["too_long"] == 0
    assert on_disk["config_name"] == "frozen_tiny" and on_disk["validation_split"] == "dev"
    assert on_disk["metric_for_best_model"] == "eval_cer" and on_disk["stopped_early"] is False
    assert on_disk["feature_extractor"]["do_normalize"] is False and on_disk["skipped"] == {}
    for split in ("train-10min", "dev", "test"):
        assert set(on_disk["metrics"][split]) >= {"wer", "cer", "utterances", "skipped"}
    hyps = json.loads((out / "hypotheses.json").read_text())
    assert len(hyps["test"]) == on_disk["metrics"]["test"]["utterances"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 60 + 6  # a training record every 10 steps, a dev evaluation every 100


@pytest.mark.needs_synthesiser
def test_validates_on_dev_and_records_the_best_step(corpus_dir, trained):
    out, results = trained
    records = eval_records(out)
    assert [r["step"] for r in records] == [100, 200, 300, 400, 500, 600]
    assert all(0 <= r["eval_cer"] and 0 <= r["eval_wer"] for r in records)
    best = min(records, key=lambda r: (r["eval_cer"], r["step"]))  # ties: the earlier step is kept
    assert results["best_step"] == best["step"] and results["best_dev_cer"] == pytest.approx(best["eval_cer"])
    # final/ decodes dev to the CER the validation measured at the kept step (jiwer, whole set)
    hyps = json.loads((out / "hypotheses.json").read_text())["dev"]
    assert results["metrics"]["dev"]["cer"] == pytest.approx(best["eval_cer"])
    assert jiwer.cer([h["reference"] for h in hyps], [h["greedy"] for h in hyps]) == pytest.approx(best["eval_cer"])


@pytest.mark.needs_synthesiser
def test_final_is_the_best_step_and_early_stopping(corpus_dir, tmp_path):
    # Patience 1: once the head has left its all-blank start (patience is not counted on it), the first
    # evaluation without a better dev CER stops the run, and final/ must hold the best step's weights.
    out = tmp_path / "early"
    results = run(corpus_dir, out, 300, "--training.learning_rate", "1e-2", "--training.eval_steps", "10",
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


@pytest.mark.needs_synthesiser
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


@pytest.mark.needs_synthesiser
def test_refused_relaunch_writes_nothing(corpus_dir, trained):
    out, _ = trained
    before = {"config.yaml": (out / "config.yaml").read_bytes(), **snapshot(out / "tokenizer")}
    assert len(before) > 1
    # Another tokenizer: a relaunch that got as far as writing would change both.
    with pytest.raises(CheckpointError, match="--resume"):
        run(corpus_dir, out, 5, "--data.tokenizer", "sentencepiece", "--data.vocab_size", "32")
    assert {"config.yaml": (out / "config.yaml").read_bytes(), **snapshot(out / "tokenizer")} == before


@pytest.mark.needs_synthesiser
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


@pytest.mark.needs_synthesiser
def test_fine_tuning_starts_where_the_frozen_run_ended(corpus_dir, tmp_path):
    """--init_from a frozen run's final/: the fine-tuned model starts with its upstream and head; at a zero
    learning rate (the first step of a warm-up) it decodes dev exactly as the frozen run did, and a head of another shape is refused."""
    from repr_asr.models.upstream_ctc import UpstreamForCTC

    upstream = tmp_path / "upstream"
    torch.manual_seed(0)
    MaskedReconModel(MaskedReconConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, n_mels=20)).save_pretrained(upstream)
    ReprFeatureExtractor().save_pretrained(upstream)
    frozen = run(corpus_dir, tmp_path / "frozen", 100, "--data.eval_splits", "dev", upstream=str(upstream))
    unfrozen = ["--model.freeze_upstream", "false", "--data.eval_splits", "dev", "--training.eval_steps", "1"]
    zero_lr = ["--training.warmup_steps", "10"]  # the one step runs at the warm-up's learning rate 0
    tuned = run(corpus_dir, tmp_path / "tuned", 1, *unfrozen, *zero_lr,
                upstream=str(upstream), init_from=tmp_path / "frozen" / "final")
    assert tuned["frozen"] is False and tuned["init_from"] == str(tmp_path / "frozen" / "final")
    assert tuned["metrics"]["dev"]["cer"] == pytest.approx(frozen["metrics"]["dev"]["cer"])
    start = UpstreamForCTC.from_pretrained(tmp_path / "frozen" / "final").state_dict()
    end = UpstreamForCTC.from_pretrained(tmp_path / "tuned" / "final").state_dict()
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    # The check has teeth: without --init_from the same run starts from a random head.
    run(corpus_dir, tmp_path / "plain", 1, *unfrozen, *zero_lr, upstream=str(upstream))
    plain = UpstreamForCTC.from_pretrained(tmp_path / "plain" / "final").state_dict()
    head = [k for k in start if not k.startswith("upstream.")]
    assert head and not all(torch.equal(start[k], plain[k]) for k in head)
    with pytest.raises(ConfigError, match="frozen/final.*does not match"):
        run(corpus_dir, tmp_path / "other", 1, *unfrozen, "--model.head_hidden_size", "32",
            upstream=str(upstream), init_from=tmp_path / "frozen" / "final")


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_a_fine_tuning_config_has_the_head_of_the_frozen_config_it_starts_from(size):
    """The study fine-tunes from the frozen run's final/ (--init_from), which refuses another head shape: the
    pair of configs must agree on every head option, and differ in what fine-tuning changes."""
    configs = os.path.join(ROOT, "configs", "ctc")
    frozen = load_ctc_config(os.path.join(configs, f"frozen_{size}.yaml"), {}).model
    tuned = load_ctc_config(os.path.join(configs, f"finetune_{size}.yaml"), {}).model
    head = [k for k in frozen if k.startswith("head_")]
    assert head and {k: frozen[k] for k in head} == {k: tuned.get(k) for k in head}
    assert frozen["freeze_upstream"] is True and tuned["freeze_upstream"] is False


@pytest.fixture(scope="module")
def damaged_corpus(corpus_dir, tmp_path_factory):
    """A copy of the corpus with one training and one dev utterance replaced by undecodable audio."""
    root = tmp_path_factory.mktemp("damaged") / "builtin"
    shutil.copytree(corpus_dir, root)
    corpus = load_corpus(f"builtin:{root}")
    bad = {}
    for split in ("train-10min", "dev"):
        row = corpus[split][1]
        # A readable header (the corpus loader reads durations) over samples no recogniser can use.
        samples = np.zeros(8000, np.float32)
        samples[100] = np.nan
        soundfile.write(row["audio"], samples, 16000, format="WAV", subtype="FLOAT")
        bad[split] = (row["id"], len(corpus[split]))
    return root, bad


@pytest.mark.needs_synthesiser
@pytest.mark.parametrize("cache_features", ["true", "false"])
def test_undecodable_audio_is_skipped_and_named(damaged_corpus, tmp_path, cache_features):
    root, bad = damaged_corpus
    steps = -(-bad["train-10min"][1] // 4) + 1  # more than an epoch at batch 4: the Trainer meets every utterance
    results = run(root, tmp_path / "run", steps, "--data.cache_features", cache_features, "--data.subset", "10min",
                  "--data.eval_splits", "dev", "--training.eval_steps", "10")
    for split, (utt_id, size) in bad.items():
        assert [s["id"] for s in results["skipped"][split]] == [utt_id], split
        assert utt_id in results["skipped"][split][0]["error"]  # the error names the utterance
    train_id, train_size = bad["train-10min"]
    dev_id, dev_size = bad["dev"]
    assert results["metrics"]["dev"]["utterances"] == dev_size - 1 and results["metrics"]["dev"]["skipped"] == 1
    hyps = json.loads((tmp_path / "run" / "hypotheses.json").read_text())["dev"]
    assert dev_id not in [h["id"] for h in hyps] and len(hyps) == dev_size - 1
    if cache_features == "true":
        assert results["train_utterances"] == train_size - 1
    else:  # skipped by the Trainer while training
        assert results["train_metrics"]["skipped_examples"] == 1
        assert (tmp_path / "run" / "skipped_examples.txt").read_text().startswith(train_id)


@pytest.mark.needs_synthesiser
def test_strict_stops_at_undecodable_audio(damaged_corpus, tmp_path):
    root, bad = damaged_corpus
    with pytest.raises(AudioError, match=bad["train-10min"][0]):
        run(root, tmp_path / "run", 2, "--data.subset", "10min", "--training.strict", "true")


# ---------------------------------------------------------------------------------------- decoding


def tiny_decoding_setup(n=7):
    """A random CTC model over filterbanks, a character tokenizer and a few in-memory utterances."""
    from datasets import Dataset

    from repr_asr.models import load_upstream
    from repr_asr.models.upstream_ctc import UpstreamForCTC
    from repr_asr.tokenization import build_char_tokenizer
    from repr_asr.downstream.ctc import AudioLabelCollator, AudioLabelDataset

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
    from repr_asr.downstream.ctc import transcribe

    from accelerate import Accelerator

    model, tokenizer, dataset, collate = tiny_decoding_setup()
    one = transcribe(model, tokenizer, dataset, collate, batch_size=1)
    three = transcribe(model, tokenizer, dataset, collate, batch_size=3)
    assert one["indices"] == three["indices"] == list(range(len(dataset)))
    assert one["greedy"] == three["greedy"] and any(one["greedy"])
    # As the Trainer's eval_fn calls it: with its Accelerator (autocast, device), over several batches.
    accelerated = transcribe(model, tokenizer, dataset, collate, batch_size=3, accelerator=Accelerator())
    assert accelerated["greedy"] == one["greedy"] and accelerated["skipped"] == []
    # Batches of similar length (lengths given, here shuffled so that the batches differ): same transcripts, same order.
    lengths = [float(v) for v in np.random.default_rng(1).permutation(len(dataset))]
    grouped = transcribe(model, tokenizer, dataset, collate, batch_size=3, lengths=lengths)
    assert grouped["indices"] == one["indices"] and grouped["greedy"] == one["greedy"]
    with pytest.raises(ValueError, match="lengths"):
        transcribe(model, tokenizer, dataset, collate, batch_size=3, lengths=lengths[:-1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_transcribe_on_cuda_matches_cpu():
    from repr_asr.downstream.ctc import transcribe

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
        from repr_asr.downstream.ctc import process_state, transcribe
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


@pytest.mark.needs_synthesiser
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


# ---------------------------------------------------------------------------------------- the Hugging Face side


def _greedy_of(out, split, utterance_id):
    hypotheses = json.loads((out / "hypotheses.json").read_text())[split]
    return next(h["greedy"] for h in hypotheses if h["id"] == utterance_id)


@pytest.mark.needs_synthesiser
@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="transformers' ASR pipeline decodes audio files with FFmpeg (scripts/install_system_deps.sh installs it)")
def test_pipeline_transcribes_an_audio_file(corpus_dir, trained):
    out, _ = trained
    row = load_corpus(f"builtin:{corpus_dir}")["test"][0]
    path = row["audio"]
    assert isinstance(path, str) and os.path.isfile(path)
    asr = pipeline("automatic-speech-recognition", model=str(out / "final"), device="cpu")
    # The file goes through FFmpeg inside the pipeline, and reads as the recipe's own decoding of it.
    assert asr(path)["text"] == _greedy_of(out, "test", row["id"])


@pytest.mark.needs_synthesiser
def test_final_holds_a_processor(corpus_dir, trained):
    out, _ = trained
    processor = AutoProcessor.from_pretrained(out / "final")
    assert isinstance(processor, Wav2Vec2Processor) and isinstance(processor.tokenizer, Wav2Vec2CTCTokenizer)
    assert isinstance(processor.feature_extractor, ReprFeatureExtractor)
    model = AutoModelForCTC.from_pretrained(out / "final").eval()
    row = load_corpus(f"builtin:{corpus_dir}")["test"][1]
    inputs = processor(load_audio(row["audio"]), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ids = model(**inputs).logits.argmax(-1)
    assert processor.batch_decode(ids) == [_greedy_of(out, "test", row["id"])]
    text = load_corpus(f"builtin:{corpus_dir}")["train-10min"][0]["text"]  # its characters are the vocabulary
    labels = processor(text=text).input_ids
    assert processor.decode(labels, group_tokens=False) == text


def _eval_results(card):
    return {(r.dataset_split, r.metric_name): r for r in card.data.eval_results}


@pytest.mark.needs_synthesiser
def test_model_card_carries_the_results_as_a_model_index(trained):
    out, results = trained
    card = ModelCard.load(out / "final" / "README.md")  # huggingface_hub's own parser, as the hub reads it
    assert card.data.pipeline_tag == "automatic-speech-recognition" and card.data.library_name == "transformers"
    found = _eval_results(card)
    # One entry per evaluation split and metric, in percent; the training subset decoded for diagnosis is left out.
    assert set(found) == {(split, f"{split} {name} (%)") for split in ("dev", "test") for name in ("WER", "CER")}
    for split in ("dev", "test"):
        for name, key in (("WER", "wer"), ("CER", "cer")):
            entry = found[(split, f"{split} {name} (%)")]
            assert entry.metric_type == key and entry.metric_value == pytest.approx(100 * results["metrics"][split][key], abs=0.01)
            assert entry.task_type == "automatic-speech-recognition" and entry.dataset_type == "repr-asr-builtin"
            assert entry.dataset_args == {"labeled_subset": "train-10min"} and "fbank" in entry.task_name
    assert card.data.model_name == "fbank-ctc-10min"
    # What the card said before the results stays, and the results come once, before "Use".
    text = card.text
    assert "for 600 steps" in text and "mixed precision `no`" in text and "`builtin:" in text
    assert text.count("## Evaluation") == 1 and text.index("## Evaluation") < text.index("## Use")
    assert "pipeline('automatic-speech-recognition'" in text


def test_lm_settings_that_cannot_work_are_refused_at_load():
    with pytest.raises(ConfigError, match="lm_path.*lm_text"):
        load_ctc_config(CONFIG, {("data", "lm_path"): "4-gram.arpa", ("data", "lm_text"): "text.txt"})
    with pytest.raises(ConfigError, match="data.lm_path.*character units"):
        load_ctc_config(CONFIG, {("data", "lm_path"): "4-gram.arpa", ("data", "tokenizer"): "sentencepiece",
                                 ("data", "vocab_size"): 32})
    with pytest.raises(ConfigError, match="data.lexicon.*needs data.lm_path"):
        load_ctc_config(CONFIG, {("data", "lexicon"): "lexicon.txt"})


@pytest.mark.needs_synthesiser
def test_a_missing_lm_file_stops_the_run_before_training(corpus_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="nowhere.arpa"):
        run(corpus_dir, out, 5, "--data.lm_path", str(tmp_path / "nowhere.arpa"))
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


def _load_recipe():
    spec = importlib.util.spec_from_file_location("finetune_ctc_recipe", os.path.join(ROOT, "recipes", "finetune_ctc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REPO = "someone/repr-asr-ctc-test"


@pytest.fixture(scope="module")
def lm_run(corpus_dir, tmp_path_factory):
    """The recipe's command line with a prebuilt ARPA LM (written here, by hand) and --push_to_hub, the
    hub's HTTP calls replaced by a recorder that also notes what the folder holds at upload time."""
    from test_decoding import write_arpa
    from test_push_to_hub import record_hub_calls

    tmp = tmp_path_factory.mktemp("lm_run")
    corpus = load_corpus(f"builtin:{corpus_dir}")
    sentences = [t for split in ("train-10min", "dev", "test") for t in corpus[split]["text"]]
    arpa = write_arpa(tmp / "words.arpa", sentences)
    out = tmp / "run"
    argv = ["--config", CONFIG, "--upstream", "fbank", "--subset", "10min", "--output_dir", str(out),
            "--data", f"builtin:{corpus_dir}", "--data.eval_splits", "train-10min,dev,test", "--max_steps", "600",
            "--training.warmup_steps", "0", "--training.learning_rate", "0.01", "--training.lr_schedule", "constant",
            "--training.eval_steps", "100", "--training.save_steps", "0", "--model.head_hidden_size", "64",
            "--model.time_mask_width", "0", "--model.feature_mask_width", "0", "--model.dropout", "0.0",
            "--lm_path", str(arpa), "--data.beam_size", "8", "--data.lm_weight", "1.5", "--data.word_score", "-0.5",
            "--push_to_hub", REPO]
    with pytest.MonkeyPatch.context() as patch:
        calls = record_hub_calls(patch)
        _load_recipe().main(argv)
    return out, arpa, json.loads((out / "results.json").read_text()), calls


@pytest.mark.needs_synthesiser
def test_prebuilt_lm_decodes_and_results_json_records_how(corpus_dir, lm_run):
    out, arpa, results, _ = lm_run
    decoding = results["decoding"]
    assert decoding["beam_search"] is True and decoding["lm_path"] == str(arpa) and decoding["lm_format"] == "arpa"
    assert (decoding["beam_size"], decoding["lm_weight"], decoding["word_score"]) == (8, 1.5, -0.5)
    assert decoding["lexicon_source"] == "arpa" and decoding["lm_text"] is None
    # Every word of the LM can be spelled with the labeled subset's characters or is left out of the lexicon.
    lexicon = (out / "lm" / "lexicon.txt").read_text().splitlines()
    assert decoding["lexicon_words"] == len(lexicon) > 0
    hypotheses = json.loads((out / "hypotheses.json").read_text())
    words = {line.split()[0] for line in lexicon}
    for split in ("train-10min", "dev", "test"):
        metrics = results["metrics"][split]
        refs = [h["reference"] for h in hypotheses[split]]
        assert metrics["wer_lm"] == pytest.approx(jiwer.wer(refs, [h["lm"] for h in hypotheses[split]]))
        assert metrics["cer_lm"] == pytest.approx(jiwer.cer(refs, [h["lm"] for h in hypotheses[split]]))
        # Lexicon decoding: every word it outputs is a lexicon word.
        assert all(w in words for h in hypotheses[split] for w in h["lm"].split())
    # On the subset it learnt (CER well below 1) the beam search does output words, not only empty strings.
    assert any(h["lm"] for h in hypotheses["train-10min"])
    card = ModelCard.load(out / "final" / "README.md")
    names = {r.metric_name for r in card.data.eval_results}
    assert {"test WER with n-gram LM (%)", "dev CER with n-gram LM (%)"} <= names
    assert "Beam search: `" + str(arpa) + "`" in card.text


@pytest.mark.needs_synthesiser
def test_push_to_hub_uploads_final_with_its_results(lm_run):
    out, _, results, calls = lm_run
    assert [c["call"] for c in calls] == ["create_repo", "upload_folder"]
    create, upload = calls
    assert create["repo_id"] == REPO and create["exist_ok"] is True and create["repo_type"] == "model"
    assert upload["repo_id"] == REPO and upload["folder_path"] == str(out / "final") and upload["repo_type"] == "model"
    assert "fbank" in upload["commit_message"] and "train-10min" in upload["commit_message"]
    # Uploaded after decoding: the folder holds the model, the processor and the card with its model-index.
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "processor_config.json", "vocab.json",
            "tokenizer_config.json", "README.md"} <= set(upload["files"])
    assert "model-index" in upload["card"] and upload["card"] == (out / "final" / "README.md").read_text()


@pytest.mark.needs_synthesiser
def test_phone_units_learn_the_alignments_and_report_per(corpus_dir, tmp_path):
    """--tokenizer phone: labels are the corpus's phones without silences, the kept step is the best dev PER,
    results.json, the card and the pipeline speak phones, and training lowers PER on the labeled subset."""
    from transformers import Wav2Vec2PhonemeCTCTokenizer

    from repr_asr.data.phones import phone_transcript

    untrained = run(corpus_dir, tmp_path / "untrained", 1, "--data.tokenizer", "phone")
    out = tmp_path / "phones"
    results = run(corpus_dir, out, 400, "--data.tokenizer", "phone", "--training.learning_rate", "0.01",
                  "--training.eval_steps", "100")
    assert results["tokenizer"] == "phone" and results["metric_for_best_model"] == "eval_per"
    for split in ("train-10min", "dev", "test"):
        assert set(results["metrics"][split]) == {"per", "utterances", "skipped"}
    before, after = untrained["metrics"]["train-10min"]["per"], results["metrics"]["train-10min"]["per"]
    assert after < 0.8 * before, f"PER on the labeled subset: {before:.3f} untrained, {after:.3f} after training"
    records = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval_per" in r]
    best = min(records, key=lambda r: r["eval_per"])
    assert results["best_step"] == best["step"] and results["best_dev_per"] == pytest.approx(best["eval_per"])
    assert results["metrics"]["dev"]["per"] == pytest.approx(best["eval_per"])

    corpus = load_corpus(f"builtin:{corpus_dir}")
    row = corpus["test"][0]
    hypothesis = next(h for h in json.loads((out / "hypotheses.json").read_text())["test"] if h["id"] == row["id"])
    assert hypothesis["reference"] == phone_transcript(row["phones"], row["id"]) and "SIL" not in hypothesis["reference"]
    processor = AutoProcessor.from_pretrained(out / "final")
    assert isinstance(processor.tokenizer, Wav2Vec2PhonemeCTCTokenizer)
    asr = pipeline("automatic-speech-recognition", model=str(out / "final"), device="cpu")
    assert asr(load_audio(row["audio"]))["text"] == hypothesis["greedy"]
    card = ModelCard.load(out / "final" / "README.md")
    assert {r.metric_type for r in card.data.eval_results} == {"per"} and "PER (%)" in card.text


def test_phone_units_refuse_a_word_lm():
    with pytest.raises(ConfigError, match="phone units"):
        load_ctc_config(CONFIG, ["--data.tokenizer", "phone", "--data.lm_text", "lm.txt"])
    with pytest.raises(ConfigError, match="eval_per"):
        load_ctc_config(CONFIG, ["--data.tokenizer", "char", "--training.metric_for_best_model", "eval_per"])
