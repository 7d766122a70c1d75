"""``return_dict=False`` gives ``output.to_tuple()`` for every model, as in transformers (and
``config.return_dict = False`` does the same); the default stays the output dataclass."""

import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from repr_asr import (
    MODEL_TYPES,
    CPCConfig,
    CPCModel,
    MaskedReconConfig,
    MaskedReconModel,
    SpectralConfig,
    SpectralModel,
    ToplineConfig,
    ToplineModel,
    UpstreamForCTC,
    WaveNetAEConfig,
    WaveNetAEModel,
)
from repr_asr.models import HFEncoderUpstream, WrappedUpstream

pytestmark = pytest.mark.usefixtures("one_thread")

LENGTHS = [8000, 5000]


class OneConv(torch.nn.Module):
    """Any module: (batch, samples) → one (batch, frames, 4) hidden state."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 400, stride=160)

    def forward(self, wave):
        return [self.conv(wave[:, None]).transpose(1, 2)]  # (B, T, 4)


def _wavenet():
    return WaveNetAEModel(WaveNetAEConfig(
        encoder_hidden_size=24, encoder_num_ff_layers=2, latent_dim=8, codebook_size=16, conditioning_channels=12,
        decoder_layers=4, decoder_dilation_cycles=2, residual_channels=8, gate_channels=8, skip_channels=8,
        decoder_output_channels=16))


def _topline_labels(model):
    frames = int(model.frame_lengths(torch.tensor([max(LENGTHS)]))[0])
    return torch.randint(0, len(model.config.phones), (len(LENGTHS), frames))


# model type (or kind of foreign upstream) → (builder, extra forward arguments given the model and the mask).
CASES = {
    "spectral": (lambda: SpectralModel(SpectralConfig(input_features="fbank")), lambda m, mask: {}),
    "cpc": (lambda: CPCModel(CPCConfig(conv_dim=16, context_hidden_size=24, prediction_steps=3, num_negatives=6)),
            lambda m, mask: {"compute_loss": True}),
    "masked_recon": (lambda: MaskedReconModel(MaskedReconConfig(n_mels=16, hidden_size=16, num_hidden_layers=1,
                                                                num_attention_heads=2, intermediate_size=32)),
                     lambda m, mask: {"compute_loss": True}),
    "wavenet_ae": (_wavenet, lambda m, mask: {"compute_loss": True}),
    "phone_topline": (lambda: ToplineModel(ToplineConfig(hidden_size=16, num_layers=3, dilations=[1, 2])),
                lambda m, mask: {"compute_loss": True, "phone_labels": _topline_labels(m)}),
    "upstream_ctc": (lambda: UpstreamForCTC.from_upstream(SpectralModel(SpectralConfig(input_features="fbank")),
                                                          vocab_size=5, pad_token_id=0),
                     lambda m, mask: {"labels": torch.tensor([[1, 2, 3], [2, 4, -100]])}),
    "wrapped": (lambda: WrappedUpstream(OneConv(), samples_per_frame=160, frame_lengths=[(400, 160)], probe_points=["conv"]),
                lambda m, mask: {}),
    "hf_encoder": (lambda: HFEncoderUpstream(Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, conv_dim=(8, 8, 8),
        conv_kernel=(10, 8, 4), conv_stride=(5, 8, 8), num_conv_pos_embedding_groups=2, num_conv_pos_embeddings=16))),
        lambda m, mask: {}),
}


def _assert_same(a, b, where="output"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, msg=where)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    else:
        assert a == b, where


def _run(model, inputs, **kwargs):
    torch.manual_seed(0)  # the same draws (negatives, masks, noise) for both calls
    with torch.no_grad():
        return model(**inputs, **kwargs)


def test_every_registered_model_has_a_case():
    assert set(MODEL_TYPES) <= set(CASES), f"add the new model type(s) {set(MODEL_TYPES) - set(CASES)} to CASES"


@pytest.mark.parametrize("name", list(CASES))
def test_return_dict_false_gives_the_outputs_tuple(name):
    build, extra = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    waves = 0.1 * torch.randn(len(LENGTHS), max(LENGTHS))
    mask = (torch.arange(max(LENGTHS))[None] < torch.tensor(LENGTHS)[:, None]).long()
    inputs = {"input_values": waves, "attention_mask": mask, **extra(model, mask)}
    if name != "upstream_ctc":
        inputs["output_hidden_states"] = True

    as_dict = _run(model, inputs)
    assert not isinstance(as_dict, tuple)
    assert _run(model, inputs, return_dict=True).keys() == as_dict.keys()
    as_tuple = _run(model, inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.keys()) >= 2
    _assert_same(as_tuple, as_dict.to_tuple())
    if name in ("cpc", "masked_recon", "wavenet_ae", "phone_topline", "upstream_ctc"):
        assert as_dict.loss is not None and as_tuple[0] is not None  # the loss leads the tuple, as in transformers

    model.config.return_dict = False  # the config's setting, as transformers reads it
    _assert_same(_run(model, inputs), as_dict.to_tuple())
    assert not isinstance(_run(model, inputs, return_dict=True), tuple)  # the argument wins over the config
