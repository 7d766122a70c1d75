"""Upstreams that are not repr_asr's own: transformers speech encoders (Wav2Vec2, HuBERT, WavLM,
data2vec-audio; *Model, *ForCTC and *ForPreTraining folders) and any torch module wrapped as an upstream.
Loading, probe points / dims / frame lengths against the actual outputs, padding never changing a feature,
one clear error for what cannot be an upstream, CTC over one (frozen end to end to results.json, final/
reloaded offline and in the ASR pipeline on a wav file; fine-tuned with --init_from: frozen conv stack, the
model's own masking and LayerDrop off), the learned layer mix over every layer (and, through the recipe, over
points of two widths; points at another frame rate left out), probes and ABX. Tiny random configs, built here."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from transformers import (
    AutoModelForCTC,
    AutoProcessor,
    BertConfig,
    Data2VecAudioConfig,
    Data2VecAudioModel,
    HubertConfig,
    HubertForCTC,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForPreTraining,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
    WhisperConfig,
    pipeline,
)

import repr_asr  # noqa: F401  (Auto classes)
from tone_corpus import SR, build_tone_corpus, save_labeled_tone_corpus
from repr_asr.evaluation.feature_export import export_features
from repr_asr.evaluation.features import extract_features, load_split
from repr_asr.models import UpstreamError, UpstreamFolderError, load_feature_extractor, load_upstream
from repr_asr.models.foreign import HFEncoderUpstream, WrappedUpstream
from repr_asr.models.upstream_ctc import UpstreamForCTC

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIG = os.path.join(ROOT, "configs", "ctc", "frozen_tiny.yaml")

# Few channels, but the released models' frame step: strides 5 × 8 × 8 = 320 samples (50 frames per second).
TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, conv_dim=(8, 8, 8),
            conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8), num_conv_pos_embedding_groups=2)
POS16 = dict(num_conv_pos_embeddings=16)
# name: (config class, class saved, extra config, model_type)
VARIANTS = {
    "wav2vec2-group": (Wav2Vec2Config, Wav2Vec2Model, dict(feat_extract_norm="group", **POS16)),
    "wav2vec2-layer": (Wav2Vec2Config, Wav2Vec2Model, dict(feat_extract_norm="layer", do_stable_layer_norm=True, **POS16)),
    "wav2vec2-pretraining": (Wav2Vec2Config, Wav2Vec2ForPreTraining, dict(
        feat_extract_norm="layer", codevector_dim=8, proj_codevector_dim=8, num_codevectors_per_group=4, **POS16)),
    "hubert-group-ctc": (HubertConfig, HubertForCTC, dict(feat_extract_norm="group", vocab_size=8, **POS16)),
    "hubert-layer": (HubertConfig, HubertModel, dict(feat_extract_norm="layer", do_stable_layer_norm=True, **POS16)),
    "wavlm-group": (WavLMConfig, WavLMModel, dict(feat_extract_norm="group", num_buckets=16, max_bucket_distance=40, **POS16)),
    "wavlm-layer": (WavLMConfig, WavLMModel, dict(feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16,
                                                  max_bucket_distance=40, **POS16)),
    "data2vec-audio": (Data2VecAudioConfig, Data2VecAudioModel, dict(num_conv_pos_embeddings=2, conv_pos_kernel_size=5)),
}


def save_encoder(folder, variant, seed=0, **overrides):
    """A random tiny encoder of ``variant`` saved with save_pretrained, with a Wav2Vec2FeatureExtractor
    beside it set as the released checkpoints of its kind are (the mask only for layer-norm conv stacks)."""
    config_cls, model_cls, extra = VARIANTS[variant]
    config = config_cls(**{**TINY, **extra, **overrides})
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(folder)
    layer_norm = isinstance(config, Data2VecAudioConfig) or config.feat_extract_norm == "layer"
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=layer_norm).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REPR_ASR_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def padded_batch(lengths, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for b, n in enumerate(lengths):
        x[b, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
        mask[b, :n] = 1
    return x, mask


# --- loading, probe points, frame lengths, padding ------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encoder_loads_with_its_probe_points_and_padding_never_changes_a_feature(variant, tmp_path):
    folder = save_encoder(tmp_path / variant, variant)
    upstream = load_upstream(folder)
    assert isinstance(upstream, HFEncoderUpstream)
    assert upstream.config.model_type == VARIANTS[variant][0].model_type and upstream.name_or_path == folder
    assert upstream.probe_points == ["layer_0", "layer_1", "layer_2"] and upstream.default_probe_point == "layer_2"
    assert upstream.probe_dims() == {p: 16 for p in upstream.probe_points}
    assert set(upstream.probe_samples_per_frame().values()) == {320} and upstream.frame_rate("layer_0") == 50.0
    extractor = load_feature_extractor(folder)  # the folder's own, with its settings
    assert isinstance(extractor, Wav2Vec2FeatureExtractor) and extractor.do_normalize is True
    assert extractor.return_attention_mask == ("group" not in variant)
    # The mask where padding then cannot reach a real frame; else (a group-norm conv stack, data2vec-audio's
    # stack of positional convolutions) each group of equal-length utterances runs without padding.
    assert upstream.takes_attention_mask == (variant in ("wav2vec2-layer", "wav2vec2-pretraining", "hubert-layer", "wavlm-layer"))

    lengths = [16000, 11111, 4321, 400]
    x, mask = padded_batch(lengths)
    with torch.no_grad():
        out = upstream(x, attention_mask=mask, output_hidden_states=True)
    # Frame lengths: the model's own conv arithmetic, and the frames each utterance gets alone.
    expected = upstream.module._get_feat_extract_output_lengths(torch.tensor(lengths))
    assert out.frame_lengths.tolist() == expected.tolist() == upstream.frame_lengths(torch.tensor(lengths)).tolist()
    assert len(out.hidden_states) == 3 and all(h.shape == (4, int(expected[0]), 16) for h in out.hidden_states)
    assert torch.equal(out.last_hidden_state, out.hidden_states[-1])
    for b, n in enumerate(lengths):
        with torch.no_grad():
            alone = upstream(x[b : b + 1, :n], output_hidden_states=True).hidden_states
        frames = int(out.frame_lengths[b])
        assert all(a.shape[1] == frames for a in alone)
        for point, batched, single in zip(upstream.probe_points, out.hidden_states, alone):
            torch.testing.assert_close(batched[b, :frames], single[0], atol=1e-4, rtol=1e-4, msg=f"{variant} {point} utt {b}")
    # The probe points are the model's own hidden states (layer_N: its output, final layer norm included).
    with torch.no_grad():
        own = upstream.module(x[:1], output_hidden_states=True)
        ours = upstream(x[:1], output_hidden_states=True).hidden_states
    for i in range(2):
        torch.testing.assert_close(ours[i], own.hidden_states[i])
    torch.testing.assert_close(ours[2], own.last_hidden_state)
    if not upstream.takes_attention_mask:
        # The check has teeth: the model itself, given the padded batch and the mask, lets padding in.
        with torch.no_grad():
            leaky = upstream.module(x, attention_mask=mask).last_hidden_state
        frames = int(out.frame_lengths[1])
        assert not torch.allclose(leaky[1, :frames], out.last_hidden_state[1, :frames], atol=1e-3)


def test_extraction_batched_equals_alone_with_the_saved_extractor(tmp_path):
    build_tone_corpus(tmp_path / "tones")
    dataset = load_split(f"librispeech:{tmp_path / 'tones'}", "dev")
    for variant in ("hubert-group-ctc", "data2vec-audio"):
        folder = save_encoder(tmp_path / variant, variant)
        upstream = load_upstream(folder)
        extractor = load_feature_extractor(folder)
        batched = extract_features(upstream, dataset, feature_extractor=extractor, max_batch_seconds=100.0)
        alone = extract_features(upstream, dataset, feature_extractor=extractor, max_batch_seconds=0.01)
        assert batched.frame_rates == {p: 50.0 for p in upstream.probe_points}
        for point in upstream.probe_points:
            for a, b, duration in zip(batched.features[point], alone.features[point], dataset["duration"]):
                assert a.shape == b.shape and abs(a.shape[0] - duration * 50) <= 1
                np.testing.assert_allclose(a, b, atol=1e-4)


def test_folder_without_extractor_gets_the_released_settings(tmp_path):
    for variant, mask in (("wav2vec2-group", False), ("wavlm-layer", True), ("data2vec-audio", True)):
        folder = save_encoder(tmp_path / variant, variant)
        os.remove(os.path.join(folder, "preprocessor_config.json"))
        extractor = load_feature_extractor(folder)
        assert isinstance(extractor, Wav2Vec2FeatureExtractor)
        assert extractor.do_normalize is True and extractor.return_attention_mask is mask and extractor.sampling_rate == SR


def test_what_is_not_an_upstream_gets_one_clear_error(tmp_path):
    # Config files only: a refusal that loaded weights first would fail on their absence instead.
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24).save_pretrained(tmp_path / "bert")
    WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1).save_pretrained(tmp_path / "whisper")
    for name, model_type in (("bert", "'bert'"), ("whisper", "'whisper'")):
        with pytest.raises(UpstreamError, match=model_type) as error:
            load_upstream(str(tmp_path / name))
        assert "not a speech upstream" in str(error.value)
        assert all(t in str(error.value) for t in ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "WrappedUpstream"))
    # A speech encoder's config without its weights.
    HubertConfig(**TINY).save_pretrained(tmp_path / "no_weights")
    with pytest.raises(UpstreamError, match="no weights"):
        load_upstream(str(tmp_path / "no_weights"))
    # An empty folder: not a save_pretrained folder (still the FileNotFoundError it always was).
    (tmp_path / "empty").mkdir()
    with pytest.raises(UpstreamFolderError, match="config.json") as error:
        load_upstream(str(tmp_path / "empty"))
    assert isinstance(error.value, FileNotFoundError)
    # A CTC recogniser is not an upstream either.
    model = UpstreamForCTC.from_upstream(load_upstream(save_encoder(tmp_path / "enc", "wav2vec2-group")), vocab_size=5)
    model.save_pretrained(tmp_path / "ctc")
    with pytest.raises(UpstreamError, match="CTC recogniser"):
        load_upstream(str(tmp_path / "ctc"))


# --- any module -----------------------------------------------------------------------------------


class ConvStack(torch.nn.Module):
    """Two conv layers (kernel 400 / stride 160, then kernel 3 / stride 2: 320 samples per frame); the
    first normalises over time (GroupNorm), so padding would change every frame."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, 6, 400, stride=160)
        self.norm = torch.nn.GroupNorm(6, 6)
        self.conv2 = torch.nn.Conv1d(6, 4, 3, stride=2)

    def forward(self, wave):
        first = torch.relu(self.norm(self.conv1(wave[:, None])))  # (B, 6, T1)
        second = self.conv2(first)  # (B, 4, T2)
        return [first[:, :, : second.shape[2]].transpose(1, 2), second.transpose(1, 2)]


def test_wrapped_module_is_an_upstream_for_probes_and_an_in_memory_ctc(tmp_path):
    torch.manual_seed(0)
    upstream = WrappedUpstream(ConvStack(), samples_per_frame=320, frame_lengths=[(400, 160), (3, 2)],
                               probe_points=["conv1", "conv2"])
    assert upstream.probe_dims() == {"conv1": 6, "conv2": 4}  # found by running it once
    assert upstream.default_probe_point == "conv2" and upstream.frame_rate() == 50.0
    lengths = [16000, 9000, 3000]
    x, mask = padded_batch(lengths)
    with torch.no_grad():
        out = upstream(x, attention_mask=mask, output_hidden_states=True)
    for b, n in enumerate(lengths):
        with torch.no_grad():
            alone = upstream(x[b : b + 1, :n], output_hidden_states=True)
        frames = int(out.frame_lengths[b])
        assert alone.last_hidden_state.shape[1] == frames
        for batched, single in zip(out.hidden_states, alone.hidden_states):
            torch.testing.assert_close(batched[b, :frames], single[0], atol=1e-5, rtol=1e-5)
    # CTC over it in memory: the learned mix reads both points, conv2 mapped to conv1's width (probe_point's).
    model = UpstreamForCTC.from_upstream(upstream, vocab_size=5, weighted_sum=True, probe_point="conv1").eval()
    assert model.upstream is upstream and model.weighted_probe_points == ["conv1", "conv2"]
    assert model.mix_dim == 6 and list(model.mix_projections) == ["conv2"]
    logits = model(x, attention_mask=mask).logits
    assert logits.shape == (3, int(out.frame_lengths[0]), 5)
    for b, n in enumerate(lengths):  # a module run without padding, mixed: still what each utterance gets alone
        frames = int(out.frame_lengths[b])
        torch.testing.assert_close(model(x[b : b + 1, :n]).logits[0], logits[b, :frames], atol=1e-5, rtol=1e-5)
    # ... which no folder can rebuild: one clear error at reload.
    model.save_pretrained(tmp_path / "ctc")
    with pytest.raises(UpstreamError, match="cannot be reloaded"):
        UpstreamForCTC.from_pretrained(tmp_path / "ctc")


class TwoRates(WrappedUpstream):
    """Points ``fine`` (320 samples per frame, 3-d) and ``coarse`` (640, 5-d): a mix cannot sum them frame by frame."""

    class Frames(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fine = torch.nn.Linear(320, 3)
            self.coarse = torch.nn.Linear(640, 5)

        def forward(self, wave):
            fine = wave[:, : wave.shape[1] // 320 * 320].unflatten(1, (-1, 320))
            coarse = wave[:, : wave.shape[1] // 640 * 640].unflatten(1, (-1, 640))
            return [self.fine(fine), self.coarse(coarse)]

    def __init__(self):
        super().__init__(self.Frames(), samples_per_frame=320, probe_points=["fine", "coarse"], dims=[3, 5])

    def probe_samples_per_frame(self) -> dict:
        return {"fine": 320, "coarse": 640}

    def frame_lengths_at(self, sample_lengths, probe_point):
        return torch.div(torch.as_tensor(sample_lengths).long(), self.probe_samples_per_frame()[self.check_probe_point(probe_point)],
                         rounding_mode="floor")


def test_layer_mix_leaves_out_points_at_another_frame_rate_and_says_so(caplog):
    torch.manual_seed(0)
    upstream = TwoRates()
    with caplog.at_level("WARNING"):
        model = UpstreamForCTC.from_upstream(upstream, vocab_size=5, weighted_sum=True, probe_point="fine")
    assert model.weighted_probe_points == ["fine"] and model.mix_left_out == ["coarse"]
    assert "left out" in caplog.text and "coarse (640 samples per frame)" in caplog.text
    record = model.layer_mix_record()
    assert record["layer_weights"] == {"fine": 1.0} and record["layer_mix"]["left_out"] == ["coarse"]
    assert record["layer_mix"]["frame_rate"] == 50.0
    x, mask = padded_batch([16000, 9000])
    assert model(x, attention_mask=mask).output_lengths.tolist() == [50, 28]
    # The chosen rate follows probe_point (the default point's unless configured).
    coarse = UpstreamForCTC.from_upstream(upstream, vocab_size=5, weighted_sum=True)
    assert coarse.probe_point == "coarse" and coarse.weighted_probe_points == ["coarse"] and coarse.mix_left_out == ["fine"]
    assert coarse(x, attention_mask=mask).output_lengths.tolist() == [25, 14]


# --- fine-tuning settings --------------------------------------------------------------------------


def test_fine_tuning_freezes_the_conv_stack_and_turns_the_models_own_masking_off(tmp_path):
    # Wav2Vec2Config's defaults are pretraining's: mask_time_prob 0.05, layerdrop 0.1.
    upstream = load_upstream(save_encoder(tmp_path / "w2v", "wav2vec2-layer"))
    assert upstream.config.mask_time_prob == 0.05 and upstream.config.layerdrop == 0.1
    model = UpstreamForCTC.from_upstream(upstream, vocab_size=5, freeze_upstream=False, weighted_sum=True)
    inner = model.upstream.module
    assert inner.config.mask_time_prob == 0.0 and inner.config.mask_feature_prob == 0.0 and inner.config.layerdrop == 0.0
    assert not any(p.requires_grad for p in inner.feature_extractor.parameters())
    assert all(p.requires_grad for p in inner.encoder.parameters())
    model.train()
    assert inner.encoder.training and not inner.feature_extractor.training
    conv_ids = {id(p) for p in inner.feature_extractor.parameters()}
    assert not any(id(p) in conv_ids for group in model.parameter_groups() for p in group["params"])
    # The folder stores the checkpoint's config (its modules: masked_spec_embed included) and reloads alike.
    assert model.config.upstream_config["mask_time_prob"] == 0.05
    model.save_pretrained(tmp_path / "ctc")
    again = UpstreamForCTC.from_pretrained(tmp_path / "ctc")
    assert again.upstream.module.config.layerdrop == 0.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))

    # Turned on by the CTC config: LayerDrop and SpecAugment run, every probe point is still defined.
    torch.manual_seed(0)
    noisy = UpstreamForCTC.from_upstream(upstream, vocab_size=5, freeze_upstream=False, weighted_sum=True,
                                         upstream_layerdrop=0.9, upstream_mask_time_prob=0.5).train()
    assert noisy.upstream.module.config.layerdrop == 0.9
    x, mask = padded_batch([16000, 12000])
    labels = torch.tensor([[1, 2, 3], [2, 3, -100]])
    for _ in range(3):
        out = noisy.upstream(x, attention_mask=mask, output_hidden_states=True)
        assert len(out.hidden_states) == 3 and all(h.shape == (2, 50, 16) for h in out.hidden_states)
        noisy(x, attention_mask=mask, labels=labels).loss.backward()
    # A checkpoint saved without masking has no masked_spec_embed to mask with: said, not crashed on.
    bare = load_upstream(save_encoder(tmp_path / "bare", "wav2vec2-layer", mask_time_prob=0.0))
    with pytest.raises(UpstreamError, match="masked_spec_embed"):
        UpstreamForCTC.from_upstream(bare, vocab_size=5, freeze_upstream=False, upstream_mask_time_prob=0.05)


# --- the CTC recipe, probes and ABX ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    build_tone_corpus(root)
    return root


@pytest.fixture(scope="module")
def labeled(tones, tmp_path_factory):
    """An hf: corpus of the tone utterances (text HELLO): train = each speaker's first utterance,
    validation = speakers 10x's second, test = speakers 20x's second."""
    return save_labeled_tone_corpus(tones, tmp_path_factory.mktemp("hf") / "tones")


def run_ctc(data, upstream, output_dir, steps, *extra, init_from=None):
    from repr_asr.downstream.ctc import load_ctc_config, run_finetune_ctc

    overrides = [
        "--data", data, "--data.subset", "10min", "--data.eval_splits", "dev,test",
        "--training.max_steps", str(steps), "--training.warmup_steps", "0", "--training.learning_rate", "0.01",
        "--training.lr_schedule", "constant", "--training.log_steps", "5", "--training.save_steps", "0",
        "--training.eval_steps", str(steps), "--training.batch_size", "2", "--training.early_stopping_patience", "0",
        "--model.head_hidden_size", "16", "--model.time_mask_width", "0", "--model.feature_mask_width", "0",
        "--model.dropout", "0.0", *extra,
    ]
    return run_finetune_ctc(load_ctc_config(CONFIG, overrides), upstream, str(output_dir), config_path=CONFIG,
                            init_from=init_from)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A HuBERT *ForCTC folder with a group-norm conv stack (no attention mask: run without padding)."""
    return save_encoder(tmp_path_factory.mktemp("encoder") / "hubert", "hubert-group-ctc")


@pytest.fixture(scope="module")
def frozen(labeled, encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("frozen")
    return out, run_ctc(labeled, encoder, out, 10, "--model.weighted_sum", "true")


def test_frozen_ctc_over_an_encoder_reloads_offline_and_runs_in_the_asr_pipeline(frozen, tones, tmp_path):
    out, results = frozen
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["upstream"] == results["upstream"] and on_disk["upstream_type"] == "hubert"
    assert on_disk["frozen"] is True and on_disk["probe_point"] == "weighted_sum"
    assert on_disk["feature_extractor"]["feature_extractor_type"] == "Wav2Vec2FeatureExtractor"
    assert set(on_disk["metrics"]) == {"dev", "test"} and on_disk["metrics"]["test"]["utterances"] == 2
    model = AutoModelForCTC.from_pretrained(out / "final", local_files_only=True)
    assert isinstance(model, UpstreamForCTC) and isinstance(model.upstream, HFEncoderUpstream)
    assert model.weighted_probe_points == ["layer_0", "layer_1", "layer_2"]
    # The learned mix over every layer (one width, nothing mapped or left out); results.json has final/'s weights.
    assert on_disk["layer_mix"] == {"points": ["layer_0", "layer_1", "layer_2"], "left_out": [], "dim": 16, "projected": [],
                                    "frame_rate": 50.0}
    assert on_disk["layer_weights"] == pytest.approx(model.layer_mix_weights(), abs=1e-7)
    assert list(on_disk["layer_weights"]) == model.weighted_probe_points and sum(on_disk["layer_weights"].values()) == pytest.approx(1.0)
    processor = AutoProcessor.from_pretrained(out / "final", local_files_only=True)
    assert isinstance(processor.feature_extractor, Wav2Vec2FeatureExtractor)
    assert processor.feature_extractor.return_attention_mask is False  # the encoder's own extractor
    # The pipeline on a wav file reads as the recipe decoded that utterance.
    utt = "201-1-0001"
    wave, rate = soundfile.read(str(tones / "dev-clean" / "201" / "1" / f"{utt}.flac"), dtype="float32")
    wav = tmp_path / f"{utt}.wav"
    soundfile.write(str(wav), wave, rate, subtype="FLOAT")
    hypothesis = next(h for h in json.loads((out / "hypotheses.json").read_text())["test"] if h["id"] == utt)
    if shutil.which("ffmpeg") is not None:  # transformers' pipeline decodes files with FFmpeg
        asr = pipeline("automatic-speech-recognition", model=str(out / "final"), device="cpu")
        assert asr(str(wav))["text"] == hypothesis["greedy"]
    # Without FFmpeg, the same through the processor and the reloaded model.
    inputs = processor(wave, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        ids = model.eval()(inputs["input_values"]).logits.argmax(-1)[0]
    assert processor.decode(ids) == hypothesis["greedy"]


def test_fine_tuned_ctc_over_an_encoder_starts_from_the_frozen_run(frozen, labeled, encoder, tmp_path):
    frozen_dir, _ = frozen
    results = run_ctc(labeled, encoder, tmp_path / "tuned", 3, "--model.weighted_sum", "true", "--model.freeze_upstream",
                      "false", init_from=frozen_dir / "final")
    assert results["frozen"] is False and results["init_from"] == str(frozen_dir / "final")
    start = UpstreamForCTC.from_pretrained(frozen_dir / "final").state_dict()
    tuned = UpstreamForCTC.from_pretrained(tmp_path / "tuned" / "final")
    assert tuned.upstream.module.config.mask_time_prob == 0.0 and tuned.upstream.module.config.layerdrop == 0.0
    end = tuned.state_dict()
    conv = [k for k in start if k.startswith("upstream.module.feature_extractor.")]
    layers = [k for k in start if k.startswith("upstream.module.encoder.layers.")]
    assert conv and all(torch.equal(start[k], end[k]) for k in conv)  # the conv feature encoder stays frozen
    assert any(not torch.equal(start[k], end[k]) for k in layers)  # the Transformer trained


def test_learned_mix_of_two_widths_through_the_recipe(labeled, tmp_path):
    """CPC's enc (8-d) and ctx (12-d) mixed in a frozen run on cached features: the weights learnt are in
    results.json, and final/ reloaded reads the audio as the run decoded it from the cache."""
    import datasets

    from repr_asr import CPCConfig, CPCModel, ReprFeatureExtractor

    torch.manual_seed(0)
    folder = tmp_path / "cpc"
    CPCModel(CPCConfig(conv_dim=8, context_hidden_size=12, prediction_steps=2, num_negatives=4)).save_pretrained(folder)
    ReprFeatureExtractor(do_normalize=True).save_pretrained(folder)
    out = tmp_path / "mix"
    results = run_ctc(labeled, str(folder), out, 10, "--model.weighted_sum", "true", "--model.head_type", "linear")
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["probe_point"] == "weighted_sum" and on_disk["layer_weights"] == results["layer_weights"]
    assert on_disk["layer_mix"]["points"] == ["enc", "ctx"] and on_disk["layer_mix"]["projected"] == ["enc"]
    weights = on_disk["layer_weights"]
    assert list(weights) == ["enc", "ctx"] and sum(weights.values()) == pytest.approx(1.0) and weights["enc"] != pytest.approx(0.5)
    assert len(list((out / "feature_cache" / "train-10min").glob("features-enc-*.safetensors"))) == 1  # every mixed point cached
    assert len(list((out / "feature_cache" / "train-10min").glob("features-ctx-*.safetensors"))) == 1
    model = AutoModelForCTC.from_pretrained(out / "final", local_files_only=True).eval()
    assert model.layer_mix_weights() == pytest.approx(weights, abs=1e-7)
    processor = AutoProcessor.from_pretrained(out / "final", local_files_only=True)
    rows = datasets.load_from_disk(labeled.removeprefix("hf:"))["test"]
    hypotheses = {h["id"]: h["greedy"] for h in json.loads((out / "hypotheses.json").read_text())["test"]}
    for row in rows:
        wave, _ = soundfile.read(row["audio"], dtype="float32")
        with torch.no_grad():
            ids = model(processor(wave, sampling_rate=SR, return_tensors="pt")["input_values"]).logits.argmax(-1)[0]
        assert processor.decode(ids) == hypotheses[row["id"]]


def test_probes_and_abx_over_an_encoder(tones, tmp_path):
    from repr_asr.evaluation.abx import evaluate_abx
    from repr_asr.evaluation.probes import ProbeConfig, evaluate_probes

    folder = save_encoder(tmp_path / "wavlm", "wavlm-layer")
    data = f"librispeech:{tones}"
    fast = ProbeConfig(epochs=2, patience=1, batch_size=32, learning_rate=1e-2)
    probes = evaluate_probes(folder, data, "dev", tasks=["phone", "speaker"], config=fast,
                             cache_dir=str(tmp_path / "features"))
    assert probes["probe_points"] == ["layer_0", "layer_1", "layer_2"]
    assert probes["feature_extractor"]["return_attention_mask"] is True
    for point in probes["probe_points"]:
        metrics = probes["metrics"][point]
        assert metrics["frame_rate"] == 50.0 and metrics["dim"] == 16
        assert 0 <= metrics["phone"]["accuracy"] <= 100
    abx = evaluate_abx(folder, data, "dev", probe_points=["layer_1"], cache_dir=str(tmp_path / "features"))
    assert abx["model_type"] == "wavlm" and abx["weights_sha256"] == probes["weights_sha256"]
    assert abx["metrics"]["layer_1"]["frame_step_seconds"] == pytest.approx(0.02)
    assert 0 <= abx["metrics"]["layer_1"]["within"] <= 100 and 0 <= abx["metrics"]["layer_1"]["across"] <= 100
    counts = export_features(folder, data, tmp_path / "export", split="dev", probe_points=["layer_0"])
    assert counts["written"] == probes["num_utterances"] == 8
    array = np.load(tmp_path / "export" / "layer_0" / "101-1-0000.npy")
    assert array.dtype == np.float32 and array.shape[1] == 16


def test_recipe_says_why_an_upstream_is_refused_in_one_line(tones, tmp_path):
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24).save_pretrained(tmp_path / "bert")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "recipes", "probe.py"), "--upstream", str(tmp_path / "bert"),
                          "--data", f"librispeech:{tones}", "--output_dir", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith("probe.py: error: upstream")
    assert "'bert' model" in run.stderr and not (tmp_path / "out" / "results.json").exists()
