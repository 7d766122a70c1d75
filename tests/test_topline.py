"""The supervised topline and phone units: frame phone labels of a crop follow its alignment, the topline
gives every utterance of a padded batch what it gets alone and learns phones from labels through the
pretraining recipe, phone transcripts leave silences out and a corpus without phones is refused by name,
the phone tokenizer round-trips and decodes CTC, and PER is the edit distance over phones."""

import json
import os

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, Wav2Vec2PhonemeCTCTokenizer

import repr_asr  # noqa: F401  (Auto classes)
from repr_asr.data.crops import RandomCropDataset, collate_crops, crop_phone_labels
from repr_asr.data.phones import PHONE_TO_ID, AlignmentError, phone_transcript, phone_transcripts
from repr_asr.evaluation.wer import error_rates, per
from repr_asr.models.topline import ToplineConfig, ToplineModel
from repr_asr.tokenization import TranscriptError, build_tokenizer, encode_transcripts

from tone_corpus import SR, build_tone_corpus

ROOT = os.path.join(os.path.dirname(__file__), "..")
pytestmark = pytest.mark.usefixtures("one_thread")

SEGMENTS = {"phone": ["SIL", "M", "AA", "SIL"], "start": [0.0, 0.05, 0.12, 0.2], "end": [0.05, 0.12, 0.2, 0.3]}


def test_crop_phone_labels_follow_the_alignment():
    hop = 160  # 10 ms frames
    # A crop of 0.2 s starting at 0.03 s with 0.15 s of real audio: frames at 0.03, 0.04, ..., 0.23 s.
    labels = crop_phone_labels(SEGMENTS, offset=480, real=2400, crop_samples=3200, hop=hop, sampling_rate=SR, utterance="u")
    times = 0.03 + np.arange(len(labels)) * 0.01
    expected = []
    for t, index in zip(times, range(len(labels))):
        if index * hop >= 2400:
            expected.append(-100)
        else:
            phone = next((p for p, s, e in zip(*SEGMENTS.values()) if s <= t + 1e-9 < e), "SIL")
            expected.append(PHONE_TO_ID[phone])
    assert labels.tolist() == expected
    assert PHONE_TO_ID["M"] in labels and PHONE_TO_ID["AA"] in labels and labels[-1] == -100
    with pytest.raises(ValueError, match="utterance u9: phone 'QQ'"):
        crop_phone_labels({"phone": ["QQ"], "start": [0.0], "end": [0.1]}, 0, 1600, 1600, hop, SR, "u9")


def test_phone_transcripts_leave_silence_out_and_a_corpus_without_phones_is_refused():
    assert phone_transcript(SEGMENTS) == "M AA"
    assert phone_transcript({"phone": ["ah0", "sp", "K"], "start": [0, 1, 2], "end": [1, 2, 3]}) == "AH K"
    split = datasets.Dataset.from_dict({"id": ["a", "b"], "phones": [SEGMENTS, {"phone": [], "start": [], "end": []}]})
    with pytest.raises(AlignmentError, match="utterance 'b' has no phone alignment"):
        phone_transcripts(split)
    with pytest.raises(AlignmentError, match="no phone alignments"):
        phone_transcripts(datasets.Dataset.from_dict({"id": ["a"], "text": ["HI"]}))


def test_phone_tokenizer_round_trips_and_decodes_ctc(tmp_path):
    tokenizer = build_tokenizer(["DH AH K AE T", "AH K"], str(tmp_path / "tok"), unit="phone")
    assert isinstance(tokenizer, Wav2Vec2PhonemeCTCTokenizer)
    vocab = tokenizer.get_vocab()
    assert vocab["<pad>"] == 0 and vocab["<unk>"] == 1 and sorted(vocab) == sorted(["<pad>", "<unk>", "AE", "AH", "DH", "K", "T"])
    ids = encode_transcripts(tokenizer, ["DH AH K"])[0]
    assert ids == [vocab["DH"], vocab["AH"], vocab["K"]]
    # CTC: repeats merge, blanks separate
    assert tokenizer.decode([0, ids[0], ids[0], 0, ids[1], 0, ids[1], ids[2]]) == "DH AH AH K"
    tokenizer.save_pretrained(tmp_path / "saved")
    again = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert again.get_vocab() == vocab and again.decode(ids, group_tokens=False) == "DH AH K"
    with pytest.raises(TranscriptError, match=r"utterance 'x'.*\['ZH'\]"):
        encode_transcripts(tokenizer, ["AH ZH"], ids=["x"])


def test_per_is_the_edit_distance_over_phones():
    # one substitution (K -> T), one deletion (AE), one insertion (S) over 5 + 2 reference phones
    assert per(["DH AH K AE T", "AH K"], ["DH AH T T", "AH K S"]) == pytest.approx(3 / 7)
    assert error_rates(["AH K"], ["AH K"], unit="phone") == {"per": 0.0}
    assert set(error_rates(["AB C"], ["AB"], unit="char")) == {"wer", "cer"}


def test_padded_batch_gives_each_utterance_its_lone_features():
    torch.manual_seed(0)
    model = ToplineModel(ToplineConfig(hidden_size=16, num_layers=3, dilations=[1, 2])).eval()
    waves = torch.randn(3, 12000)
    lengths = torch.tensor([12000, 7000, 3001])
    mask = (torch.arange(12000)[None] < lengths[:, None]).long()
    batched = model(waves, attention_mask=mask, output_hidden_states=True)
    assert batched.frame_lengths.tolist() == model.frame_lengths(lengths).tolist()
    assert [h.shape[-1] for h in batched.hidden_states] == list(model.probe_dims().values())
    for i, n in enumerate(lengths.tolist()):
        alone = model(waves[i:i + 1, :n], output_hidden_states=True)
        frames = int(batched.frame_lengths[i])
        for a, b in zip(batched.hidden_states, alone.hidden_states):
            assert b.shape[1] == frames
            torch.testing.assert_close(a[i, :frames], b[0], atol=1e-5, rtol=1e-5)
            assert a[i, frames:].abs().max() == 0 if frames < a.shape[1] else True


def test_config_refuses_what_cannot_be_built():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ToplineConfig(kernel_size=4)
    with pytest.raises(ValueError, match=r"probe_points \['layer_9'\]"):
        ToplineConfig(num_layers=2, probe_points=["layer_9"])
    assert ToplineConfig(num_layers=3).default_probe_point == "layer_3"


def test_pretraining_recipe_teaches_the_topline_phones_and_saves_it(tmp_path):
    """Through the pretraining recipe: crops carry frame labels, frame accuracy climbs far above chance,
    and final/ reloads with AutoModel to the same features."""
    from repr_asr.training.config import load_config
    from repr_asr.training.pretrain import run_pretraining

    build_tone_corpus(tmp_path / "corpus", subset="dev-clean", utterances=3)
    spec = f"librispeech:{tmp_path / 'corpus'}"
    split = repr_asr.data.load_corpus(spec)["dev"]
    crops = RandomCropDataset(split, crop_samples=8000, seed=0, phone_hop=160)
    batch = collate_crops([crops[i] for i in range(2)])
    assert batch["phone_labels"].shape == (2, 51) and set(batch["phone_labels"].unique().tolist()) <= set(range(40)) | {-100}

    overrides = {("data", "spec"): spec, ("data", "split"): "dev", ("data", "crop_samples"): 8000,
                 ("training", "max_steps"): 80, ("training", "batch_size"): 4, ("training", "warmup_steps"): 0,
                 ("training", "log_steps"): 10, ("training", "save_steps"): 0, ("training", "learning_rate"): 0.003,
                 ("model", "hidden_size"): 32, ("model", "num_layers"): 2, ("model", "dropout"): 0.0}
    run = load_config(os.path.join(ROOT, "configs", "pretrain", "topline_tiny.yaml"), overrides)
    metrics = run_pretraining(run, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "frame_accuracy" in r]
    # 4 tones (M, AA, IY, SIL), SIL and M about 60 % of frames: a trained classifier tells them apart.
    assert losses[0] > 5 * losses[-1] and metrics["frame_accuracy"] > 0.9
    model = AutoModel.from_pretrained(tmp_path / "run" / "final")
    assert isinstance(model, ToplineModel) and model.probe_points == ["layer_1", "layer_2"]
    wave = torch.from_numpy(np.asarray(repr_asr.load_audio(split[0]["audio"]), dtype=np.float32))[None]
    assert model(wave).last_hidden_state.shape == (1, 1 + wave.shape[1] // 160, 32)


def test_a_split_without_alignments_is_refused_for_phone_labels():
    split = datasets.Dataset.from_dict({"id": ["a"], "audio": ["a.flac"]})
    with pytest.raises(ValueError, match="no phone alignments"):
        RandomCropDataset(split, crop_samples=1600, phone_hop=160)
