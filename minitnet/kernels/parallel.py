"""Parallel kernels whose code numba compiles once: a serial worker run on numba's threads.

numba compiles the body of a ``prange`` loop into a gufunc and links it, whole, into three
more LLVM modules (the gufunc's wrapper, the parallel launcher, the calling function); LLVM
optimises each and compiles it to machine code again, so a kernel's code is compiled four
times, and every ``prange`` kernel pays numba's parfor passes. That was most of a cold start.

Here a kernel is a serial ``worker(w, *args)``: worker ``w`` of ``T = args[-1]`` does its
share (what one ``prange(T)`` iteration did). It is compiled once, for one explicit
signature, and reached by address through three small pieces:

- ``_enter(*args)`` (one compiled version per kernel, called from Python): checks the
  argument types, copies the arguments to its stack and calls ``_run`` by address;
- ``_run(entry, worker, p, T)``: the one ``prange`` loop of the package, compiled once for
  every kernel (its arguments are integers), calls ``entry(w, p)`` for w < T on numba's
  threads;
- ``_entry`` (one version per kernel, typed by the argument tuple) loads the arguments
  from ``p`` and calls the worker through its C wrapper.

Same threads, same split of the work, same arithmetic: outputs and speed do not change.

    @parallel_kernel("float32[:, ::1], float32[:, ::1], int64")
    def double(w, x, out, T):          # rows w, w + T, ... of x
        for i in range(w, x.shape[0], T):
            out[i] = 2 * x[i]

    double(x, out, 2)                  # workers 0 and 1 on numba's threads

A call must match the signature (array dtypes, ranks, C order, writeable; integers are
int64, booleans bool): ``_enter`` compares the types when it is compiled for a call and
raises ``TypeError`` otherwise, so a worker never runs on other types. Everything is
``cache=True``; ``ParallelKernel.compile()`` compiles a kernel (or loads it from numba's
cache) without running it.
"""
from __future__ import annotations

import threading
import types as pytypes
import zlib

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils, sigutils
from numba.extending import intrinsic

__all__ = ["ParallelKernel", "parallel_kernel", "F32_1D", "F32_2D", "F32_3D", "F32_4D"]

#: C-contiguous float32 arrays in numba's signature syntax, for the kernels' signatures
F32_1D, F32_2D, F32_3D, F32_4D = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]", "float32[:, :, :, ::1]"

_MISMATCH = "minitnet parallel kernel: the arguments' types differ from the kernel's signature"
_I64 = ir.IntType(64)
_NULL = ir.Constant(ir.IntType(8).as_pointer(), None)


def _key(argtypes) -> int:
    """A number naming a tuple of numba types, the same in every process."""
    return zlib.crc32("|".join(str(t) for t in argtypes).encode())


def _call_address(context, builder, addr, args: list):
    """Call the void C function at integer ``addr`` with LLVM values ``args``."""
    fnty = ir.FunctionType(context.get_value_type(types.none), [a.type for a in args])
    builder.call(builder.inttoptr(addr, fnty.as_pointer()), args)
    return context.get_dummy_value()


@intrinsic
def _signature_key(typingctx, args):
    """``_key`` of the types of the tuple ``args``: a compile-time constant."""
    key = _key(args.types)

    def codegen(context, builder, sig, llargs):
        return context.get_constant(types.int64, key)
    return types.int64(args), codegen


@intrinsic
def _pack(typingctx, args):
    """The address of a copy of the tuple ``args`` on the caller's stack."""
    def codegen(context, builder, sig, llargs):
        return builder.ptrtoint(cgutils.alloca_once_value(builder, llargs[0]), _I64)
    return types.intp(args), codegen


@intrinsic
def _call_run(typingctx, run, entry, worker, p, T):
    """``run(entry, worker, p, T)`` through the C wrapper at ``run``."""
    def codegen(context, builder, sig, llargs):
        return _call_address(context, builder, llargs[0], list(llargs[1:]))
    return types.none(run, entry, worker, p, T), codegen


@intrinsic
def _call_entry(typingctx, entry, w, p, worker):
    """``entry(w, p, worker, NULL)`` (the C wrapper of an ``_entry`` version; NULL its type argument)."""
    def codegen(context, builder, sig, llargs):
        return _call_address(context, builder, llargs[0], [*llargs[1:], _NULL])
    return types.none(entry, w, p, worker), codegen


def _borrowed(context, builder, typ, value):
    """``value`` of numba type ``typ`` with every array in it (tuples too) borrowed: no meminfo,
    no parent. The worker's views of it then skip numba's reference counting (atomic counts
    on the same few buffers from every thread), as in a ``prange`` body; the caller holds
    the arrays for the whole call."""
    if isinstance(typ, types.Array):
        ary = context.make_array(typ)(context, builder, value=value)
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()
    if isinstance(typ, types.BaseTuple):
        for i, t in enumerate(typ.types):
            value = builder.insert_value(value, _borrowed(context, builder, t, builder.extract_value(value, i)), i)
    return value


@intrinsic
def _call_worker(typingctx, worker, w, p, tupref):
    """``worker(w, *args)`` with ``args`` the tuple of type ``tupref`` stored at ``p`` (arrays
    borrowed): numba's C wrapper of a worker takes each argument as its LLVM value."""
    tup = tupref.instance_type

    def codegen(context, builder, sig, llargs):
        addr, wv, pv, _ = llargs
        packed = builder.load(builder.inttoptr(pv, context.get_value_type(tup).as_pointer()))
        args = [_borrowed(context, builder, t, v) for t, v in zip(tup.types, cgutils.unpack_tuple(builder, packed, len(tup)))]
        return _call_address(context, builder, addr, [wv, *args])
    return types.none(worker, w, p, tupref), codegen


def _run(entry, worker, p, T):
    for w in prange(T):
        _call_entry(entry, np.int64(w), p, worker)


def _entry(w, p, worker, tupref):
    _call_worker(worker, w, p, tupref)


def _enter(run, entry, worker, key, *args):
    if key != _signature_key(args):
        raise TypeError(_MISMATCH)
    _call_run(run, entry, worker, _pack(args), args[-1])


def _own_copy(func, kernel):
    """``func`` under a name of ``kernel``'s own: numba caches it in a file of its own, so two
    processes compiling different kernels at once never write the same cache file."""
    copy = pytypes.FunctionType(func.__code__, func.__globals__, func.__name__)
    copy.__qualname__ = f"{func.__name__}__{kernel.__module__.replace('.', '_')}__{kernel.__qualname__}"
    return copy


_RUN_SIG = types.none(types.intp, types.intp, types.intp, types.int64)
_LOCK = threading.Lock()
_RUN = []


def _c_address(dispatcher, sig) -> int:
    """The address of the C wrapper of ``dispatcher``'s version for ``sig``."""
    cres = dispatcher.overloads[sig.args]
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_cfunc_wrapper_name)


def _run_address() -> int:
    if not _RUN:
        _RUN.append(_c_address(numba.njit(_RUN_SIG, parallel=True, cache=True, nogil=True)(_run), _RUN_SIG))
    return _RUN[0]


class ParallelKernel:
    """``kernel(*args)`` runs ``worker(w, *args)`` for every w < T = args[-1] on numba's threads
    (module docstring). ``worker``: numba's dispatcher of the worker, made on first use."""

    def __init__(self, worker, signature: str, weight: float = 1.0, **options):
        self.py_worker, self.signature, self.weight, self.options = worker, signature, weight, options
        self.argtypes = tuple(sigutils._parse_signature_string(f"none({signature})").args)
        if not self.argtypes or self.argtypes[-1] != types.int64:
            raise TypeError(f"parallel_kernel {worker.__name__}({signature}): the last argument must be "
                            f"the worker count T (int64)")
        self.worker = None
        self._key, self._addresses = _key(self.argtypes), None
        self._enter = numba.njit(cache=True, nogil=True)(_own_copy(_enter, worker))
        for name in ("__doc__", "__name__", "__qualname__", "__module__"):
            setattr(self, name, getattr(worker, name))
        self.__wrapped__ = worker

    def _compile_parts(self) -> tuple:
        """(run, entry, worker) addresses, compiled (or loaded from numba's cache) once."""
        with _LOCK:
            if self._addresses is None:
                wsig = types.none(types.int64, *self.argtypes)
                opts = {"error_model": "numpy", **self.options}  # numba's model for a prange body
                self.worker = numba.njit(wsig, cache=True, nogil=True, no_cpython_wrapper=True, **opts)(self.py_worker)
                esig = types.none(types.int64, types.intp, types.intp, types.TypeRef(types.Tuple(self.argtypes)))
                entry = numba.njit(esig, cache=True, nogil=True, no_cpython_wrapper=True)(_own_copy(_entry, self))
                self._addresses = (_run_address(), _c_address(entry, esig), _c_address(self.worker, wsig))
        return self._addresses

    @property
    def name(self) -> str:
        """``module:qualname``, how a compile helper process finds the kernel."""
        return f"{self.__module__}:{self.__qualname__}"

    def cached(self) -> bool:
        """Whether numba's cache holds the worker (the kernel's costly part) for this machine.
        Reads the cache index only (numba's internal API): True when it cannot tell."""
        if self._addresses is not None:
            return True
        try:
            from numba.core.caching import FunctionCache
            from numba.core.registry import cpu_target

            cache = FunctionCache(self.py_worker)
            key = cache._index_key(types.none(types.int64, *self.argtypes), cpu_target.target_context.codegen())
            return key in cache._cache_file._load_index()
        except Exception:  # noqa: BLE001  (an internal API changed: assume cached, compile as usual)
            return True

    def __call__(self, *args):
        self._enter(*(self._addresses or self._compile_parts()), self._key, *args)

    def compile(self) -> None:
        """Compile the kernel (or load it from numba's cache) without running a worker."""
        self._enter(*self._compile_parts(), self._key, *(_dummy(t) for t in self.argtypes[:-1]), 0)

    def __repr__(self):
        return f"<parallel kernel {self.__module__}.{self.__name__}({self.signature})>"


def _dummy(t):
    """A value of numba type ``t`` (arrays empty): the arguments of a compile-only call."""
    if isinstance(t, types.Array):
        return np.zeros((0,) * t.ndim, t.dtype.name)
    if isinstance(t, types.BaseTuple):
        return tuple(_dummy(e) for e in t.types)
    if isinstance(t, (types.Boolean, types.Integer)):
        return t.cast_python_value(0)
    raise TypeError(f"parallel_kernel: no value for type {t}")


def parallel_kernel(signature: str, weight: float = 1.0, **options):
    """Decorator: ``worker(w, *args)`` -> a ``ParallelKernel`` taking ``args`` of ``signature``
    (numba's types, comma-separated; the last is the worker count T, int64). ``weight``: its
    compile time, about, in CPU seconds (what ``minitnet.jit.compile_kernels`` splits a cold
    start by); ``options`` go to ``numba.njit`` for the worker."""
    def wrap(worker):
        return ParallelKernel(worker, signature, weight, **options)
    return wrap
