"""The mapping report: tiles, cells and utilisation per unique conv layer, for the shared and
the independent (unrolled) form of a configuration, and its text table."""

from __future__ import annotations

import dataclasses

from minitnet.engine import ItNet
from minitnet.graph import Graph, build_graph

from .config import HardwareConfig
from .crossbar import check_hw
from .tiles import plan_graph

__all__ = ["mapping_report", "format_report"]


def _graph_of(source, height, width) -> Graph:
    from minitnet.config import ItNetConfig

    h = 360 if height is None else height
    w = 480 if width is None else width
    if isinstance(source, Graph):
        if height is not None or width is not None:
            return build_graph(source.config, h, w)
        return source
    if isinstance(source, ItNet):
        return source.graph(h, w)
    if isinstance(source, ItNetConfig):
        return build_graph(source, h, w)
    raise TypeError(f"mapping_report: expected an ItNet, a Graph or an ItNetConfig, got {type(source).__name__}")


def _layer_rows(g: Graph, hw: HardwareConfig) -> list[dict]:
    block, runs = {}, {}
    for st in g.schedule():
        if st.layer is None or st.node.op != "conv":
            continue
        block.setdefault(st.layer, st.block)
        runs[st.layer] = runs.get(st.layer, 0) + 1
    rows = []
    for name, plan in plan_graph(g, hw).items():
        lay = g.layers[name]
        oh, ow = lay.out_size
        rows.append({
            "layer": name, "block": block.get(name, "-"), "kind": "depthwise" if plan.depthwise else "dense",
            "rows": plan.rows, "cols": plan.cols, "row_pieces": len(plan.row_splits),
            "col_pieces": len(plan.col_splits), "tiles": plan.tiles, "cells": plan.cells, "weights": plan.weights,
            "utilisation": plan.utilisation, "executions": runs.get(name, 0),
            "tile_mvms": runs.get(name, 0) * plan.tiles * oh * ow,
        })
    return rows


def _totals(rows: list[dict]) -> dict:
    def agg(sel):
        t = sum(r["tiles"] for r in sel)
        cells = sum(r["cells"] for r in sel)
        wts = sum(r["weights"] for r in sel)
        return {"layers": len(sel), "tiles": t, "cells": cells, "weights": wts,
                "utilisation": wts / cells if cells else 0.0, "tile_mvms": sum(r["tile_mvms"] for r in sel)}

    out = agg(rows)
    for key, sel in (("dense", [r for r in rows if r["kind"] == "dense"]),
                     ("depthwise", [r for r in rows if r["kind"] == "depthwise"])):
        out[key] = agg(sel)
    for b in ("data", "body", "head"):
        out[f"{b}_tiles"] = sum(r["tiles"] for r in rows if r["block"] == b)
    return out


def mapping_report(source, hw: HardwareConfig, height: int | None = None, width: int | None = None) -> dict:
    """Tiles and cells per unique conv layer, utilisation, and totals for the shared and the
    independent (unrolled) form of the same configuration.

    ``source``: an ItNet, a Graph or an ItNetConfig. Tile counts do not depend on the input
    size; ``executions`` (per image run) and ``tile_mvms`` (tile activations per image:
    executions x tiles x output pixels) are at ``height`` x ``width`` (default: the graph's
    own size, else CamVid's 360 x 480).

    Returns a JSON-ready dict: ``tile`` (rows, cols), ``config``, ``size``, ``layers`` (this
    configuration, one dict per layer), ``totals`` with ``this``, ``shared`` and
    ``independent`` (each: layers, tiles, cells, weights, utilisation, tile_mvms, the
    dense/depthwise split and data/body/head tiles) and ``saving`` (independent tiles /
    shared tiles).
    """
    check_hw(hw, "mapping_report")
    g = _graph_of(source, height, width)
    cfg = g.config
    rows = _layer_rows(g, hw)
    other = build_graph(dataclasses.replace(cfg, shared=not cfg.shared), g.height, g.width)
    other_totals = _totals(_layer_rows(other, hw))
    this = _totals(rows)
    shared, independent = (this, other_totals) if cfg.shared else (other_totals, this)
    return {
        "tile": {"rows": hw.rows, "cols": hw.cols},
        "config": cfg.to_dict(),
        "size": {"height": g.height, "width": g.width},
        "layers": rows,
        "totals": {"this": this, "shared": shared, "independent": independent},
        "saving": independent["tiles"] / shared["tiles"],
    }


def format_report(report: dict, layers: bool = True) -> str:
    """The mapping report as a readable table."""
    cfg = report["config"]
    tr, tc = report["tile"]["rows"], report["tile"]["cols"]
    mode = "shared" if cfg["shared"] else "independent"
    lines = [f"mapping onto {tr}x{tc} tiles: L={cfg['levels']} K={cfg['blocks']} N={cfg['iterations']} "
             f"f={cfg['width']}, {mode} weights, {report['size']['height']}x{report['size']['width']} input"]
    if layers:
        lines.append(f"  {'layer':<28} {'block':<5} {'kind':<9} {'rows':>5} {'cols':>5} {'tiles':>5} "
                     f"{'util %':>7} {'runs':>4}")
        for r in report["layers"]:
            lines.append(f"  {r['layer']:<28} {r['block']:<5} {r['kind']:<9} {r['rows']:>5} {r['cols']:>5} "
                         f"{r['tiles']:>5} {100 * r['utilisation']:>7.2f} {r['executions']:>4}")
    lines.append(f"  {'graph':<12} {'tiles':>6} {'(dense':>7} {'+ dw)':>6} {'cells':>12} {'weights':>10} "
                 f"{'util %':>7} {'tile MVMs/img':>14}")
    for key in ("shared", "independent"):
        t = report["totals"][key]
        mark = " <- this" if key == mode else ""
        lines.append(f"  {key:<12} {t['tiles']:>6} {t['dense']['tiles']:>7} {t['depthwise']['tiles']:>6} "
                     f"{t['cells']:>12,} {t['weights']:>10,} {100 * t['utilisation']:>7.2f} "
                     f"{t['tile_mvms']:>14,}{mark}")
    dw = report["totals"]["this"]["depthwise"]
    if dw["tiles"]:
        lines.append(f"  depthwise layers packed block-diagonally: {dw['weights']:,} weights on {dw['cells']:,} "
                     f"cells ({100 * dw['utilisation']:.2f} % used)")
    lines.append(f"  independent / shared tiles: {report['saving']:.2f}x")
    return "\n".join(lines)
