"""Pass 1 of the fused compiler: find the node groups that run as one kernel.

``find_fusions`` reads a block's nodes and returns ``Fusions`` (data, no side
effects):

- a bottleneck chain: 1x1 conv + ReLU6 -> depthwise 3x3 + ReLU6 -> 1x1 linear conv
  adding the chain's input, each value read only by the next
  (``padded.bottleneck_nchwp``);
- a max pool read only by a per-channel affine (the stems' BN after the pooled
  channels): one pooling kernel with the affine as its epilogue;
- aliases: a max pool of kernel 1 is its input.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import ACT_NONE, ACT_RELU6, Graph, Node

__all__ = ["Fusions", "find_fusions"]


@dataclass(frozen=True)
class Fusions:
    """The fused groups of one block.

    chains:      {expand node name: (expand, depthwise, project)} bottleneck chains
    pool_affine: {max pool name: the affine node that alone reads it}
    alias:       {value: the value it equals} (pools of kernel 1)
    inner:       values made and read only inside a group: they get no buffer
    tails:       nodes run as the last part of a group (not lowered on their own)
    """

    chains: dict
    pool_affine: dict
    alias: dict
    inner: frozenset
    tails: frozenset


def _uses(nodes) -> dict:
    """{value: [nodes reading it (input or residual)]}."""
    uses: dict[str, list] = {}
    for nd in nodes:
        for i in nd.inputs + ((nd.residual,) if nd.residual else ()):
            uses.setdefault(i, []).append(nd)
    return uses


def _is_1x1(layer) -> bool:
    return layer.kernel_size == (1, 1) and layer.stride == 1 and layer.padding == 0 and layer.groups == 1


def _chain_at(graph: Graph, nd: Node, n: int, only_use):
    """(expand, depthwise, project) if ``nd`` starts a bottleneck chain, else None."""
    if nd.op != "conv" or not _is_1x1(graph.layer_of(nd, n)) or nd.act != ACT_RELU6 or nd.residual:
        return None
    dn = only_use(nd.name)
    if dn is None or dn.op != "conv" or dn.inputs != (nd.name,) or dn.act != ACT_RELU6 or dn.residual:
        return None
    ld = graph.layer_of(dn, n)
    if not (ld.depthwise and ld.kernel_size == (3, 3) and ld.stride == 1 and ld.padding == 1):
        return None
    pn = only_use(dn.name)
    if (pn is None or pn.op != "conv" or pn.inputs != (dn.name,) or not _is_1x1(graph.layer_of(pn, n))
            or pn.act != ACT_NONE or pn.residual != nd.inputs[0]):
        return None
    return nd, dn, pn


def find_fusions(graph: Graph, nodes, n: int, outputs: set, plain: set) -> Fusions:
    """The fused groups of ``nodes`` run at iteration n. A value in ``outputs`` (read after
    the block) or ``plain`` (made as a plain NCHW array) is never folded into a group."""
    uses = _uses(nodes)

    def only_use(v):
        u = uses.get(v, [])
        return u[0] if len(u) == 1 and v not in outputs and v not in plain else None

    chains, inner, tails = {}, set(), set()
    for nd in nodes:
        chain = _chain_at(graph, nd, n, only_use)
        if chain is not None:
            chains[nd.name] = chain
            inner.update((chain[0].name, chain[1].name))
            tails.add(chain[2].name)
    alias = {nd.name: nd.inputs[0] for nd in nodes if nd.op == "maxpool" and nd.attrs["kernel_size"] == 1}
    pool_affine = {}
    for nd in nodes:
        if nd.op == "maxpool" and nd.name not in alias:
            u = only_use(nd.name)
            if u is not None and u.op == "affine" and u.inputs == (nd.name,):
                pool_affine[nd.name] = u
                inner.add(nd.name)
                tails.add(u.name)
    return Fusions(chains, pool_affine, alias, frozenset(inner), frozenset(tails))
