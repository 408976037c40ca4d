"""Pass 2 of the fused compiler: where every value of a block lives.

Values live in padded buffers (``minitnet.kernels.padded``: (B, C, H + 2, W + 2)
with a zero border). A concat owns its buffer and each input made in the block
writes straight into its channel slot (the concat is never copied together);
inputs from outside the block, values folded into a fused group, aliases and
plain outputs are copied into their slot instead. Every other value gets a
buffer of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from .fuse import Fusions

__all__ = ["Placement", "place_values"]


@dataclass(frozen=True)
class Placement:
    """bufs:   {buffer key: (C, H, W)} the padded buffers the block writes
    place:  {value: (buffer key, channel offset)}
    copies: {concat name: [(value, channel offset, C)]} inputs copied into the concat's slot"""

    bufs: dict
    place: dict
    copies: dict


def place_values(nodes, shape: dict, fusions: Fusions, plain: set) -> Placement:
    """Placement of ``nodes``; ``shape``: (C, H, W) of every value the block reads or makes;
    ``plain``: values made as plain NCHW arrays (no buffer)."""
    made = {nd.name for nd in nodes}
    skip = set(fusions.alias) | fusions.inner | set(plain)
    place, bufs, copies = {}, {}, {}
    for nd in nodes:
        if nd.op != "concat":
            continue
        bufs[nd.name] = nd.shape
        place[nd.name] = (nd.name, 0)
        off, copies[nd.name] = 0, []
        for i in nd.inputs:
            if i in made and i not in place and i not in skip:
                place[i] = (nd.name, off)
            else:
                copies[nd.name].append((i, off, shape[i][0]))
            off += shape[i][0]
    for nd in nodes:
        if nd.name in place or nd.name in skip:
            continue
        bufs[nd.name] = nd.shape
        place[nd.name] = (nd.name, 0)
    return Placement(bufs, place, copies)
