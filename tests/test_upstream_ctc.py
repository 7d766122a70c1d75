"""UpstreamForCTC: shapes and lengths, padding independence, CTC loss parity with torch, too-long labels
counted, frozen vs fine-tuned upstream, the learned layer mix (weighted sum: points of other widths mapped,
padding-free, from audio or cached features alike, saved and reloaded), SpecAugment, save/load, the processor
(AutoProcessor) and the HF ASR pipeline on arrays and on audio files."""

import shutil

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from transformers import AutoModelForCTC, AutoProcessor, Wav2Vec2Processor, pipeline

import repr_asr
from repr_asr import CPCConfig, CPCModel, MaskedReconConfig, MaskedReconModel
from repr_asr.evaluation.decoding import greedy_decode
from repr_asr.models import load_upstream
from repr_asr.models.upstream_ctc import UpstreamForCTC, UpstreamForCTCConfig, ctc_min_frames
from repr_asr.tokenization import SentencePieceCTCTokenizer, build_char_tokenizer, train_sentencepiece

V = 12


def tiny_learnable_upstream() -> MaskedReconModel:
    torch.manual_seed(0)
    return MaskedReconModel(MaskedReconConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                              intermediate_size=32, n_mels=20))


def tiny_cpc(conv_dim=8, context_hidden_size=12) -> CPCModel:
    """Probe points of two widths at one rate: ``enc`` (conv_dim) and ``ctx`` (context_hidden_size, the default)."""
    torch.manual_seed(0)
    return CPCModel(CPCConfig(conv_dim=conv_dim, context_hidden_size=context_hidden_size, prediction_steps=2, num_negatives=4))


def batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.zeros(len(lengths), max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000.0
        values[i, :n] = torch.sin(2 * np.pi * (200 + 300 * i) * t) + 0.1 * torch.randn(n, generator=g)
        mask[i, :n] = 1
    return values, mask


def labels_batch(rows):
    out = torch.full((len(rows), max(len(r) for r in rows)), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


@pytest.mark.parametrize("head", [
    dict(head_type="linear"),
    dict(head_type="bilstm", head_hidden_size=8, head_num_layers=2),
    dict(head_type="bilstm", head_hidden_size=8, reduction_stride=4, reduction_kernel=8),
])
def test_shapes_lengths_and_padding_never_leaks(head):
    torch.manual_seed(0)
    model = UpstreamForCTC.from_upstream(load_upstream("fbank"), vocab_size=V, pad_token_id=0, **head).eval()
    stride = head.get("reduction_stride", 1)
    assert model.config.inputs_to_logits_ratio == 160 * stride
    lengths = [16000, 5000, 0]
    values, mask = batch(lengths)
    out = model(values, attention_mask=mask)
    frames = 1 + torch.tensor(lengths) // 160  # centred STFT frames
    expected = -(-frames // stride)  # ceil(frames / stride)
    assert out.output_lengths.tolist() == expected.tolist()
    assert model.output_lengths(torch.tensor(lengths)).tolist() == expected.tolist()
    assert out.logits.shape == (3, -(-101 // stride), V)
    # each utterance alone gives the same logits on its real frames as inside the padded batch
    for i, n in enumerate(lengths[:2]):
        alone = model(values[i : i + 1, :n]).logits
        k = int(out.output_lengths[i])
        assert alone.shape[1] == k
        torch.testing.assert_close(alone[0], out.logits[i, :k], atol=1e-5, rtol=1e-4)


def test_ctc_loss_matches_torch_per_utterance():
    torch.manual_seed(0)
    model = UpstreamForCTC.from_upstream(load_upstream("mfcc"), vocab_size=V, pad_token_id=0,
                                         head_type="bilstm", head_hidden_size=8).eval()
    values, mask = batch([8000, 4800])
    rows = [[3, 4, 4, 5, 1], [7, 2]]
    out = model(values, attention_mask=mask, labels=labels_batch(rows))
    log_probs = out.logits.double().log_softmax(-1)
    per_utt = []
    for i, row in enumerate(rows):
        n = int(out.output_lengths[i])
        loss = F.ctc_loss(log_probs[i, :n], torch.tensor(row), torch.tensor(n), torch.tensor(len(row)),
                          blank=0, reduction="sum")
        per_utt.append(loss / len(row))  # torch's "mean": divide by label length, then average
    torch.testing.assert_close(out.loss.double(), torch.stack(per_utt).mean(), atol=1e-5, rtol=1e-5)
    assert out.metrics["too_long"].item() == 0


def test_labels_longer_than_frames_are_counted_not_dropped():
    torch.manual_seed(0)
    model = UpstreamForCTC.from_upstream(load_upstream("fbank"), vocab_size=V, pad_token_id=0,
                                         reduction_stride=4, reduction_kernel=4).eval()
    values, mask = batch([16000, 1600])  # 101 → 26 output frames; 11 → 3 output frames
    assert ctc_min_frames(labels_batch([[3, 3, 4], [5, 6]])).tolist() == [4, 2]
    out = model(values, attention_mask=mask, labels=labels_batch([[3, 4, 5], [3, 4, 4, 5]]))
    assert out.output_lengths.tolist() == [26, 3]
    assert out.metrics["too_long"].item() == 1  # needs 5 frames (a blank between the two 4s), has 3
    assert torch.isfinite(out.loss)


def _step(model, values, mask, labels, step):
    model.train()
    model.on_train_step(step)
    groups = model.parameter_groups()
    optimizer = torch.optim.SGD([{"params": g["params"], "lr": 0.5 * g["lr_scale"]} for g in groups])
    optimizer.zero_grad()
    model(values, attention_mask=mask, labels=labels).loss.backward()
    optimizer.step()


def test_frozen_upstream_stays_fixed_and_in_eval_mode_while_head_learns():
    model = UpstreamForCTC.from_upstream(tiny_learnable_upstream(), vocab_size=V, pad_token_id=0,
                                         head_type="bilstm", head_hidden_size=8)
    assert model.config.freeze_upstream
    model.train()
    assert model.training and not model.upstream.training and model.head.training
    assert len(model.parameter_groups()) == 1  # only the head is trainable
    up_before = {k: v.clone() for k, v in model.upstream.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    values, mask = batch([8000, 6000])
    _step(model, values, mask, labels_batch([[3, 4], [5]]), step=0)
    assert not model.upstream.training
    assert all(torch.equal(up_before[k], v) for k, v in model.upstream.state_dict().items())
    assert any(not torch.equal(head_before[k], v) for k, v in model.head.state_dict().items())


def test_fine_tuned_upstream_is_frozen_for_n_steps_then_changes():
    model = UpstreamForCTC.from_upstream(tiny_learnable_upstream(), vocab_size=V, pad_token_id=0,
                                         freeze_upstream=False, freeze_upstream_steps=1, upstream_lr_scale=0.1)
    groups = model.parameter_groups()
    assert [g["lr_scale"] for g in groups] == [0.1, 1.0]
    up_ids = {id(p) for p in model.upstream.parameters()}
    assert {id(p) for p in groups[0]["params"]} == up_ids
    assert not up_ids & {id(p) for p in groups[1]["params"]}
    values, mask = batch([8000, 6000])
    labels = labels_batch([[3, 4], [5]])
    before = {k: v.clone() for k, v in model.upstream.state_dict().items()}
    _step(model, values, mask, labels, step=0)  # still frozen
    assert not model.upstream.training
    assert all(torch.equal(before[k], v) for k, v in model.upstream.state_dict().items())
    _step(model, values, mask, labels, step=1)  # now trained, and in train mode
    assert model.upstream.training
    assert any(not torch.equal(before[k], v) for k, v in model.upstream.state_dict().items())


def test_weighted_sum_combines_same_rate_points_and_learns_weights():
    upstream = tiny_learnable_upstream()
    model = UpstreamForCTC.from_upstream(upstream, vocab_size=V, pad_token_id=0, weighted_sum=True)
    assert model.weighted_probe_points == upstream.probe_points  # all 16-d at 100 Hz
    assert torch.equal(model.layer_weights, torch.zeros(len(upstream.probe_points)))  # a uniform mix to start
    assert len(model.mix_projections) == 0 and model.mix_dim == 16
    assert model.layer_mix_weights() == {p: pytest.approx(1 / len(upstream.probe_points)) for p in upstream.probe_points}
    values, mask = batch([8000])
    model(values, attention_mask=mask, labels=labels_batch([[3, 4]])).loss.backward()
    assert model.layer_weights.grad is not None and model.layer_weights.grad.abs().sum() > 0
    single = UpstreamForCTC.from_upstream(upstream, vocab_size=V, pad_token_id=0, probe_point="layer_1")
    assert single.weighted_probe_points == ["layer_1"] and single.layer_weights is None
    with pytest.raises(ValueError, match="probe_point 'nope'"):
        UpstreamForCTC.from_upstream(upstream, vocab_size=V, pad_token_id=0, probe_point="nope")


def test_layer_mix_maps_points_of_other_widths_and_padding_never_leaks():
    upstream = tiny_cpc()
    assert upstream.probe_dims() == {"enc": 8, "ctx": 12}
    model = UpstreamForCTC.from_upstream(upstream, vocab_size=V, pad_token_id=0, weighted_sum=True,
                                         head_type="bilstm", head_hidden_size=8, dropout=0.0)
    # Every point at the default point's rate, enc mapped to ctx's width by a learned map (no bias).
    assert model.weighted_probe_points == ["enc", "ctx"] and model.mix_left_out == [] and model.mix_dim == 12
    assert list(model.mix_projections) == ["enc"] and model.mix_projections["enc"].weight.shape == (12, 8)
    assert model.mix_projections["enc"].bias is None and model.head.lstm is not None
    record = model.layer_mix_record()
    assert record["layer_weights"] == {"enc": 0.5, "ctx": 0.5}
    assert record["layer_mix"] == {"points": ["enc", "ctx"], "left_out": [], "dim": 12, "projected": ["enc"],
                                   "frame_rate": 100.0}
    model.eval()
    with torch.no_grad():
        model.layer_weights.copy_(torch.tensor([0.3, -0.2]))
    lengths = [16000, 7000, 3333]
    values, mask = batch(lengths)
    with torch.no_grad():
        out = model(values, attention_mask=mask)
        for i, n in enumerate(lengths):
            alone = model(values[i : i + 1, :n])
            k = int(out.output_lengths[i])
            assert alone.logits.shape[1] == k
            torch.testing.assert_close(alone.logits[0], out.logits[i, :k], atol=1e-5, rtol=1e-4)
        # The same from cached features, the points concatenated along the features (the recipe's cache) ...
        states = upstream(values, attention_mask=mask, output_hidden_states=True)
        enc, ctx = states.hidden_states
        lengths_at = upstream.frame_lengths(torch.tensor(lengths))
        cached = model(upstream_features=torch.cat([enc, ctx], -1), feature_lengths=lengths_at)
        torch.testing.assert_close(cached.logits, out.logits)
        # ... and the mix is the layer-normed points, enc mapped, softmax-weighted.
        w = torch.softmax(torch.tensor([0.3, -0.2]), 0)
        expected = w[0] * model.mix_projections["enc"](F.layer_norm(enc, (8,))) + w[1] * F.layer_norm(ctx, (12,))
        features, _ = model._combine([enc, ctx], lengths_at)
        torch.testing.assert_close(features, expected)
    with pytest.raises(ValueError, match="concatenated"):
        model(upstream_features=enc, feature_lengths=lengths_at)
    # Training reaches the weights and the map; a configured common width maps both points.
    model.train()
    model(values, attention_mask=mask, labels=labels_batch([[3, 4], [5], [6]])).loss.backward()
    assert model.layer_weights.grad.abs().sum() > 0 and model.mix_projections["enc"].weight.grad.abs().sum() > 0
    wide = UpstreamForCTC.from_upstream(upstream, vocab_size=V, pad_token_id=0, weighted_sum=True, weighted_sum_dim=6)
    assert sorted(wide.mix_projections) == ["ctx", "enc"] and wide.head.output.in_features == 6
    with pytest.raises(ValueError, match="weighted_sum_dim"):
        UpstreamForCTCConfig(weighted_sum=True, weighted_sum_dim=0)


def test_layer_mix_save_load_round_trip_gives_the_same_logits(tmp_path):
    model = UpstreamForCTC.from_upstream(tiny_cpc(), vocab_size=V, pad_token_id=0, weighted_sum=True,
                                         head_type="bilstm", head_hidden_size=8)
    values, mask = batch([8000, 5000])
    _step(model, values, mask, labels_batch([[4, 5], [6]]), step=0)  # the weights move off their start
    model.eval()
    weights = model.layer_mix_weights()
    assert weights["enc"] != pytest.approx(0.5)
    model.save_pretrained(tmp_path / "final")
    loaded = AutoModelForCTC.from_pretrained(tmp_path / "final").eval()
    assert isinstance(loaded, UpstreamForCTC) and loaded.config.weighted_sum
    assert loaded.layer_mix_weights() == weights and loaded.weighted_probe_points == ["enc", "ctx"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(values, attention_mask=mask).logits, model(values, attention_mask=mask).logits,
                                   atol=0, rtol=0)


def test_spec_augment_only_in_training():
    torch.manual_seed(0)
    model = UpstreamForCTC.from_upstream(load_upstream("fbank"), vocab_size=V, pad_token_id=0, dropout=0.0,
                                         time_mask_width=10, feature_mask_width=8)
    values, mask = batch([16000])
    model.eval()
    a, b = model(values, attention_mask=mask).logits, model(values, attention_mask=mask).logits
    assert torch.equal(a, b)
    model.train()
    assert not torch.allclose(model(values, attention_mask=mask).logits, a)


def test_config_validation_says_what_is_wrong():
    with pytest.raises(ValueError, match="head_type"):
        UpstreamForCTCConfig(head_type="gru")
    with pytest.raises(ValueError, match="reduction_kernel"):
        UpstreamForCTCConfig(reduction_stride=4, reduction_kernel=2)
    with pytest.raises(ValueError, match="pad_token_id"):
        UpstreamForCTCConfig(vocab_size=5, pad_token_id=7)


def test_save_load_round_trip_and_pipeline(tmp_path):
    texts = ["HELLO WORLD", "A CAT"]
    tok = build_char_tokenizer(texts, str(tmp_path / "tok"))
    model = UpstreamForCTC.from_upstream(tiny_learnable_upstream(), vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                         freeze_upstream=False, head_type="bilstm", head_hidden_size=8,
                                         reduction_stride=2, reduction_kernel=4)
    values, mask = batch([8000, 5000])
    _step(model, values, mask, labels_batch([[4, 5], [6]]), step=0)  # weights differ from any fresh init
    model.eval()
    out_dir = tmp_path / "final"
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    repr_asr.ReprFeatureExtractor().save_pretrained(out_dir)
    assert sorted(p.name for p in out_dir.glob("*.safetensors")) == ["model.safetensors"]

    loaded = AutoModelForCTC.from_pretrained(out_dir)
    assert isinstance(loaded, UpstreamForCTC) and isinstance(loaded.upstream, MaskedReconModel)
    assert loaded.config.inputs_to_logits_ratio == 320 and loaded.config.architectures == ["UpstreamForCTC"]
    torch.testing.assert_close(loaded(values, attention_mask=mask).logits, model(values, attention_mask=mask).logits)

    asr = pipeline("automatic-speech-recognition", model=str(out_dir))
    audio = values[0].numpy()
    result = asr(audio)
    assert isinstance(result["text"], str)
    assert result["text"] == greedy_decode(loaded(values[:1]).logits, tok)[0]


@pytest.mark.parametrize("units", ["char", "sentencepiece"])
def test_processor_round_trip_through_auto_processor(tmp_path, units):
    texts = ["HELLO WORLD", "A CAT SAT ON THE MAT", "THE WORLD IS A CAT"]
    tok = (build_char_tokenizer(texts, str(tmp_path / "tok")) if units == "char"
           else train_sentencepiece(texts * 4, str(tmp_path / "tok"), vocab_size=20))
    model = UpstreamForCTC.from_upstream(tiny_learnable_upstream(), vocab_size=len(tok), pad_token_id=tok.pad_token_id).eval()
    out_dir = tmp_path / "final"
    model.save_pretrained(out_dir)
    # What the CTC recipe saves: the upstream's feature extractor (normalising, so a default one would
    # differ) and the tokenizer, as one processor.
    Wav2Vec2Processor(feature_extractor=repr_asr.ReprFeatureExtractor(do_normalize=True), tokenizer=tok).save_pretrained(out_dir)

    processor = AutoProcessor.from_pretrained(out_dir)
    assert isinstance(processor, Wav2Vec2Processor)
    assert isinstance(processor.feature_extractor, repr_asr.ReprFeatureExtractor) and processor.feature_extractor.do_normalize
    assert type(processor.tokenizer) is type(tok)
    assert isinstance(processor.tokenizer, SentencePieceCTCTokenizer) == (units == "sentencepiece")
    # Audio in: the saved extractor's features, padded with a mask.
    values, mask = batch([8000, 5000])
    inputs = processor([values[0, :8000].numpy(), values[1, :5000].numpy()], sampling_rate=16000, return_tensors="pt")
    assert inputs["input_values"].shape == (2, 8000) and inputs["attention_mask"][1].sum() == 5000
    assert torch.allclose(inputs["input_values"][1, :5000].mean(), torch.tensor(0.0), atol=1e-5)  # normalised
    # Ids out: CTC decoding, as the recipe's greedy decoder reads them.
    with torch.no_grad():
        logits = model(**inputs).logits
    assert processor.decode(logits[0].argmax(-1)) == greedy_decode(logits[:1], tok)[0]
    # Text in and back: labels round trip.
    labels = processor(text="THE CAT SAT").input_ids
    assert labels == tok("THE CAT SAT").input_ids and processor.decode(labels, group_tokens=False) == "THE CAT SAT"


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="transformers' ASR pipeline decodes audio files with FFmpeg (scripts/install_system_deps.sh installs it)")
def test_pipeline_transcribes_an_audio_file(tmp_path):
    tok = build_char_tokenizer(["HELLO WORLD", "A CAT"], str(tmp_path / "tok"))
    torch.manual_seed(0)
    model = UpstreamForCTC.from_upstream(load_upstream("fbank"), vocab_size=len(tok), pad_token_id=0,
                                         head_type="bilstm", head_hidden_size=8).eval()
    with torch.no_grad():
        model.head.output.weight.mul_(50)  # wide logit margins: argmax does not hinge on rounding
    out_dir = tmp_path / "final"
    model.save_pretrained(out_dir)
    Wav2Vec2Processor(feature_extractor=repr_asr.ReprFeatureExtractor(), tokenizer=tok).save_pretrained(out_dir)
    values, _ = batch([12000])
    audio = (0.5 * values[0] / values[0].abs().max()).numpy()
    path = tmp_path / "utterance.flac"
    soundfile.write(str(path), audio, 16000, subtype="PCM_16")
    asr = pipeline("automatic-speech-recognition", model=str(out_dir), device="cpu")
    from_file = asr(str(path))["text"]
    with torch.no_grad():
        expected = greedy_decode(model(torch.from_numpy(repr_asr.load_audio(str(path)))[None]).logits, tok)[0]
    assert from_file == expected and from_file
    assert from_file == asr(repr_asr.load_audio(str(path)))["text"]
