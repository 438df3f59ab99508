"""The one cost-model registry: α, n·β and n·γ coefficients of every algorithm.

Every algorithm the sweep can time (``--algorithms``), every ``algorithm`` value in a
results table, every key of a constants file and every curve of a plot uses the names
registered here.  The fitter (:mod:`fits`) and the predictor (:mod:`fits.predict`) read
the formulas from this module only; no other module restates a formula.

Notation (``../shared/reference/cost-models.md``): ``p`` ranks, ``n`` bytes of the full
vector on each rank (for reduce-scatter the whole input, each rank keeping ``n/p``; for
allgather the whole gathered output), ``lg`` is log base 2, ``p' = 2**floor(lg p)``,
``r = p - p'``.  The time of one call is modelled as::

    T(p, n) = a(p) * alpha + b(p) * n * beta + c(p) * n * gamma

with ``a``, ``b``, ``c`` the coefficients returned by :func:`coefficients`.  Every
coefficient function is vectorized over ``p`` (numpy arrays broadcast) and is exact for the
implementation in :mod:`collectives.algorithms`: ``a`` is the number of messages, ``b n``
the bytes and ``c n`` the bytes reduced along the critical path, where a message of ``m``
bytes costs ``alpha + m beta`` once both its ends reached it and a rank sends and
receives at once.  ``tests/test_algorithms_counting.py`` runs the code on a counting
stand-in for the communicator and checks these numbers at p = 1..9 (exact when the count
is divisible by p and p'; blocks of unequal size move at most one element more per
block and message).

Non-powers of two (``p' = 2**floor(lg p)``, ``rem = p - p'``) use the fold of
:mod:`collectives.algorithms.fold`; with ``spread = sum_{k < lg p'} min(rem, 2**k)``:

=====================================  =============  ============================  ==========================
algorithm, p not a power of two        α              β (× n)                       γ (× n)
=====================================  =============  ============================  ==========================
reduce_scatter recursive_halving       flg p + 2      (p'-1+spread)/p + (p+1)/p     (p'-1+spread)/p + 1
allgather recursive_doubling           flg p + 2      (p'-1+spread)/p + (p+1)/p     0
allreduce recursive_doubling           flg p + 2      flg p + 2                     flg p + 1
allreduce rabenseifner                 2 flg p + 2    2 (p'-1)/p' + 2               (p'-1)/p' + 1
allreduce binomial                     2 clg p        2 clg p                       clg p
bcast scatter_allgather                clg p + p - 1  2 (p-1)/p                     0
=====================================  =============  ============================  ==========================

(the survivors of the fold that speak for two blocks make recursive halving/doubling
over unequal parts move ``spread`` extra blocks along the critical path; Rabenseifner
splits over ``p'`` equal parts instead, so only the fold moves whole vectors).

This module imports nothing from MPI: fitting and prediction run without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "CostModel", "COLLECTIVES", "AUXILIARY", "COSTS", "NATIVE",
    "algorithms", "cost_model", "coefficients", "predict", "lower_bound",
    "busbw_factor", "size_convention", "step_bytes", "path_bytes", "hockney",
    "predict_steps", "crowding",
]

#: The collectives the sweep times, in the order they are reported.
COLLECTIVES = ("bcast", "reduce_scatter", "allreduce", "allgather")
#: Auxiliary measurements: point-to-point ping-pong (half round trip, Hockney model)
#: and the local reduction kernel (``out += in`` over n bytes, the γ probe).
AUXILIARY = ("pingpong", "reduce_local")
#: The MPI library's own implementation of a collective.  It has no registry formula:
#: the library picks its algorithm by size and p.
NATIVE = "native"

#: What ``bytes`` means for each collective in results, fits and predictions.
SIZE_CONVENTION = {
    "bcast": "bytes of the whole buffer broadcast from the root",
    "reduce_scatter": "bytes of the whole input vector on each rank (each rank keeps bytes/p; OSU convention, IMB uses the per-rank block)",
    "allreduce": "bytes of the whole vector on each rank",
    "allgather": "bytes of the whole gathered vector (each rank contributes bytes/p)",
    "pingpong": "bytes of one message; time is half the round trip",
    "reduce_local": "bytes of each operand of one local reduction (out += in)",
}


def size_convention(collective: str) -> str:
    """Sentence saying what ``bytes`` counts for ``collective``."""
    try:
        return SIZE_CONVENTION[collective]
    except KeyError:
        raise ValueError(f"unknown collective {collective!r}; expected one of "
                         f"{', '.join(SIZE_CONVENTION)}") from None


def _p(p):
    p = np.asarray(p, dtype=float)
    if np.any(p < 1) or np.any(p != np.floor(p)):
        raise ValueError(f"rank count p must be a whole number >= 1, got {p}")
    return p


def lg(p):
    """log2(p) (exact for powers of two)."""
    return np.log2(_p(p))


def clg(p):
    """ceil(lg p)."""
    return np.ceil(np.log2(_p(p)) - 1e-12) + 0.0  # + 0.0: no -0.0 at p = 1


def flg(p):
    """floor(lg p)."""
    return np.floor(np.log2(_p(p)) + 1e-12)


def pow2_below(p):
    """p' = 2**floor(lg p), the largest power of two not above p."""
    return 2.0 ** flg(p)


def frac(p):
    """(p-1)/p."""
    p = _p(p)
    return (p - 1) / p


def _is_pow2(p):
    p = _p(p)
    return pow2_below(p) == p


def _zero(p):
    return np.zeros_like(_p(p))


def _one(p):
    return np.ones_like(_p(p))


@dataclass(frozen=True)
class CostModel:
    """Coefficients of α, n·β, n·γ for one (collective, algorithm) as functions of p."""

    collective: str
    algorithm: str
    alpha: Callable
    beta: Callable
    gamma: Callable
    summary: str

    def coefficients(self, p):
        """Return ``(a, b, c)`` arrays broadcast over ``p``."""
        p = _p(p)
        return (np.broadcast_to(self.alpha(p), p.shape).astype(float),
                np.broadcast_to(self.beta(p), p.shape).astype(float),
                np.broadcast_to(self.gamma(p), p.shape).astype(float))


# ---------------------------------------------------------------------------------
# Formulas.  Non-power-of-two forms follow the fold described in cost-models.md.
# ---------------------------------------------------------------------------------

def _fold(p):
    """``(p', rem, spread)`` of the fold used by non-power-of-two p.

    ``spread(p) = sum_{k < lg p'} min(rem, 2**k) = 2**t - 1 + (lg p' - t) rem`` with
    ``t = floor(lg rem) + 1`` (0 when rem = 0): the extra blocks that the survivors
    speaking for two blocks move along the critical path of recursive halving/doubling
    over unequal parts (survivor j < rem holds 2 blocks, the others 1).
    """
    pp = pow2_below(p)
    rem = _p(p) - pp
    t = np.where(rem > 0, np.floor(np.log2(np.maximum(rem, 1)) + 1e-12) + 1, 0)
    return pp, rem, 2.0 ** t - 1 + (np.log2(pp) - t) * rem


def _fold_alpha(p):
    """lg p for powers of two, else floor(lg p) + 2 (fold in, lg p' steps, fold out)."""
    return np.where(_is_pow2(p), lg(p), flg(p) + 2)


def _fold_blocks_beta(p):
    """β of recursive halving RS / recursive doubling AG over p blocks.

    ``(p' - 1 + spread) / p``, plus ``(p + 1) / p`` for the fold (one whole vector one
    way, one block the other) when p is not a power of two; = (p-1)/p for p = 2**k.
    """
    pp, rem, spread = _fold(p)
    return (pp - 1 + spread) / _p(p) + np.where(rem > 0, (_p(p) + 1) / _p(p), 0)


def _rs_halving_gamma(p):
    """``(p' - 1 + spread) / p``, plus 1 (the absorbed whole vector) when folded."""
    pp, rem, spread = _fold(p)
    return (pp - 1 + spread) / _p(p) + np.where(rem > 0, 1, 0)


def _rab_alpha(p):
    return np.where(_is_pow2(p), 2 * lg(p), 2 * flg(p) + 2)


def _rab_beta(p):
    pp = pow2_below(p)
    return np.where(_is_pow2(p), 2 * frac(p), 2 * (pp - 1) / pp + 2)


def _rab_gamma(p):
    pp = pow2_below(p)
    return np.where(_is_pow2(p), frac(p), 1 + (pp - 1) / pp)


def _rd_gamma(p):
    return np.where(_is_pow2(p), lg(p), flg(p) + 1)


_MODELS = [
    CostModel("bcast", "binomial", clg, clg, _zero,
              "binomial tree: ceil(lg p) rounds of the whole vector"),
    CostModel("bcast", "scatter_allgather", lambda p: clg(p) + p - 1,
              lambda p: 2 * frac(p), _zero,
              "van de Geijn: binomial scatter then ring allgather"),
    CostModel("reduce_scatter", "ring", lambda p: p - 1, frac, frac,
              "ring: p-1 steps of one block each"),
    CostModel("reduce_scatter", "pairwise", lambda p: p - 1, frac, frac,
              "pairwise exchange: step k sends to rank+k, receives from rank-k"),
    CostModel("reduce_scatter", "recursive_halving", _fold_alpha, _fold_blocks_beta,
              _rs_halving_gamma,
              "recursive halving; other p: the first 2 rem ranks fold pairwise, the p' "
              "survivors halve over their 1- or 2-block parts, blocks go back"),
    CostModel("allreduce", "ring", lambda p: 2 * (p - 1), lambda p: 2 * frac(p), frac,
              "ring reduce-scatter then ring allgather"),
    CostModel("allreduce", "binomial", lambda p: 2 * clg(p), lambda p: 2 * clg(p), clg,
              "binomial-tree reduce to rank 0 then binomial broadcast"),
    CostModel("allreduce", "recursive_doubling", _fold_alpha, _fold_alpha, _rd_gamma,
              "recursive doubling of the whole vector; other p fold first"),
    CostModel("allreduce", "rabenseifner", _rab_alpha, _rab_beta, _rab_gamma,
              "recursive-halving reduce-scatter then recursive-doubling allgather over "
              "p' equal parts; other p fold whole vectors in and out"),
    CostModel("allgather", "ring", lambda p: p - 1, frac, _zero,
              "ring: p-1 steps of one block each"),
    CostModel("allgather", "recursive_doubling", _fold_alpha, _fold_blocks_beta, _zero,
              "recursive doubling; other p: the first 2 rem ranks fold pairwise, the p' "
              "survivors double over their 1- or 2-block parts, the whole vector goes "
              "back"),
    CostModel("pingpong", "native", _one, _one, _zero,
              "Hockney point-to-point: alpha + n beta (half round trip)"),
    CostModel("reduce_local", "native", _zero, _zero, _one,
              "local reduction kernel: n gamma"),
]

#: The registry: ``(collective, algorithm) -> CostModel``.
COSTS: dict[tuple[str, str], CostModel] = {(m.collective, m.algorithm): m for m in _MODELS}


def algorithms(collective: str, *, native: bool = True) -> tuple[str, ...]:
    """Algorithm names registered for ``collective`` (``native`` last if requested)."""
    size_convention(collective)  # validates the name
    names = tuple(a for (c, a) in COSTS if c == collective and a != NATIVE)
    if native and collective in COLLECTIVES:
        names += (NATIVE,)
    elif native and (collective, NATIVE) in COSTS:
        names += (NATIVE,)
    return names


def cost_model(collective: str, algorithm: str) -> CostModel:
    """The registry entry, with an error naming what is unknown."""
    size_convention(collective)
    try:
        return COSTS[(collective, algorithm)]
    except KeyError:
        if algorithm == NATIVE:
            raise ValueError(f"the native {collective} has no registry formula: the MPI "
                             "library chooses its algorithm by size and rank count") from None
        raise ValueError(f"unknown algorithm {algorithm!r} for {collective}; expected one "
                         f"of {', '.join(algorithms(collective, native=False))}") from None


def coefficients(collective: str, algorithm: str, p):
    """``(a, b, c)``: coefficients of α, n·β, n·γ for ``p`` ranks (vectorized)."""
    return cost_model(collective, algorithm).coefficients(p)


def predict(collective: str, algorithm: str, p, nbytes, alpha, beta, gamma=0.0):
    """Modelled time in seconds: ``a(p) α + b(p) n β + c(p) n γ`` (broadcasts)."""
    a, b, c = coefficients(collective, algorithm, p)
    n = np.asarray(nbytes, dtype=float)
    return a * alpha + b * n * beta + c * n * gamma


def hockney(nbytes, alpha, beta):
    """Hockney's line ``α + n β`` (seconds): a point-to-point message, or a native
    collective fitted at one rank count (``hockney-per-p``)."""
    return alpha + np.asarray(nbytes, dtype=float) * beta


def step_bytes(collective: str, algorithm: str, p, nbytes):
    """Mean bytes of one message on the critical path: ``b(p) n / a(p)``.

    Exact where every step moves the same amount (ring, pairwise, recursive doubling of
    the whole vector, binomial trees); the mean of halving/doubling steps otherwise.
    ``n`` where ``a(p) = 0`` (nothing is sent: the local kernel, p = 1).  The joint fit
    (:mod:`fits.joint`) uses it to price each step with the point-to-point constants
    of the protocol regime its messages fall in.
    """
    a, b, _ = coefficients(collective, algorithm, p)
    n = np.asarray(nbytes, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, b * n / np.where(a > 0, a, 1.0), n)


def path_bytes(collective: str, algorithm: str, p, nbytes):
    """Bytes on the critical path of one call: ``b(p) n`` (what a link kept busy by
    back-to-back steps carries per call; the joint fit's ``"path"`` regime key)."""
    _, b, _ = coefficients(collective, algorithm, p)
    return b * np.asarray(nbytes, dtype=float)


def crowding(p):
    """Ranks beyond two that move data at once: ``max(p - 2, 0)``.

    Multiplies the per-byte contention term of :func:`predict_steps`: ranks that share
    a resource (CPU cores of an oversubscribed or emulated cluster, a node's memory
    bandwidth, a NIC) each get less of it as more of them transfer together.  A
    ping-pong (2 ranks) carries none.
    """
    return np.maximum(_p(p) - 2, 0)


def predict_steps(collective: str, algorithm: str, p, nbytes, alpha, beta, gamma=0.0,
                  step_cost=0.0, call_cost=0.0, byte_cost=0.0, contention=0.0):
    """Time with software costs and contention::

        a(p) (α + step_cost) + b(p) n (β + byte_cost + contention · crowding(p))
            + c(p) n γ + call_cost

    ``step_cost``: what one message step of the implementation adds beyond the network
    (Python work around each send/receive of the hand-written algorithms);
    ``call_cost``: a once-per-call cost (the MPI library's own collective entry);
    ``byte_cost``: what the implementation adds per byte it moves (copies);
    ``contention``: seconds per byte per rank beyond two (:func:`crowding`).
    """
    a, b, c = coefficients(collective, algorithm, p)
    n = np.asarray(nbytes, dtype=float)
    return (a * (alpha + step_cost)
            + b * n * (beta + byte_cost + contention * crowding(p))
            + c * n * gamma + call_cost)


def _moves_data(p):
    """1 when there is anyone to send to (p > 1), else 0."""
    return np.where(_p(p) > 1, 1.0, 0.0)


_LOWER_BOUNDS = {
    # collective: (alpha coefficient, beta coefficient, gamma coefficient) -- Chan et al.
    # (at p = 1 nothing moves: every bound is 0)
    "bcast": (clg, _moves_data, _zero),
    "reduce": (clg, _moves_data, frac),
    "allgather": (clg, frac, _zero),
    "reduce_scatter": (clg, frac, frac),
    "allreduce": (clg, lambda p: 2 * frac(p), frac),
}


def lower_bound(collective: str, p, nbytes, alpha, beta, gamma=0.0):
    """Chan et al. lower bound on the time of ``collective`` (seconds)."""
    try:
        fa, fb, fc = _LOWER_BOUNDS[collective]
    except KeyError:
        raise ValueError(f"no lower bound for {collective!r}; expected one of "
                         f"{', '.join(_LOWER_BOUNDS)}") from None
    p = _p(p)
    n = np.asarray(nbytes, dtype=float)
    return fa(p) * alpha + fb(p) * n * beta + fc(p) * n * gamma


_BUSBW = {"allreduce": lambda p: 2 * frac(p), "reduce_scatter": frac, "allgather": frac,
          "bcast": _one, "reduce": _one, "pingpong": _one}


def busbw_factor(collective: str, p):
    """nccl-tests bus-bandwidth factor: ``busbw = bytes / t * factor``."""
    try:
        return _BUSBW[collective](_p(p))
    except KeyError:
        raise ValueError(f"no bus-bandwidth factor for {collective!r}") from None
