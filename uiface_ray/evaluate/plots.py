"""PNG plots drawn with PIL and numpy (matplotlib is not a dependency): lines, histograms, bars,
image grids.  Each function returns a ``PIL.Image``; ``png_bytes`` encodes it."""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 400, 70, 20, 40, 60


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    return np.linspace(lo, hi, n)


class _Axes:
    """Data -> pixel mapping with a frame, ticks, labels, title and legend."""

    def __init__(
        self,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        title: str,
        xlabel: str,
        ylabel: str,
        xticks: bool = True,
    ):
        self.img = Image.new("RGB", (W, H), "white")
        self.draw = ImageDraw.Draw(self.img)
        self.font = ImageFont.load_default()
        self.x0, self.x1 = xlim if xlim[1] > xlim[0] else (xlim[0] - 0.5, xlim[0] + 0.5)
        self.y0, self.y1 = ylim if ylim[1] > ylim[0] else (ylim[0] - 0.5, ylim[0] + 0.5)
        d = self.draw
        d.rectangle([LEFT, TOP, W - RIGHT, H - BOTTOM], outline="black")
        for v in _ticks(self.x0, self.x1) if xticks else ():
            px = self.px(v)
            d.line([px, H - BOTTOM, px, H - BOTTOM + 4], fill="black")
            d.text((px - 12, H - BOTTOM + 6), f"{v:.3g}", fill="black", font=self.font)
        for v in _ticks(self.y0, self.y1):
            py = self.py(v)
            d.line([LEFT - 4, py, LEFT, py], fill="black")
            d.text((4, py - 6), f"{v:.3g}", fill="black", font=self.font)
        d.text((W // 2 - 3 * len(title), 10), title, fill="black", font=self.font)
        d.text((W // 2 - 3 * len(xlabel), H - 22), xlabel, fill="black", font=self.font)
        d.text((4, TOP - 18), ylabel, fill="black", font=self.font)

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return H - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)

    def legend(self, names: Sequence[str]) -> None:
        for i, name in enumerate(names):
            y = TOP + 6 + 14 * i
            self.draw.rectangle([W - RIGHT - 150, y, W - RIGHT - 140, y + 10], fill=PALETTE[i % len(PALETTE)])
            self.draw.text((W - RIGHT - 135, y - 1), name[:22], fill="black", font=self.font)


def _lims(values: Sequence[np.ndarray], pad: float = 0.05) -> tuple[float, float]:
    flat = np.concatenate([np.ravel(v) for v in values if len(v)]) if values else np.zeros(1)
    lo, hi = float(np.nanmin(flat)), float(np.nanmax(flat))
    span = hi - lo or 1.0
    return lo - pad * span, hi + pad * span


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str
) -> Image.Image:
    xs = [np.asarray(x, float) for x, _ in series.values()]
    ys = [np.asarray(y, float) for _, y in series.values()]
    ax = _Axes(_lims(xs, 0), _lims(ys), title, xlabel, ylabel)
    for i, (x, y) in enumerate(zip(xs, ys)):
        pts = [(ax.px(a), ax.py(b)) for a, b in zip(x, y) if np.isfinite(b)]
        if len(pts) > 1:
            ax.draw.line(pts, fill=PALETTE[i % len(PALETTE)], width=2)
        for p in pts:
            ax.draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=PALETTE[i % len(PALETTE)])
    ax.legend(list(series))
    return ax.img


def histogram_plot(
    series: Mapping[str, np.ndarray],
    title: str,
    xlabel: str,
    bins: int = 50,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Image.Image:
    """Density histograms drawn as step outlines, one colour per series."""
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    dens = {
        k: np.histogram(np.asarray(v, float), bins=edges, density=True)[0] if len(v) else np.zeros(bins)
        for k, v in series.items()
    }
    ax = _Axes(
        value_range, (0.0, max(1e-9, max(float(d.max()) for d in dens.values())) * 1.05), title, xlabel, "density"
    )
    for i, d in enumerate(dens.values()):
        pts = []
        for j, h in enumerate(d):
            pts += [(ax.px(edges[j]), ax.py(h)), (ax.px(edges[j + 1]), ax.py(h))]
        ax.draw.line(pts, fill=PALETTE[i % len(PALETTE)], width=2)
    ax.legend(list(series))
    return ax.img


def bar_plot(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str) -> Image.Image:
    vals = np.asarray(values, float)
    ax = _Axes(
        (0.0, float(len(vals))),
        (min(0.0, float(np.nanmin(vals))), float(np.nanmax(vals)) * 1.1 or 1.0),
        title,
        "",
        ylabel,
        xticks=False,
    )
    for i, (lab, v) in enumerate(zip(labels, vals)):
        ax.draw.rectangle([ax.px(i + 0.15), ax.py(v), ax.px(i + 0.85), ax.py(max(0.0, ax.y0))], fill=PALETTE[0])
        ax.draw.text((ax.px(i + 0.1), H - BOTTOM + 20), lab[:14], fill="black", font=ax.font)
    return ax.img


def image_grid(images: np.ndarray, pad: int = 2) -> Image.Image:
    """uint8 (rows, cols, h, w, 3) -> one image, white gaps of ``pad`` pixels."""
    if images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"image_grid expects (rows, cols, h, w, 3), got {images.shape}")
    r, c, h, w, _ = images.shape
    canvas = np.full((r * (h + pad) + pad, c * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = images[i, j]
    return Image.fromarray(canvas)
