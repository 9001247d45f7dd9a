"""fast-neural-style's ``TransformerNet`` (Johnson et al. 2016), key for key with pytorch/examples.

Keys ``conv1.conv2d``, ``in1`` ... ``res1.conv1.conv2d``, ``res1.in1`` ... ``deconv3.conv2d``: reflection-
padded convs, affine InstanceNorm, five residual blocks, nearest x2 upsampling before the two
``UpsampleConvLayer`` s and no output activation. It works on RGB in [0, 255] (``ToTensor`` then
``mul(255)``) and its ``save_image`` clamps to [0, 255] and truncates to uint8; that convention travels
with an imported checkpoint. ``ngf`` is the first layer's width (the reference fixes it at 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.registry import register_model


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, upsample: int | None = None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """(B, 3, H, W) RGB in [0, 255] -> (B, 3, H, W) unbounded (clamped to [0, 255] when saved); H, W multiples of 4."""

    def __init__(self, ngf: int = 32):
        super().__init__()
        self.conv1 = ConvLayer(3, ngf, 9, 1)
        self.in1 = nn.InstanceNorm2d(ngf, affine=True)
        self.conv2 = ConvLayer(ngf, 2 * ngf, 3, 2)
        self.in2 = nn.InstanceNorm2d(2 * ngf, affine=True)
        self.conv3 = ConvLayer(2 * ngf, 4 * ngf, 3, 2)
        self.in3 = nn.InstanceNorm2d(4 * ngf, affine=True)
        for i in range(1, 6):
            setattr(self, f"res{i}", ResidualBlock(4 * ngf))
        self.deconv1 = ConvLayer(4 * ngf, 2 * ngf, 3, 1, upsample=2)
        self.in4 = nn.InstanceNorm2d(2 * ngf, affine=True)
        self.deconv2 = ConvLayer(2 * ngf, ngf, 3, 1, upsample=2)
        self.in5 = nn.InstanceNorm2d(ngf, affine=True)
        self.deconv3 = ConvLayer(ngf, 3, 9, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f"res{i}")(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


@register_model(
    "transformer_net", family="transformer_net", role="generator", task="translate", input_kind="image", size_multiple=4,
    value_range=(0.0, 255.0),
    reference="pytorch/examples fast_neural_style/neural_style/transformer_net.py TransformerNet",
)
def transformer_net(ngf: int = 32) -> TransformerNet:
    return TransformerNet(ngf)
