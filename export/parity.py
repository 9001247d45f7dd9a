"""Numerical parity between the PyTorch student and each deployed form of it (``parity.json``).

Every comparison row reports, for output ``a`` (deployed) against reference ``b`` (PyTorch):
max / mean / median / p99 absolute error, max relative error ``|a - b| / max(|b|, 1e-6)``, PSNR and
SSIM (data range 2 for [-1, 1] images; ``distill.metrics``), NaN / Inf counts, and ``min_atol``: the
smallest ``atol`` for which ``|a - b| <= atol + rtol * |b|`` holds elementwise at the row's ``rtol``
(Polygraphy's check). Gates:

- ``fp32``: ``atol = rtol = 1e-5`` elementwise, or max abs error <= 1e-4;
- ``fp16``: PSNR >= 40 dB (and no NaN/Inf); ``bf16`` (OpenVINO's reduced CPU precision) the same;
- ``int8``: reported; only NaN/Inf fail it;
- ``trt``: as fp16 when built in reduced precision, as fp32 otherwise;
- ``teacher``: information only (``passed`` is None): distillation is not a deployment error.
- ``validate`` (Core ML off macOS): the converted program checked without running it; ``numbers`` says why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FP32_ATOL = 1e-5
FP32_RTOL = 1e-5
FP32_MAX_ABS = 1e-4
FP16_MIN_PSNR = 40.0


def _psnr_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> tuple[float | None, float | None]:
    from distill.metrics import psnr, ssim

    if a.ndim != 4 or not np.all(np.isfinite(a)):
        return None, None
    p = float(psnr(a, b, data_range=data_range))
    s = float(ssim(a, b, data_range=data_range)) if min(a.shape[-2:]) >= 3 else None
    return (p if math.isfinite(p) else 999.0), s


def compare(name: str, out: np.ndarray, ref: np.ndarray, gate: str, rtol: float = FP32_RTOL, data_range: float = 2.0) -> dict[str, Any]:
    """One parity row. ``gate`` is ``fp32``, ``fp16``, ``bf16``, ``int8`` or ``info``; ``data_range`` is the output's span for PSNR/SSIM."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        return {
            "name": name,
            "gate": gate,
            "passed": None if gate == "info" else False,
            "error": f"shape {list(out.shape)} != reference {list(ref.shape)}",
        }
    nan = int(np.isnan(out).sum())
    inf = int(np.isinf(out).sum())
    diff = np.abs(out - ref)
    finite = np.isfinite(diff)
    d = diff[finite] if finite.any() else np.zeros(1)
    rel = d / np.maximum(np.abs(ref[finite]), 1e-6) if finite.any() else np.zeros(1)
    min_atol = float(np.max(np.maximum(diff - rtol * np.abs(ref), 0.0))) if finite.all() else float("inf")
    p, s = _psnr_ssim(out, ref, data_range)
    row: dict[str, Any] = {
        "name": name,
        "gate": gate,
        "max_abs": float(d.max()),
        "mean_abs": float(d.mean()),
        "median_abs": float(np.median(d)),
        "p99_abs": float(np.percentile(d, 99)),
        "max_rel": float(rel.max()),
        "psnr_db": p,
        "ssim": s,
        "nan": nan,
        "inf": inf,
        "min_atol": min_atol,
        "rtol": rtol,
        "shape": list(out.shape),
    }
    clean = nan == 0 and inf == 0
    if gate == "fp32":
        elementwise = clean and min_atol <= FP32_ATOL
        row["criterion"] = f"|a-b| <= {FP32_ATOL:g} + {rtol:g}|b| elementwise, or max abs <= {FP32_MAX_ABS:g}"
        row["passed"] = bool(elementwise or (clean and row["max_abs"] <= FP32_MAX_ABS))
    elif gate in ("fp16", "bf16"):
        row["criterion"] = f"PSNR >= {FP16_MIN_PSNR:g} dB"
        row["passed"] = bool(clean and p is not None and p >= FP16_MIN_PSNR)
    elif gate == "int8":
        row["criterion"] = "reported; fails only on NaN/Inf"
        row["passed"] = bool(clean)
    else:
        row["criterion"] = "information (not a deployment check)"
        row["passed"] = None
    row["verdict"] = verdict(row)
    return row


def verdict(row: dict[str, Any]) -> str:
    """What a row's result is, in the words the table prints: PASS, FAIL, reported (int8), validated or info.

    INT8 is ``reported``: static quantisation error depends on the calibration set and the model,
    so no threshold is gated; the row fails only on NaN/Inf.
    """
    passed = row.get("passed")
    if passed is False:
        return "FAIL"
    if passed is None:
        return "info"
    if row.get("gate") == "validate":  # converted and checked, but it cannot run on this platform
        return "validated"
    return "reported" if row.get("gate") == "int8" else "PASS"


def failed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deployment rows that did not pass (information rows never fail)."""
    return [r for r in rows if r.get("passed") is False]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of parity rows, for the terminal."""

    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    head = f"{'comparison':<40} {'result':<8} {'max abs':>9} {'mean abs':>9} {'p99 abs':>9} {'min atol':>9} {'PSNR dB':>8} {'SSIM':>7} {'NaN/Inf':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        result = r.get("verdict") or verdict(r)
        if "error" in r or "max_abs" not in r:  # no numbers: a failure, or a validated artifact that cannot run here
            lines.append(f"{r['name']:<40} {result:<8} {r.get('error') or r.get('numbers', '')}")
            continue
        lines.append(
            f"{r['name']:<40} {result:<8} {f(r['max_abs'], '9.2e')} {f(r['mean_abs'], '9.2e')} "
            f"{f(r['p99_abs'], '9.2e')} {f(r['min_atol'], '9.2e')} {f(r['psnr_db'], '8.2f')} "
            f"{f(r['ssim'], '7.4f')} {r['nan']:>4}/{r['inf']:<3}"
        )
    if any(r.get("gate") == "int8" for r in rows):
        lines.append("reported: int8 is not gated (its error depends on the calibration images); only NaN/Inf fail it")
    return "\n".join(lines)
