"""Building blocks of the WaveNet autoencoder: WaveNet causality and incremental generation, encoder
padding invariance, VQ / VAE bottlenecks, jitter and sparse emission."""

import math

import pytest
import torch

from repr_asr.modules import (
    ConvEncoder,
    GaussianBottleneck,
    TimeJitter,
    VectorQuantizer,
    WaveNet,
    sparse_emission,
)
import repr_asr.modules.wavenet as wavenet_module
from repr_asr.modules.wavenet import plain_wavenet_stack


def tiny_wavenet(**kw):
    args = dict(quantization_channels=16, residual_channels=8, gate_channels=6, skip_channels=8,
                output_channels=12, dilations=[1, 2, 4] * 2, cond_channels=5)
    args.update(kw)
    torch.manual_seed(0)
    return WaveNet(**args)


def test_wavenet_is_causal():
    net = tiny_wavenet()
    spf, frames = 10, 4
    inputs = torch.randint(0, 16, (2, spf * frames))
    cond = torch.randn(2, frames, 5)
    base = net(inputs, cond)
    for cut in (1, 7, 23):
        changed = inputs.clone()
        changed[:, cut:] = torch.randint(0, 16, changed[:, cut:].shape)
        assert not torch.equal(changed[:, cut:], inputs[:, cut:])
        out = net(changed, cond)
        torch.testing.assert_close(out[:, :cut], base[:, :cut], rtol=0, atol=0)
        assert not torch.allclose(out[:, cut:], base[:, cut:])


@pytest.mark.parametrize("block_rows", [1024, 4, 10])  # 4, 10: blocks of 1 and 2 frames
# (3, 4, 2): dilations past the length; (2, 5, 3): blocks of 2 frames straddle utterances.
@pytest.mark.parametrize("batch, spf, frames", [(2, 5, 4), (3, 4, 2), (2, 5, 3)])
def test_wavenet_matches_plain_reference_values_and_gradients(batch, spf, frames, block_rows, monkeypatch):
    """The fused stack (two products per dilated conv, hand-written backward, sigmoid-only gate, blocks
    of rows) gives the plain conv1d WaveNet's outputs and the gradients of every parameter and of the
    condition."""
    monkeypatch.setattr(wavenet_module, "CPU_BLOCK_ROWS", block_rows)
    net = tiny_wavenet().double()
    inputs = torch.randint(0, 16, (batch, spf * frames))
    cond = torch.randn(batch, frames, 5, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(batch, spf * frames, net.skip_channels, dtype=torch.float64)

    def grads(fn):
        net.zero_grad()
        cond.grad = None
        out = fn(net, inputs, cond)
        (out * probe).sum().backward()
        params = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in net.parameters()]
        return out.detach(), params + [cond.grad.clone()]

    fused, fused_grads = grads(lambda n, i, c: n(i, c))
    plain, plain_grads = grads(plain_wavenet_stack)
    torch.testing.assert_close(fused, plain, rtol=1e-10, atol=1e-10)
    names = [name for name, _ in net.named_parameters()] + ["cond"]
    head = {"head_hidden.weight", "head_hidden.bias", "head_out.weight", "head_out.bias"}
    for name, a, b in zip(names, fused_grads, plain_grads):
        if name not in head:  # the head is not part of the stack: no gradient from either
            assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=name)


def test_wavenet_autocast_runs_the_stack_in_bfloat16():
    net = tiny_wavenet()
    inputs = torch.randint(0, 16, (2, 20))
    cond = torch.randn(2, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(inputs, cond)
        loss = net.head(out).float().logsumexp(-1).mean()
    assert out.dtype == torch.bfloat16
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.gate_convs.parameters())
    torch.testing.assert_close(out.float(), net(inputs, cond).detach(), rtol=0.1, atol=0.1)


def test_wavenet_condition_is_repeated_per_frame():
    net = tiny_wavenet()
    inputs = torch.randint(0, 16, (1, 30))
    cond = torch.randn(1, 3, 5)
    changed = cond.clone()
    changed[:, 2] += 1.0  # the last frame covers samples 20..29 only
    torch.testing.assert_close(net(inputs, changed)[:, :20], net(inputs, cond)[:, :20], rtol=0, atol=0)


@pytest.mark.parametrize("spf", [7, 8])  # odd frames: blocks of one sample; 8: blocks of up to 8
# Residual width 8: products split in two reduction halves, gate columns padded (6 + 1 -> 8); 7: not split.
@pytest.mark.parametrize("residual, gate", [(8, 6), (7, 5)])
def test_incremental_generation_matches_teacher_forcing(spf, residual, gate):
    net = tiny_wavenet(dilations=[1, 2, 4, 8, 16] * 2, residual_channels=residual, gate_channels=gate).double()
    frames = 6
    inputs = torch.randint(0, 16, (3, spf * frames))
    cond = torch.randn(3, frames, 5, dtype=torch.float64)
    with torch.no_grad():
        reference = net.head(net(inputs, cond))  # (B, S, Q)
        cache = net.init_cache(cond, spf)
        steps = torch.stack([net.step(inputs[:, t], cache) for t in range(inputs.shape[1])], dim=1)
    assert cache.position == inputs.shape[1]
    # Ring buffers hold at most `dilation` past inputs: no receptive-field recomputation.
    assert [b.shape[0] for b in cache.buffers] == net.dilations
    assert max(cache.blocks) == (8 if spf == 8 else 1)
    assert cache.parts == (2 if residual % 2 == 0 else 1)
    torch.testing.assert_close(steps, reference, rtol=1e-10, atol=1e-10)


def test_encoder_padding_invariance_and_lengths():
    torch.manual_seed(0)
    enc = ConvEncoder(input_dim=7, hidden_size=16, num_halvings=2, num_ff_layers=2)
    feats = torch.randn(1, 37, 7)
    alone, alone_len = enc(feats, torch.tensor([37]))
    padded = torch.cat([feats, torch.randn(1, 20, 7) * 100], dim=1)  # garbage padding
    batch = torch.cat([padded, torch.randn(1, 57, 7)], dim=0)
    out, lengths = enc(batch, torch.tensor([37, 57]))
    assert lengths.tolist() == [math.ceil(37 / 4), math.ceil(57 / 4)] and alone_len.tolist() == [10]
    torch.testing.assert_close(out[0, :10], alone[0], rtol=1e-5, atol=1e-5)
    assert torch.all(out[0, 10:] == 0)
    # zero-length input is clamped by the caller to one frame and stays finite
    zero, zero_len = enc(torch.zeros(1, 1, 7), torch.tensor([0]))
    assert zero_len.tolist() == [0] and torch.isfinite(zero).all()


def test_vq_codes_are_nearest_and_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=12, dim=4)
    vq.init_state()
    z = torch.randn(2, 9, 4, requires_grad=True)
    mask = torch.ones(2, 9, dtype=torch.bool)
    out = vq(z, mask)
    nearest = torch.cdist(z.detach().reshape(-1, 4), vq.codebook.detach()).argmin(1).view(2, 9)
    assert torch.equal(out.codes, nearest)
    torch.testing.assert_close(out.latents.detach(), vq.codebook.detach()[nearest])
    weights = torch.randn(2, 9, 4)
    (out.latents * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # straight-through: identity gradient
    assert out.metrics["codebook_usage"] <= 1.0 and out.metrics["codebook_perplexity"] >= 1.0


def test_vq_codebook_loss_trains_codebook_and_ema_moves_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=4, dim=3)
    vq.init_state()
    z = torch.randn(1, 10, 3)
    out = vq(z, torch.ones(1, 10, dtype=torch.bool))
    out.loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0

    ema = VectorQuantizer(codebook_size=4, dim=3, use_ema=True, ema_decay=0.5)
    ema.init_state()
    assert not ema.codebook.requires_grad
    target = torch.full((1, 50, 3), 2.0)
    before = ema.codebook.detach().clone()
    for _ in range(10):
        out = ema.train()(target, torch.ones(1, 50, dtype=torch.bool))
    used = out.codes[0, 0]
    assert (ema.codebook[used] - 2.0).abs().max() < (before[used] - 2.0).abs().max()
    assert "vq_codebook" not in out.metrics


def test_vq_dead_codes_are_revived_from_recent_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=8, dim=2, dead_code_threshold=0.5)
    vq.init_state()
    with torch.no_grad():
        vq.codebook[4:] = 1000.0  # never chosen
    data = torch.randn(1, 64, 2)
    mask = torch.ones(1, 64, dtype=torch.bool)
    mask[0, 60:] = False  # padded frames are never used for revival
    data[0, 60:] = -500.0
    vq.train()(data, mask)
    revived = vq.revive_dead_codes()
    assert revived >= 4
    real = data[0, :60]
    for k in range(4, 8):
        assert torch.cdist(vq.codebook[k : k + 1].detach(), real).min() < 1e-6
    # After revival they are not immediately dead again.
    assert vq.revive_dead_codes() == 0


def test_vq_kmeans_init_on_first_training_batch():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=2, dim=2, kmeans_init=True)
    vq.init_state()
    assert not bool(vq.initialized)
    data = torch.cat([torch.randn(1, 30, 2) * 0.01 + 5, torch.randn(1, 30, 2) * 0.01 - 5], dim=1)
    vq.eval()(data, torch.ones(1, 60, dtype=torch.bool))
    assert not bool(vq.initialized)  # only training batches initialise
    vq.train()(data, torch.ones(1, 60, dtype=torch.bool))
    assert bool(vq.initialized)
    centres = sorted(vq.codebook[:, 0].tolist())
    assert centres[0] == pytest.approx(-5, abs=0.05) and centres[1] == pytest.approx(5, abs=0.05)


def test_vae_kl_is_nonnegative_and_free_bits():
    torch.manual_seed(0)
    mask = torch.ones(2, 6, dtype=torch.bool)
    vae = GaussianBottleneck(dim=3)
    zero = vae.eval()(torch.zeros(2, 6, 6), mask)
    assert float(zero.loss) == pytest.approx(0.0, abs=1e-7)
    params = torch.randn(2, 6, 6, requires_grad=True)
    out = vae(params, mask)
    assert float(out.metrics["kl"]) >= 0 and float(out.loss.detach()) >= 0
    torch.testing.assert_close(out.latents, params[..., :3])  # eval: the mean

    free = GaussianBottleneck(dim=3, free_bits=100.0)
    small = (torch.randn(2, 6, 6) * 0.1).requires_grad_()
    out = free(small, mask)
    assert float(out.loss.detach()) == pytest.approx(300.0)  # every dimension below the free bits
    out.loss.backward()
    assert small.grad.abs().max() == 0  # no pressure below the free bits
    assert 0 < float(out.metrics["kl"]) < 300


def test_vae_samples_in_training():
    vae = GaussianBottleneck(dim=2).train()
    params = torch.zeros(1, 100, 4)
    out = vae(params, torch.ones(1, 100, dtype=torch.bool))
    assert out.latents.std() > 0.5  # unit-variance samples around mean 0


def test_jitter_eval_identity_and_training_copies_neighbours():
    torch.manual_seed(0)
    jitter = TimeJitter(0.5)
    x = torch.arange(40.0).view(2, 20, 1).expand(2, 20, 3).clone()
    lengths = torch.tensor([20, 12])
    assert torch.equal(jitter.eval()(x, lengths), x)
    out = jitter.train()(x, lengths)
    source = out[..., 0] - x[:, :1, 0]  # which frame each output came from
    offsets = source - torch.arange(20.0)
    assert set(offsets.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (offsets != 0).any()
    assert torch.all(source[1, :12] <= 11)  # never copies padding into real frames
    assert torch.equal(out[1, 12:], x[1, 12:])
    assert torch.all(source[:, 0] >= 0)
    # the rate: p/2 to each side (a loose statistical check on many frames)
    big = torch.arange(20000.0).view(1, -1, 1)
    moved = (TimeJitter(0.12).train()(big, torch.tensor([20000]))[0, :, 0] != big[0, :, 0]).float().mean()
    assert 0.09 < float(moved) < 0.15


def test_sparse_emission_keeps_largest_per_window():
    x = torch.tensor([[1.0, 5.0, 2.0, 3.0, 9.0, 1.0, 0.5]]).unsqueeze(-1)  # (1, 7, 1)
    out = sparse_emission(x, window=4, keep=1)
    assert out[0, :, 0].tolist() == [0.0, 5.0, 0.0, 0.0, 9.0, 0.0, 0.0]
    assert torch.equal(sparse_emission(x, window=4, keep=4), x)
    x = x.clone().requires_grad_()
    sparse_emission(x, 4, 2).sum().backward()
    assert x.grad[0, :, 0].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
