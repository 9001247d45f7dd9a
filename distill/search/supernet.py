"""The once-for-all supernet: one set of weights that every sub-network of a :class:`SearchSpace` slices.

As in GAN Compression, a narrower layer uses the first channels of the widest one, so the first
channels are trained by every sub-network. Genes beyond widths:

- depth: a sub-network with ``depth = k`` runs the first ``k`` residual blocks;
- block type: the separable and the dense blocks are two sets of weights (``blocks_separable``,
  ``blocks_dense``), each sliced by width;
- up-sampling: ``up{1,2}_deconv`` and ``up{1,2}_resize``, each sliced by width;
- norm: the convolutions are shared; ``batch`` uses the (sliced) affine parameters of the BatchNorm
  layers with batch statistics, ``instance`` normalises per image without parameters. A batch-norm
  sub-network's running statistics are not tracked in the supernet: :func:`distill.search.train.recalibrate`
  computes them for the extracted model (OFA's BN re-calibration).

The supernet is built from the same modules as the zoo model ``searchable_resnet`` at the largest
widths, so :meth:`Supernet.extract` copies each tensor by slicing its leading elements.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.models.searchable_resnet_generator import DownStage, SearchBlock, UpStage
from distill.registry import create_model
from distill.search.space import SearchSpace, to_kwargs

EPS = 1e-5


def _norm(bn: nn.BatchNorm2d, x: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "instance":
        return F.instance_norm(x, eps=EPS)
    c = x.shape[1]
    return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], training=True, eps=EPS)


def _conv(conv: nn.Conv2d, x: torch.Tensor, cout: int) -> torch.Tensor:
    cin = x.shape[1]
    if conv.groups > 1:  # depthwise: one filter per input channel
        bias = conv.bias[:cin] if conv.bias is not None else None
        return F.conv2d(x, conv.weight[:cin], bias, conv.stride, conv.padding, groups=cin)
    bias = conv.bias[:cout] if conv.bias is not None else None
    return F.conv2d(x, conv.weight[:cout, :cin], bias, conv.stride, conv.padding)


def _deconv(conv: nn.ConvTranspose2d, x: torch.Tensor, cout: int) -> torch.Tensor:
    bias = conv.bias[:cout] if conv.bias is not None else None
    return F.conv_transpose2d(x, conv.weight[: x.shape[1], :cout], bias, conv.stride, conv.padding, conv.output_padding)


def _any_conv(conv: nn.Module, x: torch.Tensor, cout: int, norm: str) -> torch.Tensor:
    """A plain conv, or a SepConv (depthwise -> norm -> pointwise) sliced to ``cout`` outputs."""
    if hasattr(conv, "dw"):
        return _conv(conv.pw, _norm(conv.norm, _conv(conv.dw, x, x.shape[1]), norm), cout)
    return _conv(conv, x, cout)


class Supernet(nn.Module):
    """(B, C, H, W) in [-1, 1] -> (B, C_out, H, W), for the sub-network given by ``genes``."""

    def __init__(self, space: SearchSpace, input_nc: int = 3, output_nc: int = 3):
        super().__init__()
        self.space = space
        self.input_nc, self.output_nc = input_nc, output_nc
        big = space.largest()
        inner, trunk = max(space.inner), big["trunk"]
        self.stem = DownStage(input_nc, big["stem"], 7, 1, "batch")
        self.down1 = DownStage(big["stem"], big["down"], 3, 2, "batch")
        self.down2 = DownStage(big["down"], trunk, 3, 2, "batch")
        for kind in space.block:
            blocks = nn.ModuleList(SearchBlock(trunk, inner, kind, "batch") for _ in range(space.max_depth))
            self.add_module(f"blocks_{kind}", blocks)
        for kind in space.upsample:
            self.add_module(f"up1_{kind}", UpStage(trunk, big["up1"], kind, "batch"))
            self.add_module(f"up2_{kind}", UpStage(big["up1"], big["up2"], kind, "batch"))
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(big["up2"], output_nc, 7), nn.Tanh())

    def _stage(self, stage: DownStage, x: torch.Tensor, cout: int, norm: str) -> torch.Tensor:
        return F.relu(_norm(stage.norm, _conv(stage.conv, stage.pad(x), cout), norm))

    def _up(self, stage: UpStage, x: torch.Tensor, cout: int, norm: str) -> torch.Tensor:
        if isinstance(stage.conv, nn.ConvTranspose2d):
            y = _deconv(stage.conv, x, cout)
        else:
            y = _conv(stage.conv, F.interpolate(x, scale_factor=2, mode="nearest"), cout)
        return F.relu(_norm(stage.norm, y, norm))

    def _block(self, block: SearchBlock, x: torch.Tensor, inner: int, norm: str) -> torch.Tensor:
        y = F.relu(_norm(block.norm1, _any_conv(block.conv1, block.pad1(x), inner, norm), norm))
        return x + _norm(block.norm2, _any_conv(block.conv2, block.pad2(y), x.shape[1], norm), norm)

    def forward(self, x: torch.Tensor, genes: dict[str, Any]) -> torch.Tensor:
        kw = to_kwargs(genes, self.space.max_depth)
        norm = kw["norm"]
        x = self._stage(self.stem, x, kw["stem"], norm)
        x = self._stage(self.down1, x, kw["down"], norm)
        x = self._stage(self.down2, x, kw["trunk"], norm)
        blocks = getattr(self, f"blocks_{kw['block']}")
        for i, inner in enumerate(kw["blocks"]):
            x = self._block(blocks[i], x, inner, norm)
        x = self._up(getattr(self, f"up1_{kw['upsample']}"), x, kw["up"][0], norm)
        x = self._up(getattr(self, f"up2_{kw['upsample']}"), x, kw["up"][1], norm)
        head = self.head[1]
        return torch.tanh(_conv(head, self.head[0](x), self.output_nc))

    def _source_name(self, name: str, kw: dict[str, Any]) -> str:
        head, _, rest = name.partition(".")
        if head == "blocks":
            return f"blocks_{kw['block']}.{rest}"
        if head in ("up1", "up2"):
            return f"{head}_{kw['upsample']}.{rest}"
        return name

    @torch.no_grad()
    def extract(self, genes: dict[str, Any]) -> nn.Module:
        """The sub-network as a ``searchable_resnet`` zoo model holding the supernet's weights.

        Batch-norm running statistics are left at their initial values: re-calibrate before use.
        A convolution bias the supernet lacks (it feeds a norm, which cancels it) is zero.
        """
        kw = to_kwargs(genes, self.space.max_depth)
        model = create_model("searchable_resnet", input_nc=self.input_nc, output_nc=self.output_nc, **kw)
        source = dict(self.named_parameters())
        for name, tensor in model.named_parameters():
            src = source.get(self._source_name(name, kw))
            if src is None:
                tensor.zero_()
                continue
            tensor.copy_(src[tuple(slice(0, n) for n in tensor.shape)])
        return model
