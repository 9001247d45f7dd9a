"""The bundle's :class:`~export.manifest.Manifest`, built from a finished :class:`~export.artifacts.ExportState`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from export.artifacts import ExportState
from export.convention import input_range, output_range, processing_kwargs
from export.manifest import Manifest, Postprocessing, Preprocessing, TensorSpec


def _tensor_specs(state: ExportState) -> tuple[TensorSpec, TensorSpec]:
    exported, latent = state.exported, state.info.input_kind == "latent"
    inp = TensorSpec(
        name=exported.input_name,
        shape=exported.input_shape,
        dtype="float32",
        value_range=None if latent else list(input_range(state.convention, state.info)),
        distribution="normal" if latent else "uniform",
    )
    out = TensorSpec(name=exported.output_name, shape=exported.output_shape, dtype="float32",
                     value_range=list(output_range(state.convention)))
    return inp, out


def _processing(state: ExportState) -> tuple[Preprocessing, Postprocessing]:
    exported, info, shape = state.exported, state.info, state.sample_shape
    latent = info.input_kind == "latent"
    pre_kw, post_kw = processing_kwargs(state.convention, info)
    channels_out = int(exported.output_shape[1]) if isinstance(exported.output_shape[1], int) else 3
    fixed = [int(shape[1]), int(shape[2])] if not latent and not exported.dynamic_spatial else None
    pre = Preprocessing(
        color="L" if (not latent and shape[0] == 1) else "RGB",
        size_multiple=int(info.size_multiple),
        fixed_size=fixed,
        latent_size=int(shape[0]) if latent else None,
        **({} if latent else pre_kw),
    )
    return pre, Postprocessing(color="L" if channels_out == 1 else "RGB", **post_kw)


def build_manifest(state: ExportState, opset: int, max_batch: int) -> Manifest:
    """The manifest of ``state``'s bundle (files, runtimes and preferred runtime as measured)."""
    from slimgan import __version__

    ckpt = state.model.slimgan_checkpoint
    exported = state.exported
    inp, out = _tensor_specs(state)
    pre, post = _processing(state)
    runtimes: dict[str, Any] = {**state.runtimes, "onnxruntime": state.onnxruntime_entry()}
    return Manifest(
        name=Path(ckpt["path"]).name or state.info.name,
        task=state.info.task,
        arch=state.info.name,
        input=inp,
        output=out,
        preprocessing=pre,
        postprocessing=post,
        opset=int(opset),
        files=dict(state.files),
        source_checkpoint=str(ckpt["path"]),
        source_sha256=str(ckpt["sha256"]),
        macs=int(state.macs),
        macs_input_shape=[1, *(int(d) for d in state.sample_shape)],
        params=int(state.params),
        dynamic_batch=exported.dynamic_batch,
        dynamic_spatial=exported.dynamic_spatial,
        max_batch=int(max_batch),
        arch_kwargs=dict(state.kwargs),
        source_convention=dict(state.convention),
        role=state.role,
        runtimes=runtimes,
        preferred_runtime=state.speed.get("runtime") or "onnxruntime",
        controls=dict(getattr(exported, "controls", {})),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        slimgan_version=str(__version__),
    )
