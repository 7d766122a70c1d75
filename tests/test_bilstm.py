"""PaddedBiLSTM computes what a packed bidirectional nn.LSTM computes, on every real frame."""

import pytest
import torch
from torch import nn

from repr_asr.modules.bilstm import PaddedBiLSTM, reverse_within_lengths


def test_reverse_within_lengths():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_within_lengths(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert out[1, :, 0].tolist() == [7, 6, 5, 8, 9]
    assert torch.equal(reverse_within_lengths(out, torch.tensor([5, 3])), x)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_matches_packed_bidirectional_lstm(num_layers):
    torch.manual_seed(0)
    ours = PaddedBiLSTM(6, 5, num_layers=num_layers).double()
    reference = nn.LSTM(6, 5, num_layers=num_layers, batch_first=True, bidirectional=True).double()
    with torch.no_grad():  # copy our per-direction weights into the reference's layout
        for layer in range(num_layers):
            for direction, module in (("", ours.forward_layers[layer]), ("_reverse", ours.backward_layers[layer])):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(reference, f"{name}_l{layer}{direction}").copy_(getattr(module, f"{name}_l0"))
    x = torch.randn(3, 9, 6, dtype=torch.double)
    lengths = torch.tensor([9, 4, 1])
    x[1, 4:] = 7.0  # padding content must not matter
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected, _ = nn.utils.rnn.pad_packed_sequence(reference(packed)[0], batch_first=True, total_length=9)
    got = ours(x, lengths)
    torch.testing.assert_close(got, expected)
    assert torch.all(got[1, 4:] == 0) and torch.all(got[2, 1:] == 0)
