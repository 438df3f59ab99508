"""Command-line values shared by the measuring commands, each checked and bounded.

Sizes (``64M``), size ranges and lists (``8:64M``, ``8,1K``), comma lists of choices,
rank lists, and the bounds every count a user gives must respect before anything is
allocated: :func:`bounded_int`, :func:`bounded_float` and :func:`check_timeout` raise
:class:`UsageError` naming the option and the limit.  Used by ``collectives.sweep``
and ``collectives.links``.
"""
from __future__ import annotations

import math
import os
import re

from .files import UsageError

__all__ = ["UsageError", "empty_argument", "reject_empty_arguments", "parse_size", "parse_sizes", "parse_list", "parse_ranks",
           "bounded_int", "bounded_float", "check_timeout", "physical_memory",
           "MAX_SIZES", "MAX_SIZE", "MAX_TIMEOUT", "MAX_RANK_LIST", "MAX_REPS",
           "MAX_TIME_BUDGET"]

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
          "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
          "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}

#: Most sizes one option may list or a range may expand to.
MAX_SIZES = 4096
#: Largest size in bytes (1 PiB: beyond any buffer; the memory check is the real limit).
MAX_SIZE = 1 << 50
#: Longest timeout in seconds (about 11.6 days; far below what a thread wait can take).
MAX_TIMEOUT = 1e6
#: Most entries of a rank list.
MAX_RANK_LIST = 4096
#: Most repetitions (and warm-up calls, kept samples) per point a user may ask for.
MAX_REPS = 1_000_000
#: Longest time budget per point in seconds (one day).
MAX_TIME_BUDGET = 86400.0


def empty_argument(argv) -> str | None:
    """The option given an empty or blank value in ``argv`` (``--out ""``, ``--out=``;
    ``"an argument"`` for an empty positional one), else None.  argparse accepts empty
    strings, and ``Path("")`` is the current directory: an empty path would silently
    mean "here" (or an option's default)."""
    for i, a in enumerate(argv):
        a = str(a)
        if a.startswith("--") and "=" in a and not a.split("=", 1)[1].strip():
            return a.split("=", 1)[0]
        if not a.strip():
            prev = str(argv[i - 1]) if i else ""
            return prev if prev.startswith("-") and "=" not in prev else "an argument"
    return None


def reject_empty_arguments(argv, *, positionals: bool = False) -> None:
    """:class:`UsageError` ``"OPTION is empty"`` when :func:`empty_argument` finds an
    option with an empty value; call it on the raw ``argv`` before parsing.  Empty
    positional arguments are left to the command (which names them, e.g. ``RUN is
    empty`` from :func:`collectives.files.check_input`) unless ``positionals``."""
    empty = empty_argument(list(argv))
    if empty and (positionals or empty != "an argument"):
        raise UsageError(f"{empty} is empty")


def parse_size(text, what: str = "size") -> int:
    """``'64M'`` -> 67108864 (binary units K, M, G, T; optional B/iB); at most
    :data:`MAX_SIZE`."""
    m = re.fullmatch(r"\s*(\d{1,20})\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise UsageError(f"{what} {text!r} is not a size (examples: 8, 1K, 64M, 2GiB)")
    value = int(m.group(1)) * _UNITS[m.group(2).upper()]
    if value > MAX_SIZE:
        raise UsageError(f"{what} {text!r} is larger than the limit of {MAX_SIZE} B "
                         "(1 PiB)")
    return value


def parse_sizes(text, option: str = "--sizes") -> tuple:
    """Sizes in bytes from ``MIN:MAX[:FACTOR]`` (MIN, MIN*FACTOR, ... <= MAX; FACTOR 2
    by default, like OSU's ``-m``) or a comma list (``8,1K,4M``); sorted, unique, at
    most :data:`MAX_SIZES` of them (checked before the list is built).

    Already-parsed lists of integers pass through (validated)."""
    if isinstance(text, (list, tuple)):
        if len(text) > MAX_SIZES:
            raise UsageError(f"{option}: {len(text)} sizes, more than the limit of "
                             f"{MAX_SIZES}")
        try:
            sizes = [int(s) for s in text]
        except (TypeError, ValueError):
            raise UsageError(f"{option}: {text!r} is not a list of sizes") from None
    else:
        text = str(text).strip()
        if not text:
            raise UsageError(f"{option} is empty")
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise UsageError(f"{option} {text!r}: a range is MIN:MAX or MIN:MAX:FACTOR")
            lo = parse_size(parts[0], f"{option} minimum")
            hi = parse_size(parts[1], f"{option} maximum")
            factor = 2
            if len(parts) == 3:
                if not re.fullmatch(r"\s*\d{1,6}\s*", parts[2]) or int(parts[2]) < 2:
                    raise UsageError(f"{option} {text!r}: FACTOR must be a whole number "
                                     ">= 2")
                factor = int(parts[2])
            if lo <= 0:
                raise UsageError(f"{option} {text!r}: sizes must be > 0 bytes")
            if hi < lo:
                raise UsageError(f"{option} {text!r}: MAX is smaller than MIN")
            count = int(math.floor(math.log(hi / lo, factor) + 1e-9)) + 1
            if count > MAX_SIZES:
                raise UsageError(f"{option} {text!r}: {count} sizes, more than the limit "
                                 f"of {MAX_SIZES}")
            sizes, s = [], lo
            while s <= hi:
                sizes.append(s)
                s *= factor
        else:
            items = text.split(",")
            if len(items) > MAX_SIZES:
                raise UsageError(f"{option}: {len(items)} sizes, more than the limit of "
                                 f"{MAX_SIZES}")
            sizes = [parse_size(t, f"{option} entry") for t in items]
    bad = [s for s in sizes if s <= 0]
    if bad:
        raise UsageError(f"{option}: sizes must be > 0 bytes, got {bad[0]}")
    big = [s for s in sizes if s > MAX_SIZE]
    if big:
        raise UsageError(f"{option}: {big[0]} B is larger than the limit of {MAX_SIZE} B")
    return tuple(sorted(set(sizes)))


def parse_list(text, what: str, allowed, extra=()) -> tuple:
    """Comma list validated against ``allowed`` (order kept, duplicates dropped)."""
    items = list(text) if isinstance(text, (list, tuple)) else \
        [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError(f"{what} is empty")
    for item in items:
        if item not in tuple(allowed) + tuple(extra):
            raise UsageError(f"{what}: unknown value {item!r}; expected one of "
                             f"{', '.join(tuple(allowed) + tuple(extra))}")
    return tuple(dict.fromkeys(items))


def parse_ranks(text, option: str = "--ranks") -> tuple:
    """A comma list of whole numbers (at most :data:`MAX_RANK_LIST`); their range is
    checked against the layout by :func:`collectives.topology.check_ranks`."""
    items = list(text) if isinstance(text, (list, tuple)) else str(text).split(",")
    if len(items) > MAX_RANK_LIST:
        raise UsageError(f"{option}: {len(items)} entries, more than the limit of "
                         f"{MAX_RANK_LIST}")
    out = []
    for item in items:
        s = str(item).strip()
        if not re.fullmatch(r"[+-]?\d{1,12}", s):
            raise UsageError(f"{option}: {item!r} is not a whole number")
        out.append(int(s))
    if not out or not str(text).strip():
        raise UsageError(f"{option} is empty")
    return tuple(out)


def bounded_int(value, option: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, else a usage error naming both limits."""
    if isinstance(value, bool):
        raise UsageError(f"{option} must be a whole number, got {value!r}")
    try:
        v = int(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{option} must be a whole number, got {value!r}") from None
    if not low <= v <= high:
        raise UsageError(f"{option} must be between {low} and {high}, got {v}")
    return v


def bounded_float(value, option: str, low: float, high: float, *,
                  low_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with
    ``low_open``), else a usage error naming the limits."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{option} must be a number, got {value!r}") from None
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and v <= high
    if not ok:
        rel = ">" if low_open else ">="
        raise UsageError(f"{option} must be a finite number {rel} {low:g} and <= "
                         f"{high:g}, got {value!r}")
    return v


def check_timeout(value, option: str = "--point-timeout", *, zero_disables=True) -> float:
    """A timeout in seconds: finite, >= 0 (0 disables when ``zero_disables``), at most
    :data:`MAX_TIMEOUT`."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{option} must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(v) and v >= 0) or (v == 0 and not zero_disables):
        raise UsageError(f"{option} must be >= 0 (0 disables) and finite, got {value!r}"
                         if zero_disables else
                         f"{option} must be > 0 and finite, got {value!r}")
    if v > MAX_TIMEOUT:
        raise UsageError(f"{option} {value!r} is longer than the limit of "
                         f"{MAX_TIMEOUT:g} s (about 11 days)")
    return v


def physical_memory() -> int:
    """Bytes of physical memory (8 GiB when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30
