"""The fused engine: a compiler from the graph IR to fused kernel calls, and its runtime.

    plan = compile_plan(graph, params, options=FusedOptions())
    for n, logits in plan.run(x, last): ...

``ItNet`` (``minitnet.engine``) compiles one plan per input size and runs it by
default. The compiler is a chain of passes that each return data:

``fuse.find_fusions``    bottleneck chains (expand, depthwise, project: one kernel over
                         row bands whose 150-channel map stays in L2) and max pool +
                         the BN after it (one kernel) -> ``Fusions``
``place.place_values``   padded buffers (one-pixel zero border: ``kernels.padded``);
                         producers write straight into the channel slot of the concat
                         that consumes them -> ``Placement``
``select.select_conv``   the kernel of each remaining conv: Winograd F(2x2, 3x3) for 3x3
                         stride 1, one sgemm per tap for 1x1, band-wise im2col when
                         strided -> ``ConvChoice``
``lower.lower_graph``    the four blocks a run executes as lists of ``LoweredOp`` -> ``Program``

``plan.FusedPlan`` runs a ``Program`` on ``Graph.phases`` (the loop's one definition),
dispatching each op through the table ``kinds.KINDS``. Every kernel splits its work
over ``numba.get_num_threads()`` workers, with BLAS single-threaded inside them; bias,
residual and activation are the kernels' epilogue. ``FusedOptions`` holds the tuning
knobs (band sizes, the Winograd threshold).
"""
from __future__ import annotations

from ..graph import Graph
from ..kernels import blas
from .fuse import Fusions, find_fusions
from .lower import Program, lower_graph
from .options import FusedOptions
from .place import Placement, place_values
from .plan import FusedPlan
from .select import ConvChoice, select_conv

__all__ = ["FusedOptions", "FusedPlan", "Program", "compile_plan", "lower_graph", "Fusions", "find_fusions",
           "Placement", "place_values", "ConvChoice", "select_conv"]


def compile_plan(graph: Graph, params: dict, prepared: dict | None = None,
                 options: FusedOptions | None = None) -> FusedPlan | None:
    """The fused plan of ``graph`` with folded ``params``, or None when a node has no fused
    lowering. ``prepared``: a cache of weights in kernel layout to share between plans."""
    options = FusedOptions() if options is None else options
    program = lower_graph(graph, options)
    if program is None:
        return None
    blas.warm_up()
    return FusedPlan(program, graph, params, {} if prepared is None else prepared, options)
