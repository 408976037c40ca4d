"""Float32 arrays handed out again once their caller has dropped them.

Fresh memory costs a page fault per page, a large share of a run whose outputs are
big maps (the logits of every anytime output, the emulator's activations). A
``Recycler`` keeps the arrays it hands out and hands one out again when nothing
but the recycler refers to it any more (``sys.getrefcount``: a view keeps its base
alive, so an array whose view the caller holds is never reused).
"""
import sys
import threading

import numpy as np


class Recycler:
    """``empty(shape)``: a float32 array of ``shape``, a dropped one when there is one.

    ``cap``: how many arrays of one shape to keep (None: no limit; beyond the cap new
    arrays are handed out and not kept). Thread-safe; ``clear()`` drops them all.
    """

    def __init__(self, cap: int | None = None):
        self.cap = cap
        self.free: dict = {}
        self.lock = threading.Lock()
        self.unused = self._count([np.empty(0, np.float32)])  # the count of an array only the recycler holds

    @staticmethod
    def _count(arrays) -> int:
        for a in arrays:  # the same references as in ``empty``: the list, the loop variable, the call
            return sys.getrefcount(a)

    def empty(self, shape) -> np.ndarray:
        with self.lock:
            arrays = self.free.setdefault(tuple(shape), [])
            for a in arrays:
                if sys.getrefcount(a) <= self.unused:
                    return a
            a = np.empty(shape, np.float32)
            if self.cap is None or len(arrays) < self.cap:
                arrays.append(a)
            return a

    def clear(self):
        with self.lock:
            self.free.clear()
