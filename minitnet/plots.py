"""Plots of the paper's measures (needs the optional ``plot`` extra: matplotlib).

matplotlib is imported inside the functions, so importing minitnet never needs
it; a missing install raises MinitnetError with the command that fixes it.
Figures are drawn with the Agg canvas (no display, no global pyplot state).
"""

from __future__ import annotations

import os
from typing import Sequence

from .errors import MinitnetError, ShapeError

__all__ = ["require_matplotlib", "anytime_figure", "plot_anytime", "save_figure"]

INSTALL_HINT = "pip install 'minitnet[plot]' (or: pip install matplotlib)"


def require_matplotlib():
    """Import matplotlib's Figure and Agg canvas, or raise MinitnetError with an install hint."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MinitnetError(f"plotting needs matplotlib, which is not installed ({e}); {INSTALL_HINT}") from None
    return Figure, FigureCanvasAgg


def anytime_figure(outputs: Sequence[int], miou: Sequence[float], macs: Sequence[float],
                   latency: Sequence[int], title: str | None = None, y0: float | None = None):
    """The anytime curves of the paper's Figure 5: mIoU (%) of every output over GMACs
    (left) and over latency in conv layers (right), each point labelled with its output n.
    Returns a matplotlib Figure."""
    k = len(outputs)
    if not (len(miou) == len(macs) == len(latency) == k) or k == 0:
        raise ShapeError(f"anytime_figure: outputs, miou, macs and latency need the same non-zero length, got "
                         f"{len(outputs)}, {len(miou)}, {len(macs)}, {len(latency)}")
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    y = [100.0 * v for v in miou]
    gmacs = [m / 1e9 for m in macs]
    for ax, x, xlabel in zip(fig.subplots(1, 2, sharey=True), (gmacs, list(latency)),
                             ("MACs of output n (billions)", "latency (conv layers on the longest path)")):
        ax.plot(x, y, "o-", color="tab:purple", lw=1.5, ms=4)
        for n, xi, yi in zip(outputs, x, y):
            ax.annotate(str(n), (xi, yi), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
        if y0 is not None:
            ax.axhline(100.0 * y0, color="0.6", lw=0.8, ls="--", label="chance level (y0)")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_xlim(0, 1.08 * max(x))
        ax.margins(y=0.12)
        ax.grid(alpha=0.3)
    fig.axes[0].set_ylabel("mIoU (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_anytime(path, outputs, miou, macs, latency, title: str | None = None, y0: float | None = None,
                 dpi: int = 120) -> str:
    """Draw ``anytime_figure`` into ``path`` (format from the suffix: .png, .pdf, .svg). Returns the path."""
    return save_figure(anytime_figure(outputs, miou, macs, latency, title=title, y0=y0), path, dpi)


def save_figure(fig, path, dpi: int = 120) -> str:
    """Write a matplotlib Figure to ``path`` (format from the suffix); a missing folder or a
    failed write raises MinitnetError naming the path. Returns the path."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise MinitnetError(f"cannot write plot {path}: folder {parent} does not exist")
    try:
        fig.savefig(path, dpi=dpi)
    except (OSError, ValueError) as e:
        raise MinitnetError(f"cannot write plot {path}: {e}") from None
    return path
