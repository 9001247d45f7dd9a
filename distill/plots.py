"""Pictures that explain themselves: labelled sample grids and loss curves (``slimgan plot RUN``).

- :func:`labelled_grid`: columns of images under a title line (what, the step, the metric values)
  and a header naming every column (``input | teacher | student | target``), each tile enlarged
  (nearest neighbour, so pixels stay honest) to at least ``min_tile`` pixels.
- :func:`plot_loss_curves`: every column of one or more ``metrics.csv`` files against the step, one
  panel per family (generator terms, discriminator, held-out metrics, learning rate).

The pictures of a run directory (both of the above, from its files) are :mod:`distill.engine.report`.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

MIN_TILE = 160  # px: a 32 px sample is drawn 5x, a 64 px one 3x
LOSS_CURVES_NAME = "loss_curves.png"
SAMPLES_NAME = "samples.png"


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def labelled_grid(columns: Sequence[tuple[str, Sequence[Image.Image]]], title: str = "",
                  min_tile: int = MIN_TILE) -> Image.Image:
    """A grid with one column per ``(name, images)`` (all columns equally long), titled and headed."""
    if not columns or not columns[0][1]:
        raise ValueError("labelled_grid needs at least one column with one image")
    rows = min(len(images) for _, images in columns)
    w, h = columns[0][1][0].size
    scale = max(1, math.ceil(min_tile / max(1, min(w, h))))
    tw, th = w * scale, h * scale
    pad, font_size = 6, max(14, min(22, tw // 9))
    font, title_font = _font(font_size), _font(font_size)
    width = len(columns) * (tw + pad) + pad
    title_lines = _wrap([t for t in title.split("\n") if t] if title else [], title_font, width - 2 * pad)
    line_h = font_size + 6
    top = pad + len(title_lines) * line_h + line_h + pad
    height = top + rows * (th + pad)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = pad
    for line in title_lines:
        draw.text((pad, y), line, fill="black", font=title_font)
        y += line_h
    for c, (name, images) in enumerate(columns):
        x = pad + c * (tw + pad)
        draw.text((x + tw // 2, y + line_h // 2), name, fill="black", font=font, anchor="mm")
        for r in range(rows):
            tile = images[r].convert("RGB").resize((tw, th), Image.NEAREST)
            canvas.paste(tile, (x, top + r * (th + pad)))
    return canvas


def _wrap(lines: list[str], font: ImageFont.ImageFont, width: int) -> list[str]:
    """Break each line at spaces (and after commas) so that it fits ``width`` pixels."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    out: list[str] = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            trial = f"{current} {word}".strip()
            if current and probe.textlength(trial, font=font) > width:
                out.append(current)
                current = "  " + word
            else:
                current = trial
        out.append(current)
    return out


def format_metrics(metrics: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """``PSNR to teacher 25.11 dB, SSIM to ground truth 0.812`` for the metrics that are present."""
    names = {"psnr_teacher": ("PSNR to teacher", " dB"), "psnr_gt": ("PSNR to ground truth", " dB"),
             "ssim_teacher": ("SSIM to teacher", ""), "ssim_gt": ("SSIM to ground truth", ""),
             "teacher_psnr_gt": ("teacher PSNR to ground truth", " dB"), "fid": ("FID", "")}
    parts = []
    for key in keys or list(names):
        value = metrics.get(key, metrics.get(f"eval_{key}"))
        if value in (None, ""):
            continue
        label, unit = names.get(key, (key, ""))
        parts.append(f"{label} {float(value):.4g}{unit}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------ loss curves
def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """``metrics.csv`` as rows of floats (empty cells left out)."""
    rows = []
    with Path(path).open() as fh:
        for raw in csv.DictReader(fh):
            row = {}
            for k, v in raw.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    continue
            if "step" in row:
                rows.append(row)
    return rows


FAMILIES = ("objective G_total (weighted sum of the terms)", "generator loss terms (unweighted)",
            "discriminator loss", "held-out PSNR (dB)", "held-out SSIM", "learning rate")


def _family(column: str) -> str | None:
    if column in ("step", "time_s"):
        return None
    if column == "lr":
        return FAMILIES[5]
    if column.startswith("eval_"):
        return FAMILIES[3] if "psnr" in column else (FAMILIES[4] if "ssim" in column else None)
    if column == "G_total":
        return FAMILIES[0]
    if column.startswith("D"):
        return FAMILIES[2]
    return FAMILIES[1]


def plot_loss_curves(sources: Mapping[str, str | Path] | str | Path, path: str | Path) -> Path:
    """Draw the logged columns of the ``metrics.csv`` file(s) against the step into ``path``.

    ``sources``: one CSV, or ``{label: csv}`` to draw several runs (e.g. teacher and student), one
    block of panels per run: the weighted objective, every unweighted term, the discriminator, the
    held-out PSNR and SSIM, and the learning-rate schedule.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"": sources} if isinstance(sources, str | Path) else dict(sources)
    tables = {label: read_metrics(p) for label, p in runs.items()}
    cols = 3
    block = (len(FAMILIES) + cols - 1) // cols
    fig, axes = plt.subplots(block * len(tables), cols, figsize=(5.0 * cols, 3.1 * block * len(tables)),
                             squeeze=False)
    for r, (label, rows) in enumerate(tables.items()):
        columns = list(dict.fromkeys(k for row in rows for k in row))
        for f, fam in enumerate(FAMILIES):
            ax = axes[r * block + f // cols][f % cols]
            drawn = False
            for col in columns:
                if _family(col) != fam:
                    continue
                pts = [(row["step"], row[col]) for row in rows if col in row]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=col.removeprefix("eval_"),
                        linewidth=1.3, marker="o" if len(pts) < 4 else None)
                drawn = True
            ax.set_title(f"{label}: {fam}" if label else fam, fontsize=10)
            ax.set_xlabel("step", fontsize=9)
            ax.grid(alpha=0.3)
            if drawn:
                ax.legend(fontsize=8)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=ax.transAxes,
                        fontsize=9, color="gray")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
