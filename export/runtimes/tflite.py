"""LiteRT (TensorFlow Lite): ``model.tflite`` (fp32) and ``model.fp16.tflite`` (fp16 weights, for the GPU delegate).

``convert`` uses LiteRT's PyTorch converter (``litert_torch.convert``) on the eval-mode generator at the
export shape (batch 1; LiteRT graphs are static). Input and output stay NCHW float32, as in the ONNX.
Before conversion each ``ConvTranspose2d`` whose ``output_padding`` does not exceed its ``padding`` is
replaced by the same transposed convolution without padding followed by a crop: an exact rewrite (same
weights, same arithmetic, the border that padding would drop is sliced off) that sidesteps LiteRT's
failure to legalise padded transposed convolutions (``failed to legalize operation 'mhlo.convolution'``;
litert-torch issue 316), and :func:`export.runtimes.mobile.rewrite_for_xnnpack` turns reflection padding into
slices and InstanceNorm into spatial means, which LiteRT keeps channels-last for XNNPACK instead of
transposing around every norm and pad. The fp16 variant casts the weights of convolutions and fully connected layers
to fp16 with the AI Edge Quantizer's ``float_casting`` recipe; activations stay fp32 on the CPU, while
the GPU delegate computes in fp16 with them.

``load`` opens an ``Interpreter`` with ``num_threads = threads`` and LiteRT's default op resolver, which
applies the XNNPACK delegate on CPU: the kernels a phone's CPU runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from export.runtimes import register_runtime
from export.runtimes.base import ConvertContext, ConvertResult, Session
from export.runtimes.mobile import (
    MobileRuntime,
    StaticShapeSession,
    eval_copy,
    example_input,
    package_version,
    require_packages,
    rewrite_for_xnnpack,
    static_shape,
)

FILES = {"tflite": "model.tflite", "tflite-fp16": "model.fp16.tflite"}


def crop_padded_conv_transpose(module: Any) -> int:
    """Replace padded ``ConvTranspose2d`` layers of ``module`` in place by unpadded ones plus a crop.

    Exact: ``conv_transpose(x, p, op) == conv_transpose(x, 0, 0)[..., p : p + out]`` whenever
    ``op <= p``. Returns how many layers were replaced.
    """
    import torch.nn.functional as F
    from torch import nn

    class CroppedConvTranspose2d(nn.Module):
        def __init__(self, layer: nn.ConvTranspose2d) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x):  # (B, C, H, W)
            c = self.layer
            y = F.conv_transpose2d(x, c.weight, c.bias, c.stride, 0, 0, c.groups, c.dilation)
            (ph, pw), (oh, ow) = c.padding, c.output_padding
            h = y.shape[2] - 2 * ph + oh
            w = y.shape[3] - 2 * pw + ow
            return y[:, :, ph : ph + h, pw : pw + w]

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.ConvTranspose2d)
                and isinstance(child.padding, tuple)
                and any(child.padding)
                and all(o <= p for o, p in zip(child.output_padding, child.padding, strict=True))
            ):
                setattr(parent, name, CroppedConvTranspose2d(child))
                replaced += 1
    return replaced


def write_fp16_weights(src: Path, dst: Path) -> None:
    """``src`` with conv / fully-connected weights cast to fp16 (AI Edge Quantizer ``float_casting``)."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(str(src))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key=AlgorithmName.FLOAT_CASTING)
    q.quantize(enable_progress_report=False).export_model(str(dst), overwrite=True)


class TFLiteSession(StaticShapeSession, Session):
    parallel_runs = 1

    def __init__(self, path: str | Path, threads: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.threads = int(threads) if threads else None
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.shape = tuple(int(d) for d in inp["shape"])
        self.input_name, self.output_name = inp["name"], out["name"]

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out).copy()

    def describe(self) -> dict[str, Any]:
        return {"runtime": "tflite", "version": package_version("ai-edge-litert"), "device": "cpu",
                "delegate": "XNNPACK (LiteRT default op resolver)", "threads": self.threads, "file": self.path.name,
                "input_shape": list(self.shape)}

    def close(self) -> None:
        self.interpreter = None


class TFLiteRuntime(MobileRuntime):
    name = "tflite"
    extra = "tflite"
    module_name = "ai_edge_litert"
    convert_modules = ("litert_torch", "ai_edge_quantizer")
    artifacts = dict(FILES)
    gates = {"tflite": "fp32", "tflite-fp16": "fp16"}

    def convert(self, ctx: ConvertContext) -> ConvertResult:
        """Write ``model.tflite`` and (unless ``options["tflite_fp16"]`` is False) ``model.fp16.tflite``."""
        self.require()
        os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
        require_packages(self, "litert_torch", "ai_edge_quantizer")
        import litert_torch
        import torch

        module = eval_copy(ctx.module)
        cropped = crop_padded_conv_transpose(module)
        rewritten = rewrite_for_xnnpack(module)
        bundle = Path(ctx.bundle_dir)
        with torch.no_grad():
            edge = litert_torch.convert(module, (example_input(static_shape(ctx.example_shape)),))
        edge.export(str(bundle / FILES["tflite"]))
        written = [FILES["tflite"]]
        if ctx.options.get("tflite_fp16", True):
            write_fp16_weights(bundle / FILES["tflite"], bundle / FILES["tflite-fp16"])
            written.append(FILES["tflite-fp16"])
        return ConvertResult(tuple(written), "fp32", {"cropped_conv_transpose": cropped, "rewritten_layers": rewritten,
                                                      "fp16_weights_variant": FILES["tflite-fp16"] in written})

    def load(self, path: str | Path, *, threads: int | None = None, device: str = "cpu", **opts: Any) -> TFLiteSession:
        self.require()
        return TFLiteSession(path, threads)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": package_version("ai-edge-litert"), "converter": package_version("litert-torch"),
                "device": "cpu", "delegate": "XNNPACK", "threads": None}


register_runtime(TFLiteRuntime())
