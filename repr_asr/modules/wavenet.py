"""The WaveNet decoder (van den Oord et al. 2016, https://arxiv.org/abs/1609.03499) with a cached
incremental mode for generation.

Teacher-forced training evaluates the whole residual stack in one autograd function,
:class:`GatedResidualStack`, channels last ``(batch, samples, channels)``, with a hand-written backward.
Every kernel-2 dilated convolution is two matrix products accumulated into one output: ``x[t] @ W1``
over all positions, then ``x[t-d] @ W0`` added to rows ``d:`` of each utterance (a row-shifted view, no
padded copy). On 2 cores this is what lets the step approach the machine's matmul rate: oneDNN's dilated
``conv1d`` stays well below it on these shapes, and ``conv1d`` + autograd also copy in-place-modified
views (measured with ``bench/run.py``: docs/performance.md).

For generation, :class:`WaveNetCache` keeps, per layer, a ring buffer of that layer's last ``dilation``
inputs, so each new sample costs one step through the stack (Paine et al. 2016, "Fast WaveNet
generation", https://arxiv.org/abs/1611.09482) instead of recomputing the receptive field. At batch 1
a step is bound by reading the weights from memory, so the cache computes the ``x[t-d] @ W0`` halves
ahead of time in blocks of up to 64 samples (one matrix product instead of a matrix-vector product per
sample) and collects the skip outputs of all layers in one product at the end of the step.

The gate ``tanh(a) · σ(b)`` takes three elementwise passes per block: the products write ``[2a, b]``
(the ``a`` columns of the weights and condition doubled), one ``sigmoid_`` covers both halves,
``tanh(a) = 2σ(2a) − 1`` is a ``lerp_``, then one product. ``[tanh(a), σ(b)]`` is all the backward
needs (``tanh_backward``, ``sigmoid_backward``, no exponentials): PyTorch's CPU ``tanh``, ``glu`` and
``glu_backward`` run at a fraction of these passes' element rate. What keeps the step under the matmul
rate is the products themselves (slower inside the step, where their operands come from memory, than
alone), not the elementwise passes (docs/performance.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def gate_(h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The gate ``tanh(a) · σ(b)`` into ``out`` from ``h = [2a, b]`` (last dim; the ``a`` half arrives
    doubled, so one ``sigmoid_`` pass covers both halves: ``tanh(a) = 2σ(2a) − 1``). ``h`` becomes
    ``[tanh(a), σ(b)]``, all that :func:`gate_backward_` needs."""
    half = h.shape[-1] // 2
    h_a, h_b = h[..., :half], h[..., half:]
    h.sigmoid_()
    h_a.lerp_(h_a.new_ones(()), -1.0)  # s + (−1)(1 − s) = 2s − 1
    return torch.mul(h_a, h_b, out=out)


def gate_backward_(grad: torch.Tensor, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. ``[a, b]`` of the gate ``tanh(a) · σ(b)`` from the gradient of its output and the
    ``h = [tanh(a), σ(b)]`` that :func:`gate_` left behind, into ``out``."""
    half = h.shape[-1] // 2
    tanh_a, sigmoid_b, d_a, d_b = h[..., :half], h[..., half:], out[..., :half], out[..., half:]
    torch.ops.aten.tanh_backward(torch.mul(grad, sigmoid_b, out=d_a), tanh_a, grad_input=d_a)  # × (1 − tanh²)
    torch.ops.aten.sigmoid_backward(torch.mul(grad, tanh_a, out=d_b), sigmoid_b, grad_input=d_b)  # × σ(1 − σ)
    return out


# Rows per block of the stack on CPU (rounded to whole condition frames): a block's gate pre-activations
# (rows x 2G floats) stay in cache between the matrix product that writes them and the elementwise work
# that reads them.
CPU_BLOCK_ROWS = 1024


def _frame_blocks(frames: int, spf: int, block_rows: int) -> list[tuple[int, int]]:
    """Blocks of whole condition frames ``[f0, f1)`` of about ``block_rows`` rows (``spf`` rows a frame)."""
    step = max(1, block_rows // spf)
    return [(f0, min(f0 + step, frames)) for f0 in range(0, frames, step)]


def _shifted_rows(r0: int, r1: int, samples: int, shift: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` inside ``[r0, r1)`` (rows are ``utterance * samples + t``) whose ``t >=
    shift``: the rows that see ``x[t - shift]``, read from rows ``[lo - shift, hi - shift)`` of the same
    utterance. Earlier rows see the causal zero padding."""
    ranges = []
    for b in range(r0 // samples, (r1 - 1) // samples + 1):
        lo, hi = max(r0, b * samples + shift), min(r1, (b + 1) * samples)
        if lo < hi:
            ranges.append((lo, hi))
    return ranges


class GatedResidualStack(torch.autograd.Function):
    """The WaveNet's residual layers, forward and backward, as matrix products over ``(batch * samples)``
    rows. Per layer ``i`` with dilation ``d``:

        h    = x[t-d] @ W0 + x[t] @ W1 + c[frame(t)]        (2G = [a, b]; c holds the biases)
        z    = tanh(a) · σ(b)                                (G)
        x'   = x + z @ Wres + bres;   skip += z @ Wskip      (the last layer has no residual output)

    ``apply(x, conds, dilations, *weights)``: ``x`` ``(batch, samples, R)`` embedded previous samples,
    ``conds`` ``(batch, frames, L * 2G)`` every layer's condition (bias included), ``weights`` per layer
    the parameters of the plain WaveNet's two convolutions as they are, ``(2G, R, 2)`` (taps of ``x[t-d]``
    and ``x[t]``), ``(R + K, G, 1)`` (or ``(K, G, 1)`` for the last layer) and its bias: the function
    rearranges them itself, outside autograd, and returns their gradients in the same layout.
    Returns the skip sum ``(batch, samples, K)`` with every layer's skip bias.

    On CPU each layer runs over blocks of about :data:`CPU_BLOCK_ROWS` rows (whole frames) so that the
    elementwise work reads what the products just wrote from cache (elsewhere one block is all rows).
    Saved for the backward: each layer's input and ``[tanh(a), σ(b)]``; the gate output is recomputed as
    their product, block by block.
    """

    @staticmethod
    def forward(ctx, x, conds, dilations, *weights):
        batch, samples, res = x.shape
        frames, layers = conds.shape[1], len(dilations)
        rows, g2, skip_width = batch * samples, weights[0].shape[0], weights[-2].shape[0]
        spf = samples // frames
        # Row r = b * samples + t lies in condition row b * frames + t // spf = r // spf: blocks of whole
        # condition rows are blocks of rows. One contiguous (B*F, 2G) matrix per layer (broadcasting
        # copies from a column slice run at a tenth of the speed), its a columns doubled like both taps'
        # (see gate_; exact in floating point).
        scale = torch.cat([x.new_full((g2 // 2,), 2.0), x.new_ones(g2 // 2)])
        cond_rows = torch.mul(conds.reshape(batch * frames, layers, g2).transpose(0, 1), scale,
                              out=conds.new_empty(layers, batch * frames, g2))
        blocks = _frame_blocks(batch * frames, spf, CPU_BLOCK_ROWS if x.device.type == "cpu" else rows)
        skip = sum(weights[3 * i + 2][-skip_width:] for i in range(layers)).expand(rows, skip_width).contiguous()
        z_block = x.new_empty((blocks[0][1] - blocks[0][0]) * spf, g2 // 2)
        inputs, gate_inputs = [x.reshape(rows, res)], []
        for i, d in enumerate(dilations):
            gate_weight, out_weight, b_out = weights[3 * i : 3 * i + 3]
            w0, w1 = (torch.mul(gate_weight[:, :, k].t(), scale, out=x.new_empty(res, g2)) for k in (0, 1))
            w_out = out_weight[:, :, 0].t()  # (G, R + K), a transposed view: the products take it as is
            last = i == layers - 1
            x_in, s = inputs[-1], x.new_empty(rows, g2)
            x_out = None if last else x.new_empty(rows, res)
            for f0, f1 in blocks:
                r0, r1 = f0 * spf, f1 * spf
                h = s[r0:r1]
                # Each frame's condition is the products' starting value (one write instead of an add pass).
                h.view(f1 - f0, spf, g2).copy_(cond_rows[i, f0:f1, None].expand(-1, spf, -1))
                h.addmm_(x_in[r0:r1], w1)
                for lo, hi in _shifted_rows(r0, r1, samples, d):
                    h[lo - r0 : hi - r0].addmm_(x_in[lo - d : hi - d], w0)
                z = gate_(h, out=z_block[: r1 - r0])
                skip[r0:r1].addmm_(z, w_out[:, -skip_width:])
                if not last:
                    torch.add(x_in[r0:r1], b_out[:res], out=x_out[r0:r1]).addmm_(z, w_out[:, :res])
            gate_inputs.append(s)
            if not last:
                inputs.append(x_out)
        ctx.save_for_backward(*inputs, *gate_inputs, *weights)
        ctx.dilations, ctx.blocks, ctx.shape = dilations, blocks, (batch, frames, samples, res)
        return skip.view(batch, samples, skip_width)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_skip):
        batch, frames, samples, res = ctx.shape
        dilations, blocks = ctx.dilations, ctx.blocks
        layers, rows, spf = len(dilations), batch * samples, samples // frames
        saved = ctx.saved_tensors
        inputs, gate_inputs, weights = saved[:layers], saved[layers : 2 * layers], saved[2 * layers :]
        g2 = weights[0].shape[0]
        gate = g2 // 2
        skip_width = grad_skip.shape[-1]
        # [dx | d_skip] (N, R + K): the gradient of a layer's output projection [residual | skip], so that
        # its two products are one each; the dx columns accumulate every layer's contribution in place.
        d_out = grad_skip.new_empty(rows, res + skip_width)
        d_out[:, res:] = grad_skip.reshape(rows, skip_width)
        d_skip, dx = d_out[:, res:], d_out[:, :res]
        d_cond_rows = d_out.new_empty(layers, batch * frames, g2)  # every frame is in one block
        block_rows = (blocks[0][1] - blocks[0][0]) * spf
        z_block, dz_block = (d_out.new_empty(block_rows, gate) for _ in range(2))
        dh_block = d_out.new_empty(block_rows, g2)
        grads: list = [None] * (3 * layers)
        for i in reversed(range(layers)):
            d, last = dilations[i], i == layers - 1
            x_in, s = inputs[i], gate_inputs[i]
            gate_weight, out_weight, _ = weights[3 * i : 3 * i + 3]
            # (2G, R) copies of the taps (strided in the parameter) and the (R + K, G) output weight as it is:
            # every product below reads row-major operands.
            w0_t, w1_t, w_out_t = gate_weight[:, :, 0].contiguous(), gate_weight[:, :, 1].contiguous(), out_weight[:, :, 0]
            d_w0_t, d_w1_t = w0_t.new_zeros(w0_t.shape), w1_t.new_zeros(w1_t.shape)
            d_w_out_t, d_b_out = w_out_t.new_zeros(w_out_t.shape), w_out_t.new_zeros(w_out_t.shape[0])
            d_cond = d_cond_rows[i]
            # The residual path passes dx through; this layer's contributions are added in place. Blocks
            # go forward in time: a block adds to its own and earlier rows only, after reading its own
            # (the last layer has no residual: its block's own product is written, not added).
            d_layer_out = d_skip if last else d_out
            for f0, f1 in blocks:
                r0, r1 = f0 * spf, f1 * spf
                n = r1 - r0
                s_block, d_block = s[r0:r1], d_layer_out[r0:r1]
                z = torch.mul(s_block[:, :gate], s_block[:, gate:], out=z_block[:n])  # the gate output, recomputed
                dz = torch.mm(d_block, w_out_t, out=dz_block[:n])
                d_w_out_t.addmm_(d_block.t(), z)
                d_b_out.add_(d_block.sum(0))
                dh = gate_backward_(dz, s_block, out=dh_block[:n])
                torch.sum(dh.view(f1 - f0, spf, g2), dim=1, out=d_cond[f0:f1])
                d_w1_t.addmm_(dh.t(), x_in[r0:r1])
                if last:
                    torch.mm(dh, w1_t, out=dx[r0:r1])
                else:
                    dx[r0:r1].addmm_(dh, w1_t)
                for lo, hi in _shifted_rows(r0, r1, samples, d):
                    d_w0_t.addmm_(dh[lo - r0 : hi - r0].t(), x_in[lo - d : hi - d])
                    dx[lo - d : hi - d].addmm_(dh[lo - r0 : hi - r0], w0_t)
            grads[3 * i : 3 * i + 3] = [torch.stack([d_w0_t, d_w1_t], dim=-1), d_w_out_t[:, :, None], d_b_out]
        d_conds = d_cond_rows.transpose(0, 1).reshape(batch, frames, layers * g2)
        return (dx.view(batch, samples, res), d_conds, None, *grads)


class WaveNet(nn.Module):
    """Conditional WaveNet over ``quantization_channels`` mu-law classes.

    Each layer: a dilated causal convolution of kernel 2 producing both gate halves at once
    (``2 * gate_channels``), plus the layer's projection of the condition, then ``tanh(a) * sigmoid(b)``,
    then one 1x1 convolution producing the residual and the skip contribution together (the last layer
    only has a skip output). The head: ReLU → 1x1 → ReLU → 1x1 to class logits.

    The condition arrives at the frame rate ``(batch, frames, cond_channels)``; all layers' projections
    are computed there in one product and broadcast over the ``samples_per_frame`` samples of each frame
    (the same as repeating the frames, without materialising the repeat).

    Parameters keep the reference modules' layout (``nn.Conv1d`` per layer), so checkpoints hold the
    plain WaveNet; :class:`GatedResidualStack` takes them as they are (rearranging them through autograd
    would cost every step time for nothing; docs/performance.md).
    """

    def __init__(self, quantization_channels: int = 256, residual_channels: int = 256, gate_channels: int = 368,
                 skip_channels: int = 256, output_channels: int = 256, dilations: Sequence[int] = (1,),
                 cond_channels: int = 128):
        super().__init__()
        self.quantization_channels = quantization_channels
        self.residual_channels = residual_channels
        self.gate_channels = gate_channels
        self.skip_channels = skip_channels
        self.dilations = list(dilations)
        num = len(self.dilations)
        self.embed = nn.Embedding(quantization_channels, residual_channels)
        self.gate_convs = nn.ModuleList(
            nn.Conv1d(residual_channels, 2 * gate_channels, 2, dilation=d) for d in self.dilations
        )
        self.cond_proj = nn.Conv1d(cond_channels, num * 2 * gate_channels, 1)
        self.out_convs = nn.ModuleList(
            nn.Conv1d(gate_channels, (residual_channels if i < num - 1 else 0) + skip_channels, 1) for i in range(num)
        )
        self.head_hidden = nn.Linear(skip_channels, output_channels)
        self.head_out = nn.Linear(output_channels, quantization_channels)

    @property
    def receptive_field(self) -> int:
        """Samples of the past one output depends on (through the dilated stack), plus the current one."""
        return sum(self.dilations) + 1

    def head(self, skip: torch.Tensor) -> torch.Tensor:
        """Skip sum ``(..., skip_channels)`` → logits ``(..., quantization_channels)``."""
        return self.head_out(F.relu(self.head_hidden(F.relu(skip))))

    def layer_conditions(self, cond: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, cond_channels)`` → every layer's condition ``(batch, frames, L * 2G)``, with
        the gate biases."""
        bias = self.cond_proj.bias + torch.cat([conv.bias for conv in self.gate_convs])
        return F.linear(cond, self.cond_proj.weight[:, :, 0], bias)

    def stack_weights(self) -> list[torch.Tensor]:
        """Per layer ``W0 (R, 2G), W1 (R, 2G), Wout (G, R + K), bout``: the taps of ``x[t-d]`` and
        ``x[t]`` and the output projection, transposed for row-major products (for generation)."""
        weights = []
        for gate_conv, out_conv in zip(self.gate_convs, self.out_convs):
            taps = gate_conv.weight.permute(2, 1, 0)  # (2, R, 2G)
            w_out = out_conv.weight[:, :, 0].t()  # (G, R + K)
            weights += [taps[0].contiguous(), taps[1].contiguous(), w_out.contiguous(), out_conv.bias]
        return weights

    def forward(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Teacher-forced pass.

        Args:
            inputs: ``(batch, samples)`` long classes of the *previous* sample at each position (the
                caller shifts the targets right by one), ``samples = frames * samples_per_frame``.
            cond: ``(batch, frames, cond_channels)`` condition at the frame rate.
        Returns:
            ``(batch, samples, skip_channels)`` skip sums; apply :meth:`head` at the positions you need.
        """
        samples, frames = inputs.shape[1], cond.shape[1]
        if samples % frames:
            raise ValueError(f"WaveNet: {samples} samples are not a whole number of the {frames} condition frames")
        x = self.embed(inputs)  # (B, S, R)
        conds = self.layer_conditions(cond)  # (B, F, L*2G)
        weights = [w for gate, out in zip(self.gate_convs, self.out_convs) for w in (gate.weight, out.weight, out.bias)]
        device = x.device.type
        if torch.is_autocast_enabled(device):
            # Mixed precision: the products run in the autocast dtype; the function itself sees no autocast.
            dtype = torch.get_autocast_dtype(device)
            x, conds, weights = x.to(dtype), conds.to(dtype), [w.to(dtype) for w in weights]
            with torch.autocast(device, enabled=False):
                return GatedResidualStack.apply(x, conds, tuple(self.dilations), *weights)
        conds = conds.to(x.dtype)
        return GatedResidualStack.apply(x, conds, tuple(self.dilations), *weights)

    # ------------------------------------------------------------------------------------------
    # Incremental generation

    def init_cache(self, cond: torch.Tensor, samples_per_frame: int) -> "WaveNetCache":
        """A cache for generating from ``cond`` ``(batch, frames, cond_channels)``, each frame lasting
        ``samples_per_frame`` samples."""
        return WaveNetCache(self, cond, samples_per_frame)

    def step(self, prev: torch.Tensor, cache: "WaveNetCache") -> torch.Tensor:
        """One sample: ``prev`` ``(batch,)`` long class of the previous sample → logits ``(batch, classes)``
        for the sample at ``cache.position``; advances the cache."""
        return cache.step(prev)


def plain_wavenet_stack(wavenet: WaveNet, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The textbook formulation of :meth:`WaveNet.forward` over the same parameters, channels first:
    ``conv1d`` over a left-padded input per layer, ``tanh · sigmoid`` of it plus the repeated condition,
    residual and skip from one 1x1 ``conv1d``, autograd for the backward. The reference the fused stack
    is tested against (``tests/test_wavenet_modules.py``) and benchmarked against (``bench/run.py``).
    Returns the skip sums ``(batch, samples, skip_channels)``."""
    spf = inputs.shape[1] // cond.shape[1]
    conds = wavenet.cond_proj(cond.transpose(1, 2)).repeat_interleave(spf, dim=-1)  # (B, L*2G, S)
    x = wavenet.embed(inputs).transpose(1, 2)  # (B, R, S)
    g, skip, layers = wavenet.gate_channels, 0, len(wavenet.dilations)
    for i, (d, gate_conv, out_conv) in enumerate(zip(wavenet.dilations, wavenet.gate_convs, wavenet.out_convs)):
        h = gate_conv(F.pad(x, (d, 0))) + conds[:, 2 * g * i : 2 * g * (i + 1)]
        out = out_conv(torch.tanh(h[:, :g]) * torch.sigmoid(h[:, g:]))
        if i < layers - 1:
            x = x + out[:, : wavenet.residual_channels]
        skip = skip + out[:, -wavenet.skip_channels :]
    return skip.transpose(1, 2)


class WaveNetCache:
    """State of incremental generation for :meth:`WaveNet.step`: per-layer ring buffers of past layer
    inputs and the weights rearranged for one sample at a time.

    Layer ``i`` with dilation ``d`` keeps its last ``d`` inputs in a ``(d, batch, R)`` buffer; slot
    ``t % d`` holds the input at time ``t - d`` until step ``t`` overwrites it with the input at time
    ``t``. The ``x[t-d] @ W0`` halves of the gates do not depend on the current sample: at every
    multiple of the layer's block (the largest power of two dividing ``d`` and the frame length, at most
    64, so a block never straddles two frames) one product computes them, with the frame's condition,
    for the whole block. The first layer's input is an embedding row, so its two taps are table rows
    (``embedding @ W``). Gate outputs of all layers go into one row, with a constant 1 column per layer
    that carries the output biases, so the residual of each layer and the skip sum of all layers are one
    product each.

    At batch 1 a step is bound by reading the weights (at paper scale about the size of the L3 cache),
    and one core multiplying a vector by a layer's matrix streams it more slowly than two cores do. So
    the per-layer products split their reduction in :attr:`parts` halves, one ``bmm`` whose batch entries
    run on different cores, and add the halves (faster steps at batch 1: docs/performance.md). Every view
    a step touches is made here once.
    """

    def __init__(self, wavenet: WaveNet, cond: torch.Tensor, samples_per_frame: int):
        res, gate, skip = wavenet.residual_channels, wavenet.gate_channels, wavenet.skip_channels
        layers, g2, classes = len(wavenet.dilations), 2 * gate, wavenet.quantization_channels
        with torch.no_grad():
            self.conds = wavenet.layer_conditions(cond)  # (B, F, L*2G)
            weights = wavenet.stack_weights()  # per layer W0, W1 (R, 2G), Wout (G, R+K) or (G, K), bout
            embed = wavenet.embed.weight
            # First layer: rows of embedding @ W1 (+ the frame's condition, see step) and embedding @ W0,
            # with one zero row for the causal padding before t = d.
            self.table_now = embed @ weights[1]  # (Q, 2G)
            self.table_past = torch.cat([embed @ weights[0], embed.new_zeros(1, g2)])  # (Q + 1, 2G)
        w0, w1 = weights[0::4], weights[1::4]
        out_weights, out_biases = weights[2::4], weights[3::4]
        batch, dtype, device = cond.shape[0], self.conds.dtype, self.conds.device
        # Reduction halves: the residual width must split evenly; a layer's gate columns are padded
        # with zeros to a multiple of the parts.
        parts = self.parts = 2 if res % 2 == 0 else 1
        width = -(-(gate + 1) // parts) * parts  # [z (G), 1, zero padding]
        self.wavenet = wavenet
        self.dilations = wavenet.dilations
        self.samples_per_frame = samples_per_frame
        self.position = 0
        frame_block = samples_per_frame & -samples_per_frame  # largest power of two dividing it
        self.blocks = [min(d & -d, frame_block, 64) for d in self.dilations]
        self.buffers = [torch.zeros(d, batch, res, dtype=dtype, device=device) for d in self.dilations]
        # Blocks of past contributions and the weights of both taps, for the layers after the first
        # (index 0 is None: the first layer reads its tables); the x[t] taps as (parts, R / parts, 2G).
        self.past = [None] + [torch.zeros(n, batch, g2, dtype=dtype, device=device) for n in self.blocks[1:]]
        self.w0 = [None] + w0[1:]
        self.w1_parts = [None] + [w.view(parts, res // parts, g2) for w in w1[1:]]
        # Classes fed to the first layer over its last d steps (index Q: before the start, zero input).
        self.past_classes = torch.full((self.dilations[0], batch), classes, dtype=torch.long, device=device)
        # table_now + the current frame's condition, one (Q, 2G) table per utterance, flattened; row
        # b * Q + class is utterance b's.
        self.frame_table = None
        self.table_offsets = torch.arange(batch, device=device) * classes
        # Gate outputs (B, L * width): layer i writes columns [i width, i width + G), then a 1, then zeros.
        gate_in = torch.zeros(batch, layers, width, dtype=dtype, device=device)
        gate_in[:, :, gate] = 1.0
        self.gates = gate_in.view(batch, layers * width)

        def padded(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (G, n), (n,) -> (width, n)
            return torch.cat([w, b[None], w.new_zeros(width - gate - 1, w.shape[1])])

        # Residual weights as (parts, width / parts, R); skip weights of all layers (K, L * width): the
        # long reduction streams faster in this layout than in the transposed one.
        self.w_res_parts = [padded(w[:, :res], b[:res]).view(parts, width // parts, res)
                            for w, b in zip(out_weights[:-1], out_biases)]
        self.w_skip_t = torch.cat([padded(w[:, -skip:], b[-skip:]) for w, b in zip(out_weights, out_biases)]).t().contiguous()
        # Views made once: buffer slots (whole and as reduction parts), rows of the blocks of past
        # contributions, gate columns, the parts of the products.
        self.slots = [list(buffer.unbind(0)) for buffer in self.buffers]
        self.slot_parts = [[slot.view(batch, parts, -1).transpose(0, 1) for slot in slots] for slots in self.slots]
        self.past_rows = [None] + [list(past.unbind(0)) for past in self.past[1:]]
        self.gate_out = list(gate_in[:, :, :gate].unbind(1))
        self.gate_parts = [g.view(batch, parts, width // parts).transpose(0, 1) for g in gate_in.unbind(1)]
        self.h = torch.empty(batch, g2, dtype=dtype, device=device)
        self.h_a = self.h[:, :gate]
        self.h_past = torch.empty(batch, g2, dtype=dtype, device=device)
        self.h_stack = torch.empty(parts, batch, g2, dtype=dtype, device=device)
        self.res_stack = torch.empty(parts, batch, res, dtype=dtype, device=device)
        self.h_parts, self.res_parts = list(self.h_stack.unbind(0)), list(self.res_stack.unbind(0))

    @torch.no_grad()
    def step(self, prev: torch.Tensor) -> torch.Tensor:
        """``prev`` ``(batch,)`` → logits ``(batch, classes)`` for the sample at :attr:`position`."""
        t, g2, layers = self.position, self.h.shape[1], len(self.dilations)
        frame = min(t // self.samples_per_frame, self.conds.shape[1] - 1)
        if t % self.samples_per_frame == 0 or self.frame_table is None:
            self.frame_table = (self.table_now[None] + self.conds[:, frame, None, :g2]).flatten(0, 1)  # (B*Q, 2G)
        # Blocks of past contributions that start now, computed before this step overwrites any slot.
        for i in range(1, layers):
            d, n = self.dilations[i], self.blocks[i]
            if t % n == 0:
                slot, past = t % d, self.past[i]
                torch.mm(self.buffers[i][slot : slot + n].flatten(0, 1), self.w0[i], out=past.view(-1, g2))
                past.add_(self.conds[:, frame, i * g2 : (i + 1) * g2])
        # First layer: two table rows; its input (the embedding) goes to the slot the residual reads.
        d0 = self.dilations[0]
        classes = self.past_classes[t % d0]
        x = torch.index_select(self.wavenet.embed.weight, 0, prev, out=self.slots[0][t % d0])
        torch.index_select(self.frame_table, 0, prev + self.table_offsets, out=self.h)
        self.h.add_(torch.index_select(self.table_past, 0, classes, out=self.h_past))
        classes.copy_(prev)
        h_parts, res_parts = self.h_parts, self.res_parts
        for i in range(layers):
            if i:
                torch.bmm(self.slot_parts[i][t % self.dilations[i]], self.w1_parts[i], out=self.h_stack)
                torch.add(self.past_rows[i][t % self.blocks[i]], h_parts[0], out=self.h)
                for part in h_parts[1:]:
                    self.h.add_(part)
            # tanh(a) · σ(b) in two calls: at a few rows per step the call count, not tanh's element
            # rate (see gate_), is what costs.
            self.h_a.tanh_()
            torch.ops.aten.glu.out(self.h, -1, out=self.gate_out[i])
            if i < layers - 1:
                # The next layer's input goes straight into its ring buffer slot.
                torch.bmm(self.gate_parts[i], self.w_res_parts[i], out=self.res_stack)
                x = torch.add(x, res_parts[0], out=self.slots[i + 1][t % self.dilations[i + 1]])
                for part in res_parts[1:]:
                    x.add_(part)
        self.position += 1
        if self.gates.shape[0] == 1:
            skip = torch.mv(self.w_skip_t, self.gates[0])[None]
        else:
            skip = F.linear(self.gates, self.w_skip_t)
        return self.wavenet.head(skip)
