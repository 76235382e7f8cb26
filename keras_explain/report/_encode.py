"""Pictures and markup of a report: PNG data URIs, colour tables, token and bar HTML."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from keras_explain import visualize

#: Colormaps offered on the page: diverging ones for the signed view, sequential
#: ones for the absolute view (any of them can be chosen with either).
COLORMAPS = ("bwr", "seismic", "coolwarm", "RdBu_r", "Reds", "inferno", "viridis", "gray")
#: The percentile of |relevance| that maps to full colour, as in kx.visualize.
PERCENTILE = 99.5


def quantize(maps: np.ndarray) -> np.ndarray:
    """Signed maps ``(..., H, W)`` to uint8: ``128 + round(127 v)``, ``v`` normalized to [-1, 1].

    ``v`` is each map divided by the 99.5th percentile of its magnitude and
    clipped (:func:`keras_explain.visualize.normalize`, symmetric), so 128 is
    zero relevance, 255 the strongest positive and 1 the strongest negative.
    """
    shape = maps.shape
    flat = maps.reshape((-1,) + shape[-2:])
    values = visualize.normalize(flat, percentile=PERCENTILE, symmetric=True)
    return (128 + np.round(127 * values)).astype(np.uint8).reshape(shape)


def png_uri(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of uint8 pixels ``(H, W)`` or ``(H, W, 3)``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def input_uris(x: np.ndarray) -> list[str]:
    """One PNG per image, min-max scaled per image (:func:`keras_explain.visualize.as_rgb`)."""
    pixels = visualize.to_uint8(visualize.as_rgb(x))
    if x.shape[-1] != 3:  # gray (as_rgb averages other channel counts): one channel
        pixels = pixels[..., 0]
    return [png_uri(image) for image in pixels]


def colour_tables() -> dict[str, list[list[int]]]:
    """256 RGB colours per colormap of :data:`COLORMAPS` (the page colours maps with them)."""
    positions = np.arange(256, dtype=np.float32) / 255.0
    return {
        name: visualize.to_uint8(visualize.colormap(positions, name)).tolist() for name in COLORMAPS
    }


def _colour(value: float) -> str:
    red, green, blue = visualize.to_uint8(visualize.colormap((value + 1.0) / 2.0, "bwr"))
    return f"rgb({red},{green},{blue})"


def bars_svg(values: Sequence[float], names: Sequence[str], scale: float) -> str:
    """Signed horizontal bars, one per feature, from a centre line; ``scale`` is full width.

    A bar of value ``v`` is ``100 * |v| / scale`` units wide (half the 200-unit
    plot), to the right when positive (red) and to the left when negative (blue).
    """
    scale = scale if scale > 0 else 1.0
    row, label_width, half = 16, 90, 100
    parts = []
    for index, (name, value) in enumerate(zip(names, values)):
        width = half * min(abs(value) / scale, 1.0)
        left = label_width + half - (width if value < 0 else 0.0)
        y = index * row
        parts.append(
            f'<text x="{label_width - 4}" y="{y + 12}" text-anchor="end">'
            f"{html.escape(str(name))}</text>"
            f'<rect x="{left:.2f}" y="{y + 2}" width="{width:.2f}" height="{row - 4}" '
            f'fill="{_colour(value / scale)}" stroke="#777" stroke-width="0.5">'
            f"<title>{value:.4g}</title></rect>"
        )
    height = row * len(parts)
    centre = label_width + half
    return (
        f'<svg class="bars" viewBox="0 0 {label_width + 2 * half} {height}" '
        f'width="{label_width + 2 * half}" height="{height}">'
        + "".join(parts)
        + f'<line x1="{centre}" x2="{centre}" y1="0" y2="{height}" stroke="#333"/></svg>'
    )


def page(data: dict[str, Any], title: str, stem: str = "_page") -> str:
    """An HTML page: the template ``stem.html`` with ``stem``'s CSS, JavaScript and ``data``.

    ``"_page"`` is the report's page, ``"_spray"`` SpRAy's.
    """
    folder = resources.files("keras_explain.report")
    template = (folder / f"{stem}.html").read_text(encoding="utf-8")
    # "</" would end the <script> element early; "<\/" is the same JSON string.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (
        template.replace("{{TITLE}}", html.escape(title))
        .replace("{{CSS}}", (folder / f"{stem}.css").read_text(encoding="utf-8"))
        .replace("{{JS}}", (folder / f"{stem}.js").read_text(encoding="utf-8"))
        .replace("{{DATA}}", payload)
    )


def writable(out: Any, owner: str) -> str:
    """``out`` as an absolute file path in a writable folder.

    Raises:
        ValueError: For an ``out`` that is not a path.
        OSError: For a folder that does not exist or cannot be written, or a folder
            given as ``out``.
    """
    if not isinstance(out, str | os.PathLike) or not str(out):
        raise ValueError(f"{owner}: out must be a file path. Received: out={out!r}.")
    path = os.path.abspath(os.fspath(out))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(
            f"{owner}: cannot write {path!r}: the folder {folder!r} does not exist or is not "
            "writable. Create it or pass out= a path in a writable folder."
        )
    if os.path.isdir(path):
        raise OSError(f"{owner}: out={path!r} is a folder. Pass a file name such as page.html.")
    return path


def version() -> str:
    """keras_explain's version, for a page's summary."""
    from keras_explain import __version__

    return __version__
