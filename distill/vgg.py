"""In-house VGG-16 feature extractor (Simonyan & Zisserman 2015) for perceptual and style losses.

The module tree mirrors torchvision's ``vgg16().features`` exactly, so its state-dict keys are
``features.0.weight``, ``features.0.bias``, ``features.2.weight`` ... ``features.28.bias``, and a
torchvision-format weights file (a full ``vgg16`` state dict, classifier keys included, or just the
``features.*`` keys) loads unchanged. Weights are read with ``torch.load(weights_only=True)`` from a
path the user configures; nothing is downloaded and a random VGG is never used silently.

Input: images in [-1, 1] (B, 3, H, W). They are mapped to [0, 1] and normalised with the ImageNet
mean/std the torchvision weights were trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.errors import CheckpointError, ConfigError

# torchvision vgg16 "D" configuration: numbers are conv output channels, "M" a 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                    512, 512, 512, "M")

# Index in ``features`` of the ReLU that ends each named layer (Johnson et al. 2016 naming).
VGG16_LAYERS: dict[str, int] = {
    "relu1_2": 3,
    "relu2_2": 8,
    "relu3_3": 15,
    "relu4_3": 22,
    "relu5_3": 29,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_vgg16_features() -> nn.Sequential:
    """``nn.Sequential`` with torchvision's layer indices (conv at 0, 2, 5, ...; ReLU after each conv)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(v)
    return nn.Sequential(*layers)


class VGG16Features(nn.Module):
    """VGG-16 ``features`` returning the activations named in ``layers`` (default relu1_2..relu4_3).

    Frozen (``requires_grad=False``, eval mode); gradients still flow to the input image.
    """

    def __init__(self, layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")) -> None:
        super().__init__()
        unknown = [n for n in layers if n not in VGG16_LAYERS]
        if unknown:
            raise ConfigError(f"unknown VGG-16 layer(s) {unknown}; choose from {', '.join(VGG16_LAYERS)}")
        self.layers = tuple(layers)
        self.features = make_vgg16_features()
        last = max(VGG16_LAYERS[n] for n in self.layers)
        # keep only what is needed; the key names of the kept layers are unchanged
        self.features = nn.Sequential(*list(self.features.children())[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.imagenet_norm = True
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:  # always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, 3, H, W) in [-1, 1]
        h = (x + 1) / 2
        if self.imagenet_norm:  # False: (x+1)/2 as OMGD / CRD feed their VGG
            h = (h - self.mean) / self.std
        wanted = {VGG16_LAYERS[n]: i for i, n in enumerate(self.layers)}
        out: list[torch.Tensor | None] = [None] * len(self.layers)
        for idx, module in enumerate(self.features):
            h = module(h)
            if idx in wanted:
                out[wanted[idx]] = h  # (B, C_l, H_l, W_l)
        return [o for o in out if o is not None]


def load_vgg16(path: str | Path, layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
               ) -> VGG16Features:
    """Build :class:`VGG16Features` and load a torchvision-format ``vgg16`` state dict from ``path``.

    Accepts a full ``vgg16`` state dict (``features.*`` and ``classifier.*``) or one with only the
    ``features.*`` keys. Raises :class:`CheckpointError` if the file is missing or a needed key is
    absent / has the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VGG-16 weights file {str(path)!r} not found (torchvision vgg16 state dict, "
                              "e.g. vgg16-397923af.pth); set the path or write `perceptual: off`")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = VGG16Features(layers)
    own = model.state_dict()
    picked = {}
    for key, tensor in own.items():
        if key not in state:
            raise CheckpointError(f"{path}: key {key!r} missing; is this a torchvision vgg16 state dict?")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}")
        picked[key] = state[key]
    model.load_state_dict(picked)
    model.slimgan_weights = str(path)
    return model
