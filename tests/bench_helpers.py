"""Tiny bundles for the benchmark tests: a zoo model, its checkpoint, ONNX graph(s) and a manifest."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from distill import create_model, save_checkpoint
from distill.profile import count_macs, count_params
from export.manifest import Manifest, Postprocessing, Preprocessing, TensorSpec


def _onnx_bytes(model: torch.nn.Module, example: torch.Tensor, spatial: bool) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": axes, "output": axes})
    return buf.getvalue()


def make_bundle(root: Path, name: str, arch: str = "resnet_6blocks", res: int = 32, checkpoint: bool = True,
                fp16: bool = False, openvino: bool = False, **kwargs) -> Path:
    """Export ``create_model(arch, **kwargs)`` into ``root/name`` as a slimgan bundle."""
    torch.manual_seed(0)
    model = create_model(arch, **kwargs).eval()
    ckpt = root / f"{name}_ckpt"
    save_checkpoint(model, ckpt)
    bundle = root / name
    bundle.mkdir(parents=True)
    latent = "nz" in model.slimgan_config["kwargs"]
    if latent:
        nz = model.slimgan_config["kwargs"]["nz"]
        example = torch.randn(1, nz)
        in_shape, task = ["batch", nz], "generate"
    else:
        example = torch.rand(1, 3, res, res) * 2 - 1
        in_shape, task = ["batch", 3, "height", "width"], "translate"
    (bundle / "model.onnx").write_bytes(_onnx_bytes(model, example, spatial=not latent))
    files = {"fp32": "model.onnx"}
    if fp16:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        proto = convert_float_to_float16(onnx.load(str(bundle / "model.onnx")), keep_io_types=True)
        onnx.save(proto, str(bundle / "model.fp16.onnx"))
        files["fp16"] = "model.fp16.onnx"
    runtimes = {}
    if openvino:
        from export.runtimes import ConvertContext, get_runtime

        get_runtime("openvino").convert(ConvertContext(bundle, bundle / "model.onnx"))
        files.update({"openvino": "model.xml", "openvino-weights": "model.bin"})
        runtimes["openvino"] = {"precision": "f32", "files": ["model.xml", "model.bin"]}
    with torch.no_grad():
        out_shape = list(model(example).shape)
    manifest = Manifest(
        name=name, task=task, arch=arch,
        input=TensorSpec("input", in_shape, value_range=None if latent else [-1.0, 1.0],
                         distribution="normal" if latent else "uniform"),
        output=TensorSpec("output", ["batch", *out_shape[1:2], "height", "width"], value_range=[-1.0, 1.0]),
        preprocessing=Preprocessing(latent_size=in_shape[1] if latent else None),
        postprocessing=Postprocessing(),
        opset=17, files=files,
        source_checkpoint=str(ckpt) if checkpoint else str(root / "missing_ckpt"),
        source_sha256="", macs=count_macs(model, example), params=count_params(model),
        arch_kwargs=dict(model.slimgan_config["kwargs"]), runtimes=runtimes,
    )
    manifest.save(bundle)
    return bundle


def fake_segmenter(images: torch.Tensor) -> torch.Tensor:
    """A stand-in segmentation model: class = which third of [-1, 1] the red channel falls in, (B, H, W)."""
    red = images[:, 0]
    return (red > -1 / 3).long() + (red > 1 / 3).long()


def fake_inception_weights(path: Path) -> Path:
    """A randomly initialised FID Inception saved in pytorch-fid's state-dict format (tests only)."""
    from distill.metrics.inception import FIDInception

    torch.manual_seed(0)
    model = FIDInception()
    for m in model.modules():  # non-trivial BN statistics, as a trained file has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), path)
    return path
