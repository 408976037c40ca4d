"""Reading a sweep's results: a text summary and a plot of mIoU per output against each swept field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .sweep import FLOAT, SweepResult, format_value as _fmt

__all__ = ["summary", "plot_sweep"]

def summary(res: SweepResult) -> str:
    """Text: per weights and setting, mIoU (%) mean +- std over chips at the first, the last and
    the best output."""
    t = res.table
    if not len(t):
        return "no rows"
    groups = list(t.groupby(["weights", "setting"], sort=False))
    ww = max(7, *(len(Path(w).name) for (w, _), _ in groups))
    sw = max(7, *(len(s) for (_, s), _ in groups))
    lines = [f"{res.cells} cells ({res.cells_run} run now, {res.tasks_run} tasks); mIoU (%) mean ± std over chips",
             "", f"{'weights':<{ww}} {'setting':<{sw}} {'chips':>5} {'first':>13} {'last':>13} {'best (output)':>18}"]
    for (w, s), g in groups:
        per = g.groupby("output", sort=True)["miou"]
        mean, std = per.mean() * 100, per.std(ddof=1).fillna(0.0) * 100
        chips = g["chip"].nunique()
        best = mean.idxmax() if mean.notna().any() else mean.index[-1]

        def cell(o):
            return f"{mean[o]:6.2f} ± {std[o]:4.2f}" if chips > 1 else f"{mean[o]:6.2f}       "

        lines.append(f"{Path(w).name:<{ww}} {s:<{sw}} {chips:>5} {cell(mean.index[0]):>13} "
                     f"{cell(mean.index[-1]):>13} {cell(best):>13} ({best})")
    return "\n".join(lines)


def plot_sweep(res: SweepResult, path, title: str | None = None, dpi: int = 120) -> str:
    """mIoU of every output against each swept field: one row of panels per weights file, one
    panel per field (x: the field's values, equally spaced), one line per output (mean over
    chips, and over the other swept fields; band: +- one std over chips)."""
    from minitnet.plots import require_matplotlib, save_figure

    Figure, FigureCanvasAgg = require_matplotlib()
    t = res.table
    t = t[t["preset"] != FLOAT] if len(t) else t
    fields = list(res.fields)
    if not len(t) or not fields:
        raise ConfigError("sweep --plot: nothing to draw (no swept field: give --set FIELD=V1,V2)")
    files = list(dict.fromkeys(t["weights"]))
    fig = Figure(figsize=(4.4 * len(fields) + 1.6, 3.6 * len(files) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(files), len(fields), sharey=True, squeeze=False)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    outputs = sorted(set(int(o) for o in t["output"]))
    norm = (lambda o: 0.0) if len(outputs) == 1 else (lambda o: (o - outputs[0]) / (outputs[-1] - outputs[0]))
    for r, w in enumerate(files):
        tw = t[t["weights"] == w]
        for c, f in enumerate(fields):
            ax = axes[r][c]
            vals = [v for v in dict.fromkeys(tw[f].tolist())
                    if v is not None and not (isinstance(v, float) and math.isnan(v))]
            try:
                vals = sorted(vals)
            except TypeError:
                pass
            x = np.arange(len(vals))
            for o in outputs:
                to = tw[tw["output"] == o]
                # per chip: mean over the other swept fields; then mean and std over chips
                per = [to[to[f] == v].groupby("chip")["miou"].mean() * 100 for v in vals]
                mean = np.array([s.mean() for s in per])
                std = np.array([s.std(ddof=1) if len(s) > 1 else 0.0 for s in per])
                colour = cmap(0.9 * norm(o))
                ax.plot(x, mean, "o-", ms=3, lw=1.3, color=colour, label=f"output {o}")
                ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.12, lw=0)
            ax.set_xticks(x, [_fmt(v) for v in vals])
            ax.set_xlabel(f + ("" if len(fields) == 1 else "  (mean over the other fields)"), fontsize=9)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(f"{Path(w).name}\nmIoU (%)", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if len(handles) > 8:  # many outputs: label a few, the colour runs from the first to the last
        keep = sorted({0, len(handles) // 3, 2 * len(handles) // 3, len(handles) - 1})
        handles, labels = [handles[i] for i in keep], [labels[i] for i in keep]
    fig.legend(handles, labels, loc="outside right center", fontsize=8,
               title="mean ± std\nover chips", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi)
