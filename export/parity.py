"""Numerical parity between the PyTorch student and each deployed form of it (``parity.json``).

Every comparison row reports, for output ``a`` (deployed) against reference ``b`` (PyTorch):
max / mean / median / p99 absolute error, max relative error ``|a - b| / max(|b|, 1e-6)``, PSNR and
SSIM (data range 2 for [-1, 1] images; ``distill.metrics``), NaN / Inf counts, and ``min_atol``: the
smallest ``atol`` for which ``|a - b| <= atol + rtol * |b|`` holds elementwise at the row's ``rtol``
(Polygraphy's check). Gates:

- ``fp32``: the 8-bit outputs agree: max abs error <= half an 8-bit step of the output range
  (``data_range / 255 / 2``, 3.9e-3 for [-1, 1]) and PSNR >= 70 dB on every sample (``psnr_min_db``),
  with no NaN/Inf. ``min_atol`` at ``rtol = 1e-5`` and ``max_rel`` are reported figures, not gates:
  real weights accumulate fp32 reordering error (fused kernels, Winograd, FMA) far beyond 1e-5
  elementwise while the picture is unchanged;
- ``fp16``: PSNR >= 40 dB (and no NaN/Inf); ``bf16`` (OpenVINO's reduced CPU precision) the same;
- ``int8``: reported; only NaN/Inf fail it;
- ``trt``: as fp16 when built in reduced precision, as fp32 otherwise;
- ``teacher``: information only (``passed`` is None): distillation is not a deployment error.
- ``validate`` (Core ML off macOS): the converted program checked without running it; ``numbers`` says why.

Each row's ``criterion`` states the rule it was judged by.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Reported with every row (Polygraphy-style elementwise figures); not part of any gate.
FP32_ATOL = 1e-5
FP32_RTOL = 1e-5
# fp32 gate, part 1: no output value may move by more than this many 8-bit steps of the output range.
# Half a step means every pixel rounds to the same or a neighbouring grey level.
FP32_MAX_STEPS = 0.5
# fp32 gate, part 2: the worst sample's PSNR. PSNR = 20 log10(255 / (RMSE in 8-bit steps)), whatever the
# range, so 70 dB means an RMS error <= 8 % of a step: at most ~8 % of pixels can land on a neighbouring
# grey level. The max-abs part alone only guarantees ~54 dB (every pixel off by just under half a step,
# half of them flipping), so the floor is what rules out a broad shift. fp32 arithmetic differences
# (operation order, fused or Winograd kernels) sit far above it, so it costs an fp32 runtime nothing.
FP32_MIN_PSNR = 70.0
FP16_MIN_PSNR = 40.0


def eight_bit_tolerance(data_range: float = 2.0) -> float:
    """Half an 8-bit step of an output range of width ``data_range`` (3.92e-3 for [-1, 1])."""
    return float(data_range) / 255.0 * FP32_MAX_STEPS


def worst_psnr(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float | None:
    """The lowest per-sample PSNR (dB) of ``a`` against ``b`` (999 for identical samples); None with NaN/Inf."""
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return None
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64)).reshape(a.shape[0] if a.ndim > 1 else 1, -1)
    mse = float((diff * diff).mean(axis=1).max()) if diff.size else 0.0
    return 999.0 if mse == 0.0 else min(999.0, 10.0 * math.log10(data_range**2 / mse))


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
        tol = eight_bit_tolerance(data_range)
        worst = worst_psnr(out, ref, data_range)
        row["psnr_min_db"] = worst
        row["max_abs_limit"] = tol
        row["criterion"] = (f"8-bit agreement: max abs <= {tol:.3g} (half an 8-bit step of the output range {data_range:g}) "
                            f"and PSNR >= {FP32_MIN_PSNR:g} dB on every sample, no NaN/Inf; "
                            f"min_atol (rtol {rtol:g}) and max_rel are reported, not gated")
        row["passed"] = bool(clean and row["max_abs"] <= tol and worst is not None and worst >= FP32_MIN_PSNR)
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
