"""One served bundle: its manifest, backend, micro-batcher and the translate / generate pipelines."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

from export.manifest import Manifest
from serve.backends import Backend, backend_class, create_backend, resolve_backend
from serve.batching import MicroBatcher
from serve.bundle_validation import validate_bundle
from serve.image_guards import decode_cost
from serve.imaging import (
    Restore,
    array_to_image,
    draft_for_model,
    exif_orientation,
    latents_for,
    model_input_size,
    prepare_translate,
    resize_cost,
    restore_translate,
    to_uint8,
)
from serve.metrics import ServerMetrics
from serve.settings import ServeSettings
from slimgan.errors import ConfigError

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_bundle_arg(arg: str) -> tuple[str | None, Path]:
    """``NAME=PATH`` or ``PATH`` -> (explicit name or None, path)."""
    name, sep, path = arg.partition("=")
    if sep and _NAME_RE.match(name) and not Path(arg).exists():
        return name, Path(path)
    return None, Path(arg)


class ServedModel:
    """A bundle behind the HTTP API. ``state``: ``pending`` -> ``loading`` -> ``ready`` (or ``failed``)."""

    def __init__(self, name: str, bundle_dir: Path, manifest: Manifest, settings: ServeSettings) -> None:
        self.name = name
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.settings = settings
        self.task = manifest.task
        self.backend_name = resolve_backend(settings.backend, bundle_dir, manifest, settings)
        self.backend: Backend | None = None
        self.batcher: MicroBatcher | None = None
        self.state = "pending"
        self.error: str | None = None
        self.max_batch = settings.max_batch if manifest.dynamic_batch else 1
        spatial = manifest.input.shape[2:4] if len(manifest.input.shape) >= 4 else []
        if manifest.preprocessing.fixed_size:
            self.fixed_size: tuple[int, int] | None = tuple(manifest.preprocessing.fixed_size)[:2]  # (H, W)
        elif len(spatial) == 2 and all(isinstance(d, int) for d in spatial):
            self.fixed_size = (int(spatial[0]), int(spatial[1]))
        else:
            self.fixed_size = None
        self.latent_shape: tuple[int, ...] = ()
        if self.task == "generate":
            dims = manifest.input.shape[1:]
            if dims and all(isinstance(d, int) for d in dims):
                self.latent_shape = tuple(int(d) for d in dims)
            elif manifest.preprocessing.latent_size:
                self.latent_shape = (int(manifest.preprocessing.latent_size),)
            else:
                raise ConfigError(f"bundle {bundle_dir}: generate model without a static latent size")
        # StyleGAN2 bundles: ψ travels as one extra column of each latent row, so requests with different ψ
        # share a micro-batch; the backend splits it off into the graph's truncation input.
        self.truncation: dict | None = (manifest.controls or {}).get("truncation")
        if self.truncation is not None and settings.backend == "tensorrt":
            raise ConfigError(f"bundle {bundle_dir}: the tensorrt backend does not feed the truncation input; "
                              "serve it with --backend onnxruntime")

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def load(self) -> None:
        """Open the backend and warm it up at every batch size (blocking; run in a thread)."""
        self.state = "loading"
        t0 = time.perf_counter()
        self.backend = create_backend(self.backend_name, self.bundle_dir, self.manifest, self.settings)
        if self.backend.max_batch:
            self.max_batch = min(self.max_batch, self.backend.max_batch)
        example = self.example_rows(1)
        # Every batch size the batcher can form: ORT plans memory per input shape, and a shape's first
        # run is several times slower, which would otherwise land on live requests.
        sizes = [self.backend.fixed_batch] if self.backend.fixed_batch else range(1, self.max_batch + 1)
        for n in sizes:
            self.backend.run(np.repeat(example, n, axis=0))
        log.info(
            "model %s (%s, %s) loaded and warmed in %.2f s",
            self.name,
            self.task,
            self.backend_name,
            time.perf_counter() - t0,
        )

    def start(self, metrics: ServerMetrics) -> None:
        """Start the micro-batcher (on the event loop) once :meth:`load` has finished."""
        assert self.backend is not None, "load() must run before start()"
        self.batcher = MicroBatcher(
            self.name,
            self.backend.run,
            self.max_batch,
            self.settings.max_delay_ms / 1000.0,
            self.settings.queue,
            metrics,
            fixed_batch=self.backend.fixed_batch,
            parallel=self.backend.parallel_runs,
            max_batch_pixels=self.settings.max_batch_pixels,
        )
        self.batcher.start()
        self.state = "ready"
        metrics.model_ready.labels(self.name).set(1)

    async def stop(self) -> None:
        """Finish queued requests, then release the backend."""
        if self.batcher is not None:
            await self.batcher.stop()
        self.close()

    def example_rows(self, n: int) -> np.ndarray:
        """Warm-up input: latents for generate, a mid-grey image of the usual size for translate."""
        if self.task == "generate":
            return self.latents(0, n)
        channels = 1 if self.manifest.preprocessing.color == "L" else 3
        h, w = self.fixed_size or (64, 64)
        return np.zeros((n, channels, h, w), dtype=np.float32)

    def latents(self, seed: int, count: int, truncation: float | None = None) -> np.ndarray:
        """``(count, *latent_shape)``: image ``i`` uses seed ``seed + i``; with a truncation control,
        ``(count, nz + 1)`` whose last column is ψ (``truncation``, else the manifest's default)."""
        z = latents_for(seed, count, self.latent_shape)
        if self.truncation is None:
            if truncation is not None:
                raise ConfigError(f"model {self.name} has no truncation input")
            return z
        psi = float(self.truncation.get("default", 1.0) if truncation is None else truncation)
        return np.concatenate([z, np.full((count, 1), psi, dtype=np.float32)], axis=1)

    def draft(self, image: Image.Image) -> tuple[int, int] | None:
        """Shrink a JPEG's decode to this model's input size (before loading); the client's (W, H) then."""
        return draft_for_model(image, self.manifest.preprocessing, self.fixed_size, self.settings.max_infer_side)

    def input_pixels(self, size: tuple[int, int]) -> int:
        """Pixels of the model input (after resizing and padding) for an image of ``size`` (W, H)."""
        _, (pw, ph) = model_input_size(
            size[0], size[1], self.manifest.preprocessing, self.fixed_size, self.settings.max_infer_side
        )
        return pw * ph

    def decode_price(self, image: Image.Image, original: tuple[int, int] | None) -> int:
        """What decoding ``image`` (header read, maybe drafted) and resizing it to the inference size cost
        against the decode budget, in pixels: the decoder's copies plus the resize's intermediate image
        and kernel tables (:func:`serve.imaging.resize_cost`)."""
        swap = exif_orientation(image) in (5, 6, 7, 8)
        shown = original or ((image.size[1], image.size[0]) if swap else image.size)
        (w, h), _ = model_input_size(
            shown[0], shown[1], self.manifest.preprocessing, self.fixed_size, self.settings.max_infer_side
        )
        return decode_cost(image.format, image.size) + resize_cost(image.size, (h, w) if swap else (w, h))

    def prepare(
        self, image: Image.Image, original: tuple[int, int] | None = None, upscale: bool = False
    ) -> tuple[np.ndarray, Restore]:
        return prepare_translate(
            image, self.manifest.preprocessing, self.fixed_size, self.settings.max_infer_side, original, upscale
        )

    def restore(self, output: np.ndarray, restore: Restore) -> Image.Image:
        return restore_translate(output, self.manifest.postprocessing, restore)

    def images_from(self, outputs: np.ndarray) -> list[Image.Image]:
        post = self.manifest.postprocessing
        return [array_to_image(to_uint8(o, post), "L" if post.color == "L" else "RGB") for o in outputs]

    def public(self) -> dict:
        return self.manifest.public_dict()

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


def build_models(settings: ServeSettings) -> dict[str, ServedModel]:
    """Read every bundle's manifest and check its backend can load it (fast; no session is opened)."""
    if not settings.bundles:
        raise ConfigError("no bundle given: slimgan serve BUNDLE [BUNDLE ...]")
    models: dict[str, ServedModel] = {}
    seen: dict[Path, str] = {}
    for arg in settings.bundles:
        explicit, path = parse_bundle_arg(arg)
        manifest = validate_bundle(path, settings.precision, check_files=settings.backend != "dummy")
        if settings.backend != "dummy":
            backend_class(resolve_backend(settings.backend, path, manifest, settings)).check(path, manifest, settings)
        real = path.resolve()
        if real in seen:
            raise ConfigError(f"bundle {path} is given twice (as {seen[real]!r} already)")
        name = explicit or manifest.name or real.name
        if not _NAME_RE.match(name):
            raise ConfigError(f"bundle {path}: model name {name!r} is not URL-safe; serve it as NAME={path}")
        if name in models:
            raise ConfigError(
                f"bundle {path}: model name {name!r} is already taken by bundle {models[name].bundle_dir}; "
                f"give one a different name with NAME=PATH"
            )
        seen[real] = name
        models[name] = ServedModel(name, path, manifest, settings)
    return models
