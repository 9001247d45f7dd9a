"""OMGD's deep teachers (Ren et al., 2021), key for key with bytedance/OMGD, where they differ from pix2pix.

- ``unet_deepest_256`` (``UnetDeepestGenerator``): the pix2pix U-Net with two expansion residual blocks
  after every downsampling and after every upsampling (the outermost level's up-blocks work on the
  concatenated ``2*ngf`` channels). OMGD's pix2pix "wider/deeper" teacher.
- ``mobile_resnet_deepest`` (``MobileResnetDeepestGenerator``, OMGD's ``mobile_deepest_resnet``): the
  mobile ResNet with an expansion residual block and a 3x3 conv after each down/upsampler and two
  expansion blocks between the two halves of the nine separable blocks.

Both default to ngf 16, the width OMGD trains them at (``--teacher_ngf_d 16``; at ngf 64 the deepest
U-Net would have 706 M parameters). The expansion block is OMGD's ``ResnetBlock`` / ``ExpansionResnetBlock``: reflection pad 1, 1x1 conv to
4x, norm, ReLU, 3x3 conv (no padding), norm, ReLU, 1x1 conv back, norm, ReLU, dropout, pad, 3x3 conv,
norm, added to the input. OMGD's students are slimgan's ``unet_256`` and ``mobile_resnet_9blocks``
(same keys, same eval-mode forward); its ResNet teacher loads as ``resnet_9blocks`` with
``use_dropout=True`` (OMGD always inserts the dropout layer, at rate 0; its input clamp to [-1, 1] is a
no-op on the images slimgan feeds).
"""

from __future__ import annotations

import torch
from torch import nn

from distill.models.mobile_resnet_generator import MobileResnetBlock
from distill.models.norm import get_norm_layer, uses_bias
from distill.registry import register_model


class ExpansionResnetBlock(nn.Module):
    """x + [pad1, 1x1 -> 4d, n, relu, 3x3, n, relu, 1x1 -> d, n, relu, dropout, pad1, 3x3, n](x)."""

    def __init__(self, dim: int, norm: str, dropout_rate: float = 0.0):
        super().__init__()
        n = get_norm_layer(norm)
        b = uses_bias(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, 4 * dim, 1, bias=b), n(4 * dim), nn.ReLU(True),
            nn.Conv2d(4 * dim, 4 * dim, 3, bias=b), n(4 * dim), nn.ReLU(True),
            nn.Conv2d(4 * dim, dim, 1, bias=b), n(dim), nn.ReLU(True),
            nn.Dropout(dropout_rate),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=b), n(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class UnetDeepestBlock(nn.Module):
    """OMGD ``UnetSkipConnectionBlock`` of the deepest U-Net."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout_rate: float = 0.0):
        super().__init__()
        self.outermost = outermost
        n = get_norm_layer(norm)
        b = uses_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=b)
        if outermost:
            layers = [downconv, ExpansionResnetBlock(inner_nc, norm, dropout_rate), ExpansionResnetBlock(inner_nc, norm, dropout_rate),
                      submodule,
                      ExpansionResnetBlock(2 * inner_nc, norm, dropout_rate), ExpansionResnetBlock(2 * inner_nc, norm, dropout_rate),
                      nn.ReLU(True), nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True),
                      nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=b), n(outer_nc)]
        else:
            layers = [nn.LeakyReLU(0.2, True), downconv, n(inner_nc),
                      ExpansionResnetBlock(inner_nc, norm, dropout_rate), ExpansionResnetBlock(inner_nc, norm, dropout_rate),
                      submodule,
                      nn.ReLU(True), nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, stride=2, padding=1, bias=b), n(outer_nc),
                      ExpansionResnetBlock(outer_nc, norm, dropout_rate), ExpansionResnetBlock(outer_nc, norm, dropout_rate),
                      nn.Dropout(dropout_rate)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetDeepestGenerator(nn.Module):
    """(B, input_nc, H, W) -> (B, output_nc, H, W); H, W multiples of 2**num_downs."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64, norm: str = "batch",
                 dropout_rate: float = 0.0):
        super().__init__()
        # The reference passes dropout_rate only to the ngf*8 middle levels; the others get its default 0.
        block = UnetDeepestBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetDeepestBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout_rate=dropout_rate)
        block = UnetDeepestBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetDeepestBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetDeepestBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetDeepestBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MobileResnetDeepestGenerator(nn.Module):
    """(B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W); H, W multiples of 4."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "instance", dropout_rate: float = 0.0,
                 n_blocks: int = 9):
        super().__init__()
        n = get_norm_layer(norm)
        b = uses_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=b), n(ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2 ** (i + 1)
            layers += [nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=b), n(c), nn.ReLU(True),
                       ExpansionResnetBlock(c, norm, dropout_rate), nn.Conv2d(c, c, 3, padding=1, bias=b), n(c), nn.ReLU(True)]
        dim = 4 * ngf
        first = n_blocks // 2
        layers += [MobileResnetBlock(dim, norm, dropout_rate) for _ in range(first)]
        layers += [ExpansionResnetBlock(dim, norm, dropout_rate) for _ in range(2)]
        layers += [MobileResnetBlock(dim, norm, dropout_rate) for _ in range(n_blocks - first)]
        for i in range(2):
            c = ngf * 2 ** (1 - i)
            layers += [nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1, bias=b), n(c), nn.ReLU(True),
                       ExpansionResnetBlock(c, norm, dropout_rate), nn.Conv2d(c, c, 3, padding=1, bias=b), n(c), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model(
    "unet_deepest_256", family="unet_deepest", role="generator", task="translate", input_kind="image", size_multiple=256,
    reference="OMGD models/modules/unet_architecture/unet_deepest_generator.py UnetDeepestGenerator",
)
def unet_deepest_256(input_nc: int = 3, output_nc: int = 3, ngf: int = 16, norm: str = "batch", dropout_rate: float = 0.0) -> UnetDeepestGenerator:
    return UnetDeepestGenerator(input_nc, output_nc, 8, ngf, norm, dropout_rate)


@register_model(
    "mobile_resnet_deepest", family="mobile_resnet_deepest", role="generator", task="translate", input_kind="image", size_multiple=4,
    reference="OMGD models/modules/resnet_architecture/mobile_resnet_deepest_generator.py MobileResnetDeepestGenerator",
)
def mobile_resnet_deepest(input_nc: int = 3, output_nc: int = 3, ngf: int = 16, norm: str = "instance",
                          dropout_rate: float = 0.0) -> MobileResnetDeepestGenerator:
    return MobileResnetDeepestGenerator(input_nc, output_nc, ngf, norm, dropout_rate, n_blocks=9)
