"""Factorised matrices: TT-matrix, tensor ring, Tucker and CP (conventions in docs/method.md).

Each object is small and immutable: its cores (arrays of any array-API library), the in/out modes and
the ranks. It describes itself as a tensor network (`network()`), which `tedepr.contraction` plans and
executes; `to_dense()` reconstructs the ``(N_in, N_out)`` matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .namespace import get_namespace, is_array
from .shapes import check_format

__all__ = [
    "Factorized",
    "TTMatrix",
    "TRMatrix",
    "TuckerMatrix",
    "CPMatrix",
    "from_cores",
    "Network",
]


class Network:
    """Index labels of a factorised matrix as a tensor network.

    ``operands[k]`` holds the integer labels of ``cores[k]``'s axes; ``in_labels``/``out_labels`` are the
    labels of the in/out modes; ``chain`` is the order in which the sequential strategy contracts the
    cores into the input.
    """

    __slots__ = ("operands", "in_labels", "out_labels", "chain")

    def __init__(self, operands, in_labels, out_labels, chain):
        self.operands = tuple(tuple(o) for o in operands)
        self.in_labels = tuple(in_labels)
        self.out_labels = tuple(out_labels)
        self.chain = tuple(chain)


def _arrays(items, name: str, allow_none: bool = False) -> tuple:
    """``items`` as a tuple of arrays (None entries kept where allowed); `TypeError` naming
    ``name[k]`` for anything else, and for a string or non-sequence in place of the sequence."""
    if isinstance(items, (str, bytes)) or is_array(items) or not hasattr(items, "__iter__"):
        raise TypeError(f"{name} must be a sequence of arrays; got {type(items).__name__}")
    items = tuple(items)
    for k, c in enumerate(items):
        if not (is_array(c) or (allow_none and c is None)):
            raise TypeError(f"{name}[{k}] must be an array; got {type(c).__name__}")
    return items


def _modes_arg(modes, name: str) -> tuple[int, ...]:
    if isinstance(modes, (str, bytes)) or not hasattr(modes, "__iter__"):
        raise TypeError(f"{name} must be a sequence of positive ints; got {type(modes).__name__}")
    modes = tuple(modes)
    for m in modes:
        if isinstance(m, bool) or not hasattr(m, "__index__"):
            raise TypeError(f"{name} must be a sequence of positive ints; got {modes!r}")
    return tuple(int(m) for m in modes)


class Factorized:
    """Base class of the factorised matrix formats. Do not instantiate directly."""

    format: str = ""

    def __init__(self, cores, in_modes, out_modes, *, kernel_size=None, error=None):
        cores = tuple(cores)
        if not cores:
            raise ValueError("cores must hold at least one array")
        for k, c in enumerate(cores):
            if not is_array(c):
                raise TypeError(f"cores[{k}] must be an array; got {type(c).__name__}")
        self._xp = get_namespace(*cores)
        dtypes = {str(c.dtype) for c in cores}
        if len(dtypes) > 1:
            raise TypeError(f"cores must share one dtype; got {sorted(dtypes)}")
        self._cores = cores
        self._in_modes = tuple(int(m) for m in in_modes)
        self._out_modes = tuple(int(m) for m in out_modes)
        if kernel_size is not None:
            kernel_size = tuple(int(k) for k in kernel_size)
            if len(kernel_size) != 2 or min(kernel_size) < 1:
                raise ValueError(f"kernel_size must be two positive ints; got {kernel_size}")
            if self.in_features % (kernel_size[0] * kernel_size[1]):
                raise ValueError(
                    f"kernel_size={kernel_size} does not divide in_features={self.in_features}"
                )
        self._kernel_size = kernel_size
        self._error = None if error is None else float(error)

    # ------------------------------------------------------------------ properties
    @property
    def cores(self) -> tuple:
        """The trainable arrays, in the order of `network().operands`."""
        return self._cores

    @property
    def in_modes(self) -> tuple[int, ...]:
        return self._in_modes

    @property
    def out_modes(self) -> tuple[int, ...]:
        return self._out_modes

    @property
    def in_features(self) -> int:
        return math.prod(self._in_modes)

    @property
    def out_features(self) -> int:
        return math.prod(self._out_modes)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(N_in, N_out)`` of the matrix this represents."""
        return (self.in_features, self.out_features)

    @property
    def kernel_size(self) -> tuple[int, int] | None:
        """``(kh, kw)`` when this factorises a Conv2d kernel's matrix view (docs/method.md §2)."""
        return self._kernel_size

    @property
    def error(self) -> float | None:
        """Relative Frobenius error ``‖W − Ŵ‖/‖W‖`` when produced by `tedepr.decompose`, else None."""
        return self._error

    @property
    def dtype(self):
        return self._cores[0].dtype

    @property
    def num_params(self) -> int:
        """Number of core entries (the parameters the layer trains)."""
        return sum(math.prod(c.shape) for c in self._cores)

    @property
    def dense_params(self) -> int:
        return self.in_features * self.out_features

    @property
    def compression(self) -> float:
        """``N_in * N_out / num_params``."""
        return self.dense_params / self.num_params

    @property
    def ranks(self) -> tuple:
        raise NotImplementedError

    def network(self) -> Network:
        raise NotImplementedError

    # ------------------------------------------------------------------ operations
    def to_dense(self):
        """The reconstructed matrix, shape ``(N_in, N_out)``, in the cores' array library."""
        from .contraction import reconstruct

        return reconstruct(self)

    def to_kernel(self):
        """The Conv2d kernel ``(C_out, C_in, kh, kw)``; needs ``kernel_size``."""
        if self._kernel_size is None:
            raise ValueError(
                "to_kernel() needs a factorisation made for a Conv2d kernel (kernel_size)"
            )
        kh, kw = self._kernel_size
        xp = self._xp
        w = self.to_dense()
        return xp.reshape(xp.permute_dims(w, (1, 0)), (self.out_features, -1, kh, kw))

    def with_cores(self, cores: Sequence) -> Factorized:
        """A new object of the same format and modes with other cores (validated)."""
        return type(self)._rebuild(self, tuple(cores))

    @classmethod
    def _rebuild(cls, old, cores):
        return cls(cores, old.in_modes, old.out_modes, kernel_size=old.kernel_size)

    def __repr__(self) -> str:
        lib = type(self._cores[0]).__module__.split(".")[0]
        extra = f", kernel_size={self._kernel_size}" if self._kernel_size else ""
        err = f", error={self._error:.3g}" if self._error is not None else ""
        return (
            f"{type(self).__name__}(in_modes={self.in_modes}, out_modes={self.out_modes}, "
            f"ranks={self.ranks}, num_params={self.num_params}, "
            f"compression={self.compression:.1f}x, dtype={self.dtype}, library={lib}{extra}{err})"
        )


class _TensorTrainBase(Factorized):
    """Shared validation for TT-matrix and tensor ring: cores ``(r_{k-1}, n_k, m_k, r_k)``."""

    def __init__(self, cores, in_modes=None, out_modes=None, *, kernel_size=None, error=None):
        cores = _arrays(cores, "cores")
        for k, c in enumerate(cores):
            if len(c.shape) != 4:
                raise ValueError(
                    f"cores[{k}] of a {self.format.upper()} must have 4 axes (r_prev, n, m, r_next); "
                    f"got shape {tuple(c.shape)}"
                )
        derived_in = tuple(c.shape[1] for c in cores)
        derived_out = tuple(c.shape[2] for c in cores)
        for name, given, derived in (
            ("in_modes", in_modes, derived_in),
            ("out_modes", out_modes, derived_out),
        ):
            if given is not None and tuple(given) != derived:
                raise ValueError(f"{name}={tuple(given)} disagree with the cores' modes {derived}")
        for k in range(len(cores) - 1):
            if cores[k].shape[3] != cores[k + 1].shape[0]:
                raise ValueError(
                    f"cores[{k}] ends with rank {cores[k].shape[3]} but cores[{k + 1}] starts with "
                    f"rank {cores[k + 1].shape[0]}"
                )
        self._check_boundary(cores)
        super().__init__(cores, derived_in, derived_out, kernel_size=kernel_size, error=error)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(c.shape[0] for c in self._cores) + (self._cores[-1].shape[3],)

    def network(self) -> Network:
        d = len(self._cores)
        base = 2 * d
        bonds = [base + k for k in range(d + 1)]
        if self.format == "tr":
            bonds[d] = bonds[0]
        operands = [(bonds[k], k, d + k, bonds[k + 1]) for k in range(d)]
        return Network(operands, range(d), range(d, 2 * d), range(d))


class TTMatrix(_TensorTrainBase):
    """Tensor-train matrix (TT-matrix, Oseledets 2011; TT-layers, Novikov et al. 2015).

    ``cores[k]`` has shape ``(r_{k-1}, n_k, m_k, r_k)`` with ``r_0 = r_d = 1``.
    """

    format = "tt"

    def _check_boundary(self, cores):
        if cores[0].shape[0] != 1 or cores[-1].shape[3] != 1:
            raise ValueError(
                f"a TT-matrix needs boundary ranks r_0 = r_d = 1; got {cores[0].shape[0]} and "
                f"{cores[-1].shape[3]} (use TRMatrix for a ring)"
            )


class TRMatrix(_TensorTrainBase):
    """Tensor-ring matrix (Zhao et al. 2016; TR-Nets, Wang et al. 2018): a TT closed by a trace.

    ``cores[k]`` has shape ``(r_{k-1}, n_k, m_k, r_k)`` with ``r_0 = r_d``.
    """

    format = "tr"

    def _check_boundary(self, cores):
        if cores[0].shape[0] != cores[-1].shape[3]:
            raise ValueError(
                f"a tensor ring needs equal boundary ranks r_0 == r_d; got {cores[0].shape[0]} and "
                f"{cores[-1].shape[3]}"
            )


class TuckerMatrix(Factorized):
    """Tucker over the modes ``in_modes + out_modes`` (partial Tucker when some factors are None).

    ``core`` has shape ``(R_1, ..., R_{p+q})``; ``factors[k]`` is ``(dim_k, R_k)`` or None (mode kept in
    the core). ``cores`` is ``(core, *factors that are not None)``.
    """

    format = "tucker"

    def __init__(self, core, factors, in_modes, out_modes, *, kernel_size=None, error=None):
        in_modes, out_modes = _modes_arg(in_modes, "in_modes"), _modes_arg(out_modes, "out_modes")
        dims = in_modes + out_modes
        if not is_array(core):
            raise TypeError(f"core must be an array; got {type(core).__name__}")
        factors = _arrays(factors, "factors", allow_none=True)
        if len(factors) != len(dims):
            raise ValueError(
                f"factors must hold one entry (array or None) per mode of {dims}; got {len(factors)}"
            )
        if len(core.shape) != len(dims):
            raise ValueError(
                f"core must have {len(dims)} axes (one per mode of {dims}); got {tuple(core.shape)}"
            )
        for k, (f, dim) in enumerate(zip(factors, dims)):
            if f is None:
                if core.shape[k] != dim:
                    raise ValueError(
                        f"mode {k} has no factor, so core axis {k} must be {dim}; got {core.shape[k]}"
                    )
            elif tuple(f.shape) != (dim, core.shape[k]):
                raise ValueError(
                    f"factors[{k}] must have shape {(dim, core.shape[k])}; got {tuple(f.shape)}"
                )
        if all(f is None for f in factors):
            raise ValueError("a Tucker factorisation needs at least one factor")
        self._factored = tuple(f is not None for f in factors)
        super().__init__(
            (core,) + tuple(f for f in factors if f is not None),
            in_modes,
            out_modes,
            kernel_size=kernel_size,
            error=error,
        )

    @property
    def core(self):
        return self._cores[0]

    @property
    def factors(self) -> tuple:
        it = iter(self._cores[1:])
        return tuple(next(it) if present else None for present in self._factored)

    @property
    def ranks(self) -> tuple:
        """One rank per mode; None where the mode is not factorised."""
        return tuple(r if present else None for r, present in zip(self.core.shape, self._factored))

    def network(self) -> Network:
        p, q = len(self._in_modes), len(self._out_modes)
        n = p + q
        core = tuple(n + k if present else k for k, present in enumerate(self._factored))
        operands = [core] + [(k, n + k) for k in range(n) if self._factored[k]]
        # chain: factors on the in modes, then the core, then factors on the out modes
        factor_pos = {k: 1 + i for i, k in enumerate(k for k in range(n) if self._factored[k])}
        chain = [factor_pos[k] for k in range(p) if k in factor_pos] + [0]
        chain += [factor_pos[k] for k in range(p, n) if k in factor_pos]
        return Network(operands, range(p), range(p, n), chain)

    @classmethod
    def _rebuild(cls, old, cores):
        it = iter(cores[1:])
        factors = tuple(next(it) if present else None for present in old._factored)
        return cls(cores[0], factors, old.in_modes, old.out_modes, kernel_size=old.kernel_size)


class CPMatrix(Factorized):
    """CP (canonical polyadic) over the modes ``in_modes + out_modes``: ``factors[k]`` is ``(dim_k, R)``."""

    format = "cp"

    def __init__(self, factors, in_modes, out_modes, *, kernel_size=None, error=None):
        in_modes, out_modes = _modes_arg(in_modes, "in_modes"), _modes_arg(out_modes, "out_modes")
        dims = in_modes + out_modes
        factors = _arrays(factors, "factors")
        if len(factors) != len(dims):
            raise ValueError(f"factors must hold one array per mode of {dims}; got {len(factors)}")
        rank = factors[0].shape[-1] if len(factors[0].shape) == 2 else None
        for k, (f, dim) in enumerate(zip(factors, dims)):
            if tuple(f.shape) != (dim, rank):
                raise ValueError(
                    f"factors[{k}] must have shape {(dim, rank)}; got {tuple(f.shape)}"
                )
        super().__init__(factors, in_modes, out_modes, kernel_size=kernel_size, error=error)

    @property
    def factors(self) -> tuple:
        return self._cores

    @property
    def rank(self) -> int:
        return self._cores[0].shape[1]

    @property
    def ranks(self) -> tuple[int]:
        return (self.rank,)

    def network(self) -> Network:
        p, n = len(self._in_modes), len(self._cores)
        return Network([(k, n) for k in range(n)], range(p), range(p, n), range(n))

    @classmethod
    def _rebuild(cls, old, cores):
        return cls(cores, old.in_modes, old.out_modes, kernel_size=old.kernel_size)


_CLASSES = {"tt": TTMatrix, "tr": TRMatrix, "tucker": TuckerMatrix, "cp": CPMatrix}


def from_cores(
    format: str,
    cores: Sequence[Any],
    in_modes,
    out_modes,
    *,
    factored=None,
    kernel_size=None,
    error=None,
) -> Factorized:
    """Build a factorised matrix of ``format`` from its trainable arrays (``Factorized.cores`` order).

    For Tucker, ``factored`` (one bool per mode) says which modes have a factor; default: all.
    """
    format = check_format(format)
    cls = _CLASSES[format]
    cores = _arrays(cores, "cores")
    if not cores:
        raise ValueError("cores must hold at least one array")
    if format in ("tt", "tr"):
        return cls(cores, in_modes, out_modes, kernel_size=kernel_size, error=error)
    if format == "cp":
        return cls(cores, in_modes, out_modes, kernel_size=kernel_size, error=error)
    n = len(in_modes) + len(out_modes)
    factored = (True,) * n if factored is None else tuple(factored)
    it = iter(cores[1:])
    factors = tuple(next(it) if present else None for present in factored)
    return cls(cores[0], factors, in_modes, out_modes, kernel_size=kernel_size, error=error)
