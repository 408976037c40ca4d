"""pytest glue of the benchmarks: the pinned-threads fixture and the summary hooks.

The helpers live in ``benchutil.py`` (this folder is a package so that this file is
``benchmarks.conftest`` and never shadows ``tests/conftest.py``, which the tests import
as ``conftest``).

Summary: after the benchmarks, one line per group with each implementation's
median and its ratio to the fastest, plus the whole-network ratios
(minitnet / ONNX Runtime, minitnet / torch, output 1 / all outputs), peak memory
and the cached JIT start. The ``pytest_benchmark_update_json`` hook adds
``speedup_vs_torch`` (and ``_vs_onnxruntime``) per group to the JSON written by
``--benchmark-json`` / ``--benchmark-autosave``.
"""
import pytest

from .benchutil import FULL, NOTES, THREADS, _medians, pin_threads


@pytest.fixture(scope="session")
def threads():
    """The pinned thread settings, recorded by every benchmark."""
    return pin_threads(THREADS)


def pytest_terminal_summary(terminalreporter):
    med = _medians()
    if not med and not NOTES:
        return
    w = terminalreporter.write_line
    w("")
    w(f"minitnet benchmark summary ({'full size' if FULL else 'smoke size'}, {THREADS} threads): median ms (x the fastest of its group)")
    for group, m in med.items():
        best = min(m.values())
        w(f"  {group:<44} " + "  ".join(f"{impl} {t * 1e3:.3f} ({t / best:.2f}x)" for impl, t in m.items()))
    for suffix in ("all", "out1"):
        g = next((k for k in med if k.startswith("itnet:") and k.endswith(":" + suffix)), None)
        if g is None or "minitnet" not in med[g]:
            continue
        m = med[g]
        parts = [f"{other} {m['minitnet'] / m[other]:.3f}x" for other in ("onnxruntime", "torch") if other in m]
        w(f"  whole network ({suffix}): minitnet / " + ", minitnet / ".join(parts))
    for line in NOTES:
        w("  " + line)
    ga = next((k for k in med if k.startswith("itnet:") and k.endswith(":all")), None)
    g1 = next((k for k in med if k.startswith("itnet:") and k.endswith(":out1")), None)
    if ga and g1:
        w("  output 1 / all outputs: " + ", ".join(f"{i} {med[g1][i] / med[ga][i]:.3f}" for i in med[ga] if i in med[g1]))


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Add speedup_vs_torch = median(torch) / median(minitnet) per group (and vs ONNX Runtime)."""
    groups = {}
    for b in output_json.get("benchmarks", []):
        groups.setdefault(b.get("group"), {})[b.get("extra_info", {}).get("impl")] = b["stats"]["median"]
    summary = {}
    for g, m in groups.items():
        if "minitnet" in m:
            summary[g] = {f"speedup_vs_{o}": m[o] / m["minitnet"] for o in ("torch", "onnxruntime") if o in m}
            if summary[g]:
                print(f"{g}: " + ", ".join(f"{k} {v:.2f}" for k, v in summary[g].items()))
    output_json["minitnet_summary"] = summary
