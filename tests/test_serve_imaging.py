"""Image guards and model-shaped pre/post-processing (numpy + Pillow, no server)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from serve_bundles import png_bomb

from export.manifest import Postprocessing, Preprocessing
from serve.errors import ApiError
from serve.imaging import decode_image, latents_for, model_input_size, prepare_translate, restore_translate
from serve.routers.inference import format_from_accept


def encoded(fmt: str, size: tuple[int, int] = (20, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 99, 199)).save(buf, format=fmt)
    return buf.getvalue()


def status_of(data: bytes, max_pixels: int = 10_000) -> int:
    with pytest.raises(ApiError) as info:
        decode_image(data, max_pixels)
    return info.value.status


def test_decode_whitelist_limits_and_corruption() -> None:
    for fmt in ("PNG", "JPEG", "WEBP", "BMP"):
        assert decode_image(encoded(fmt), 10_000).size == (20, 10)
        assert status_of(encoded(fmt)[:40]) == 400, fmt
    assert status_of(encoded("GIF")) == 400  # decodable by Pillow, but not whitelisted
    assert status_of(b"") == 400
    assert status_of(b"<svg xmlns='http://www.w3.org/2000/svg'/>") == 400
    assert status_of(encoded("PNG", (200, 100))) == 413  # 20000 pixels > 10000
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 200_000 and status_of(bomb) == 413
    # with our limit lifted, Pillow's own decompression-bomb guard still answers 413, not 500
    assert status_of(bomb, max_pixels=10**12) == 413


def test_model_input_size_rules() -> None:
    pre = Preprocessing(size_multiple=4)
    assert model_input_size(64, 64, pre, None, 1024) == ((64, 64), (64, 64))
    # each side padded up to its bucket (a multiple of size_multiple), so few shapes reach the runtime
    assert model_input_size(50, 37, pre, None, 1024) == ((50, 37), (64, 48))
    assert model_input_size(3, 5, pre, None, 1024) == ((3, 5), (16, 16))
    assert model_input_size(2000, 1000, pre, None, 512) == ((512, 256), (512, 256))
    assert model_input_size(1000, 700, pre, None, 1000) == ((1000, 700), (1000, 768))  # never past max_side
    assert model_input_size(50, 37, Preprocessing(size_multiple=28), None, 1024) == ((50, 37), (84, 56))
    assert model_input_size(50, 37, pre, (64, 32), 1024) == ((32, 64), (32, 64))  # fixed (H, W)
    sizes = {model_input_size(w, h, pre, None, 1024)[1] for w in range(1, 1025, 7) for h in range(1, 1025, 11)}
    assert len(sizes) <= 14 * 14, len(sizes)


def test_resize_is_priced_by_its_kernel_and_needles_are_refused() -> None:
    from serve.errors import ApiError
    from serve.imaging import check_aspect, resize_cost

    assert resize_cost((64, 64), (64, 64)) == 0
    # shrinking a 16,777,216-pixel side to 1024 needs a 512 MiB table of kernel taps: priced as such
    assert resize_cost((1, 16_777_216), (1, 1024)) * 3 > 512 * 1024 * 1024
    assert resize_cost((4096, 4096), (1024, 1024)) < 2 * 4096 * 4096
    check_aspect((6000, 100), 64)
    with pytest.raises(ApiError) as refused:
        check_aspect((1, 16_777_216), 64)
    assert refused.value.status == 422


def test_prepare_and_restore_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    tensor, restore = prepare_translate(image, Preprocessing(size_multiple=4), None, 1024)
    assert tensor.shape == (1, 3, 48, 64) and tensor.dtype == np.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    back = restore_translate(tensor[0], Postprocessing(), restore)
    assert back.size == (50, 37) and np.array_equal(np.asarray(back), pixels)
    resized_tensor, resized = prepare_translate(image, Preprocessing(size_multiple=4), (32, 32), 1024)
    assert resized_tensor.shape == (1, 3, 32, 32)
    # answered at the inference size's longer side unless asked to enlarge back to the input's size
    assert restore_translate(resized_tensor[0], Postprocessing(), resized).size == (32, 24)
    _, enlarged = prepare_translate(image, Preprocessing(size_multiple=4), (32, 32), 1024, upscale=True)
    assert restore_translate(resized_tensor[0], Postprocessing(), enlarged).size == (50, 37)


def test_latents_are_per_image_seeds() -> None:
    many = latents_for(5, 3, (16,))
    assert many.shape == (3, 16) and many.dtype == np.float32
    assert np.array_equal(many[2], latents_for(7, 1, (16,))[0])
    assert not np.array_equal(many[0], many[1])


def test_accept_negotiation() -> None:
    assert format_from_accept("image/webp") == "webp"
    assert format_from_accept("image/png;q=0.2, image/jpeg;q=0.8") == "jpeg"
    assert format_from_accept("text/html, */*") is None
    assert format_from_accept(None) is None
