"""StyleGAN2 generator and discriminator (Karras et al. 2020), in rosinality/stylegan2-pytorch's layout.

Generator: z (B, nz) -> PixelNorm -> ``n_mlp`` equalised-lr linear layers (lr multiplier 0.01) -> w;
the truncation trick ``w' = w̄ + ψ (w - w̄)`` with a tracked mean ``mean_w``; a learned 4x4 constant;
per layer a modulated-demodulated 3x3 convolution (the first of each resolution up-sampling by a
transposed convolution and a [1, 3, 3, 1] FIR blur), a per-pixel noise input and a scaled leaky ReLU;
skip-style toRGB outputs summed through FIR up-sampling.

State-dict keys follow rosinality's model.py (``style.1.weight``, ``input.input``, ``conv1.conv.weight``,
``conv1.conv.modulation.weight``, ``conv1.noise.weight``, ``conv1.activate.bias``, ``to_rgb1``,
``convs.N``, ``to_rgbs.N``, ``noises.noise_N``, the FIR ``kernel`` buffers), so a rosinality
``g_ema`` state dict loads with :func:`load_rosinality_state_dict` (which fills ``mean_w``).

``channels`` is the widest layer (512 in the official configurations) and the argument a student
shrinks; a resolution r gets ``min(channels, channels * channel_multiplier * 32 // r)`` channels
(exactly rosinality's table for ``channels=512``). ``w_dim`` defaults to ``channels`` (512 officially)
so a narrower student also has a narrower mapping network; ``nz`` stays fixed so teacher and student
read the same latents. Official 256 px: ``image_size=256, channels=512, nz=512, n_mlp=8,
channel_multiplier=2``; tiny CPU configurations: ``image_size=32, channels=32..64, n_mlp=2..4``.

Modulation is applied to activations, not weights (``conv(x ⊙ s) ⊙ d`` with ``d`` the demodulation
coefficients), which is the same arithmetic as rosinality's fused grouped convolution (its
``fused=False`` path) and exports to ONNX with a dynamic batch.

Noise: ``noise=None`` draws fresh noise in training mode and uses the stored ``noises.noise_N``
buffers in eval mode, so evaluation, export and serving are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.registry import register_model

BLUR_KERNEL = (1.0, 3.0, 3.0, 1.0)
REFERENCE = "Karras et al. 2020 (StyleGAN2); key layout of rosinality/stylegan2-pytorch model.py"


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """Separable FIR kernel: outer product of ``k`` with itself, normalised to sum 1."""
    t = torch.tensor(list(k), dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def depthwise_kernel(kernel: torch.Tensor, channels: int, flip: bool) -> torch.Tensor:
    """The FIR kernel as a (C, 1, k, k) depthwise weight (flipped for a correlation, as upfirdn2d convolves)."""
    k = torch.flip(kernel, [0, 1]) if flip else kernel
    return k.reshape(1, 1, *k.shape).repeat(channels, 1, 1, 1).contiguous()


def blur(x: torch.Tensor, weight: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """upfirdn2d with up = down = 1: pad, then every channel convolved with the FIR kernel."""
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, weight.to(x.dtype), groups=weight.shape[0])


def upsample_fir(x: torch.Tensor, weight: torch.Tensor, pad0: int) -> torch.Tensor:
    """upfirdn2d with up = 2: zero insertion + pad + FIR, as one depthwise transposed convolution.

    ``out[n] = Σ_i x[i]·k[n + P - 2i]`` with ``P = K - 1 - pad0`` is upfirdn2d's
    ``Σ_i x[i]·flip(k)[2i + pad0 - n]``; so the (scaled) kernel is used unflipped.
    """
    return F.conv_transpose2d(x, weight.to(x.dtype), stride=2, padding=weight.shape[-1] - 1 - pad0,
                              groups=weight.shape[0])


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, scale: float = 2**0.5) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), slope) * scale


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU (0.2) times √2 (keys: ``bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: ``W·(lr_mul/√in)``, bias ``b·lr_mul``."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_dim), lr_mul, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate (``W/√(in·k²)``)."""

    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(in_ch * k * k), stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Blur(nn.Module):
    """FIR blur (keys: ``kernel``, as rosinality; the per-channel weight derived from it is not stored)."""

    def __init__(self, pad: tuple[int, int], channels: int, upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(BLUR_KERNEL) * upsample_factor**2)
        self.register_buffer("weight", depthwise_kernel(self.kernel, channels, flip=True), persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur(x, self.weight, self.pad)


class Upsample(nn.Module):
    """×2 FIR up-sampling of the toRGB skip (keys: ``kernel``)."""

    def __init__(self, channels: int, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(BLUR_KERNEL) * factor**2)
        self.register_buffer("weight", depthwise_kernel(self.kernel, channels, flip=False), persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad0 = (p + 1) // 2 + factor - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, 2H, 2W)
        return upsample_fir(x, self.weight, self.pad0)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution (Eq. 1-3): ``w'_ijk = s_i·w_ijk``, ``w''_ijk = w'_ijk / √(Σ w'² + ε)``.

    Computed as ``conv(x ⊙ s, w)·d_j`` with ``d_j = (Σ_ik (w_ijk s_i)² + ε)^-½``, which equals the
    per-sample modulated weights exactly. ``weight``: (1, out, in, k, k) as rosinality stores it.
    """

    def __init__(self, in_ch: int, out_ch: int, k: int, w_dim: int, demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.in_ch, self.out_ch, self.k = in_ch, out_ch, k
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1 / math.sqrt(in_ch * k * k)
        self.padding = k // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, k, k))
        self.modulation = EqualLinear(w_dim, in_ch, bias_init=1.0)
        if upsample:
            p = (len(BLUR_KERNEL) - 2) - (k - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), out_ch, upsample_factor=2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # (B, in, H, W), (B, w_dim)
        batch = x.shape[0]
        style = self.modulation(w)  # (B, in)
        weight = self.weight[0] * self.scale  # (out, in, k, k)
        x = x * style.reshape(batch, self.in_ch, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))  # (B, out, 2H, 2W)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # Σ_ik (w_ijk s_i)² = (Σ_k w_ijk²) @ s_i²: (B, in) x (in, out) -> (B, out)
            dcoefs = torch.rsqrt(style.square() @ weight.square().sum((2, 3)).transpose(0, 1) + 1e-8)
            out = out * dcoefs.reshape(batch, self.out_ch, 1, 1)
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # any (B, ...) tensor -> (B, C, 4, 4)
        return self.input.repeat(x.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, k: int, w_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, k, w_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, w_dim: int, nc: int = 3, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample(nc)
        self.conv = ModulatedConv2d(in_ch, nc, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, nc, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def _log_size(image_size: int) -> int:
    log_size = int(math.log2(image_size)) if image_size > 0 else -1
    if log_size < 3 or 2**log_size != image_size:
        raise ConfigError(f"stylegan2 image_size must be a power of two >= 8, got {image_size}")
    return log_size


def resolution_channels(channels: int, channel_multiplier: int, resolution: int) -> int:
    """Width at ``resolution``: rosinality's table (512 up to 32 px, then 256·cm, 128·cm, ...) scaled by channels/512."""
    return max(1, min(channels, channels * channel_multiplier * 32 // resolution))


class StyleGAN2Generator(nn.Module):
    """z (B, nz) ~ N(0, 1) -> image (B, nc, S, S), roughly in [-1, 1] (no output squashing, as StyleGAN2).

    ``forward(z, truncation=1.0, noise=None)``; ``truncation`` is ψ (a float or a (B, 1) tensor).
    For mixing regularisation call ``synthesis(ws)`` with per-layer ``ws`` (B, n_latent, w_dim).
    """

    def __init__(self, image_size: int = 256, channels: int = 512, nz: int = 512, w_dim: int | None = None,
                 n_mlp: int = 8, channel_multiplier: int = 2, nc: int = 3, lr_mlp: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.log_size = _log_size(image_size)
        w_dim = int(w_dim or channels)
        self.image_size, self.nz, self.w_dim, self.nc = image_size, nz, w_dim, nc
        self.w_avg_beta = w_avg_beta
        layers: list[nn.Module] = [PixelNorm()]
        for i in range(n_mlp):
            layers.append(EqualLinear(nz if i == 0 else w_dim, w_dim, lr_mul=lr_mlp, activation=True))
        self.style = nn.Sequential(*layers)
        ch = {2**r: resolution_channels(channels, channel_multiplier, 2**r) for r in range(2, self.log_size + 1)}
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, w_dim)
        self.to_rgb1 = ToRGB(ch[4], w_dim, nc, upsample=False)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = (i + 5) // 2
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, 2**res, 2**res))
        in_ch = ch[4]
        for r in range(3, self.log_size + 1):
            out_ch = ch[2**r]
            self.convs.append(StyledConv(in_ch, out_ch, 3, w_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, w_dim))
            self.to_rgbs.append(ToRGB(out_ch, w_dim, nc))
            in_ch = out_ch
        self.n_latent = self.log_size * 2 - 2
        # w̄ for the truncation trick, tracked as official StyleGAN2 does (w_avg, β = 0.995) in training mode
        self.register_buffer("mean_w", torch.zeros(w_dim))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:  # (B, nz) -> (B, w_dim)
        w = self.style(z)
        if self.training and self.w_avg_beta < 1:
            with torch.no_grad():
                self.mean_w.copy_(torch.lerp(w.detach().mean(0), self.mean_w, self.w_avg_beta))
        return w

    def truncate(self, w: torch.Tensor, truncation: float | torch.Tensor) -> torch.Tensor:
        """``w̄ + ψ (w - w̄)``; ψ a float or a (B, 1) tensor (one ψ per sample)."""
        if isinstance(truncation, int | float) and truncation == 1:
            return w
        return self.mean_w + truncation * (w - self.mean_w)

    def fixed_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh per-layer noise (B, 1, r, r), e.g. to feed a teacher and a student the same noise."""
        dev = self.mean_w.device
        return [torch.randn(batch, 1, *n.shape[2:], device=dev, generator=generator) for n in self.fixed_noise()]

    def synthesis(self, ws: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """ws (B, n_latent, w_dim) or (B, w_dim) -> image (B, nc, S, S)."""
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, self.n_latent, -1)
        if noise is None:
            noise = [None] * self.num_layers if self.training else self.fixed_noise()
        out = self.conv1(self.input(ws), ws[:, 0], noise[0])
        skip = self.to_rgb1(out, ws[:, 1])
        i = 1
        for conv_up, conv, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                 self.to_rgbs, strict=True):
            out = conv_up(out, ws[:, i], n1)
            out = conv(out, ws[:, i + 1], n2)
            skip = to_rgb(out, ws[:, i + 2], skip)
            i += 2
        return skip

    def forward(self, z: torch.Tensor, truncation: float | torch.Tensor = 1.0,
                noise: Sequence[torch.Tensor | None] | None = None, mix_z: torch.Tensor | None = None,
                mix_cutoff: int | None = None) -> torch.Tensor:  # (B, nz) -> (B, nc, S, S)
        """``mix_z`` with ``mix_cutoff``: style mixing, layers from ``mix_cutoff`` on take ``mix_z``'s w."""
        w = self.truncate(self.mapping(z), truncation)
        if mix_z is None:
            return self.synthesis(w, noise)
        w2 = self.truncate(self.mapping(mix_z), truncation)
        cut = self.n_latent // 2 if mix_cutoff is None else int(mix_cutoff)
        ws = torch.cat([w.unsqueeze(1).expand(-1, cut, -1), w2.unsqueeze(1).expand(-1, self.n_latent - cut, -1)], 1)
        return self.synthesis(ws, noise)


class ConvLayer(nn.Sequential):
    """[blur] -> equalised conv (stride 2 when down-sampling) -> [bias + leaky ReLU]; rosinality keys."""

    def __init__(self, in_ch: int, out_ch: int, k: int, downsample: bool = False, bias: bool = True,
                 activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (k - 1)
            layers.append(Blur(((p + 1) // 2, p // 2), in_ch))
            stride, padding = 2, 0
        else:
            stride, padding = 1, k // 2
        layers.append(EqualConv2d(in_ch, out_ch, k, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class StyleGAN2Discriminator(nn.Module):
    """image (B, nc, S, S) -> logits (B,): fromRGB, residual down-sampling blocks to 4x4, minibatch
    standard deviation (group 4, 1 feature), 3x3 conv, two equalised linear layers."""

    def __init__(self, image_size: int = 256, channels: int = 512, channel_multiplier: int = 2, nc: int = 3,
                 stddev_group: int = 4):
        super().__init__()
        log_size = _log_size(image_size)
        ch = {2**r: resolution_channels(channels, channel_multiplier, 2**r) for r in range(2, log_size + 1)}
        convs: list[nn.Module] = [ConvLayer(nc, ch[image_size], 1)]
        in_ch = ch[image_size]
        for r in range(log_size, 2, -1):
            convs.append(ResBlock(in_ch, ch[2 ** (r - 1)]))
            in_ch = ch[2 ** (r - 1)]
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = stddev_group, 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 4 * 4, ch[4], activation=True), EqualLinear(ch[4], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)  # (B, C, 4, 4)
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        if b % group:
            group = 1
        std = out.view(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)  # (B/g, 1, 1, 1)
        std = std.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, std], 1))
        return self.final_linear(out.flatten(1)).flatten()


def pruning_rules() -> dict[type, Callable]:
    """How ``slimgan prune`` follows channels through StyleGAN2's own layers: the tracer cannot see inside
    the modulated convolution (it builds per-sample weights), the equalised-LR layers or the fused bias-act."""
    from distill.prune import ChannelTracer, linear_like  # only needed when pruning

    def _equal(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        linear_like(tr, p, m, inputs[0], out)

    def _modconv(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        x_labels, w_labels = tr.labels(inputs[0]), tr.labels(inputs[1])
        tr.couple(p + "weight", 2, x_labels)  # (1, out, in, k, k)
        tr.couple(p + "modulation.weight", 0, x_labels)  # the style scales each input channel
        tr.couple(p + "modulation.bias", 0, x_labels)
        tr.couple(p + "modulation.weight", 1, w_labels)
        tr.track(out, tr.member(p + "weight", 1, out=True), 1)

    def _bias_act(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        labels = tr.labels(inputs[0])
        tr.couple(p + "bias", 0, labels, out=True)
        if labels is not None:
            tr.track(out, labels, 1)

    def _passthrough(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        labels = tr.labels(inputs[0])
        if labels is not None:
            tr.track(out, labels, 1)

    def _constant(tr: ChannelTracer, p: str, m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        tr.track(out, tr.member(p + "input", 1, out=True), 1)

    return {EqualLinear: _equal, EqualConv2d: _equal, ModulatedConv2d: _modconv, FusedLeakyReLU: _bias_act,
            NoiseInjection: _passthrough, Blur: _passthrough, Upsample: _passthrough, ConstantInput: _constant}


@register_model(
    "stylegan2", family="stylegan2", role="generator", task="generate", input_kind="latent",
    width_arg="channels", reference=REFERENCE,
    # traced through the truncation trick too, so its tracked mean w is pruned with the mapping output
    pruning={"rules": pruning_rules, "forward_kwargs": {"truncation": 0.5}},
)
def stylegan2(image_size: int = 256, channels: int = 512, nz: int = 512, w_dim: int | None = None, n_mlp: int = 8,
              channel_multiplier: int = 2, nc: int = 3) -> StyleGAN2Generator:
    return StyleGAN2Generator(image_size, channels, nz, w_dim, n_mlp, channel_multiplier, nc)


@register_model(
    "stylegan2_discriminator", family="stylegan2", role="discriminator", task="discriminate", input_kind="image",
    width_arg="channels", reference=REFERENCE, pruning={"rules": pruning_rules},
)
def stylegan2_discriminator(image_size: int = 256, channels: int = 512, channel_multiplier: int = 2,
                            nc: int = 3) -> StyleGAN2Discriminator:
    return StyleGAN2Discriminator(image_size, channels, channel_multiplier, nc)


@torch.no_grad()
def estimate_mean_w(generator: StyleGAN2Generator, num: int = 4096, seed: int = 0) -> torch.Tensor:
    """w̄ = mean of the mapping network over ``num`` latents (rosinality's ``mean_latent``)."""
    z = torch.randn(num, generator.nz, generator=torch.Generator().manual_seed(seed)).to(generator.mean_w.device)
    return generator.style(z).mean(0)


def load_rosinality_state_dict(generator: StyleGAN2Generator, state: Mapping[str, torch.Tensor],
                               mean_w_samples: int = 4096) -> StyleGAN2Generator:
    """Load a rosinality ``Generator`` state dict (e.g. ``ckpt["g_ema"]``); ``mean_w`` is estimated when absent."""
    from distill.checkpoint import load_state_dict_checked

    state = dict(state)
    estimate = "mean_w" not in state
    if estimate:
        state["mean_w"] = generator.mean_w.detach().clone()
    load_state_dict_checked(generator, state, source="rosinality state dict")
    if estimate:
        generator.mean_w.copy_(estimate_mean_w(generator, mean_w_samples))
    return generator


def read_rosinality_checkpoint(path: str, key: str = "g_ema") -> dict[str, torch.Tensor]:
    """The ``key`` state dict (``g_ema``, ``g`` or ``d``) of a rosinality ``train.py`` checkpoint.

    Read with ``weights_only=True``; its ``args`` entry is an ``argparse.Namespace``, the one non-tensor
    type allowed here. Anything else in the file is refused by the unpickler.
    """
    import argparse

    from distill.errors import CheckpointError

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler's refusal, in one line
        raise CheckpointError(f"{path} cannot be read as a weights-only rosinality checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc
    if not isinstance(ckpt, Mapping) or key not in ckpt:
        have = ", ".join(sorted(ckpt)) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{path} has no {key!r} entry (it has: {have})")
    return dict(ckpt[key])
