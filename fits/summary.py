"""Human-readable summary of a constants file.

First, one line per topology with its **headline** (:mod:`fits.headline`): ``latency``
(the ping-pong's small-message intercept) and ``bandwidth`` (``1/β`` of its
large-message regime), each with interval, status, sizes and ranks.  Then the γ lines,
then a table with one row per fitted entry (point-to-point, γ probe, each algorithm;
native algorithms one row per rank count) showing the constants of the entry's
**largest-size segment**, labelled by that segment's size range (``seg_bytes``).  Its
intercept is headed ``icpt_us`` (segment intercept), never plainly α: past a protocol
switch an intercept is not a latency.

By default the table keeps few columns so that it reads in 100 columns; ``wide=True``
(``python -m fits --wide``) adds the intervals, γ, breakpoints and validation figures.
Units are in the headers: µs, ps/B, GB/s, percent.
"""
from __future__ import annotations

import textwrap

import pandas as pd

from . import constants as constants_file

__all__ = ["summary_table", "format_summary", "COLUMNS", "NARROW_COLUMNS"]

COLUMNS = ("topology", "collective", "algorithm", "ranks", "seg_bytes", "icpt_us",
           "icpt_ci_us", "beta_ps_per_B", "beta_ci_ps_per_B", "bw_GBps",
           "gamma_ps_per_B", "gamma_src", "breakpoints", "med_err_pct", "max_err_pct",
           "loro_max_pct", "busbw_ratio", "p2p_pred_med_pct", "joint_pred_med_pct",
           "icpt_status", "beta_status", "st")
#: Columns of the default (narrow) table.
NARROW_COLUMNS = ("topology", "collective", "algorithm", "ranks", "seg_bytes", "icpt_us",
                  "beta_ps_per_B", "bw_GBps", "st", "med_err_pct", "joint_pred_med_pct")
#: One letter per status in the narrow table's ``st`` column (intercept, then β).
STATUS_LETTERS = {"identified": "I", "at_bound": "B", "not_identified": "N", None: "-"}
#: Short headers of the narrow table (units in the header).
_NARROW_HEADERS = {"topology": "topo", "collective": "collective",
                   "algorithm": "algorithm", "ranks": "p", "seg_bytes": "segment",
                   "icpt_us": "icpt µs", "beta_ps_per_B": "β ps/B", "bw_GBps": "1/β GB/s",
                   "med_err_pct": "fit%", "joint_pred_med_pct": "pred%≥64K",
                   "st": "st"}
# fit% = median error of the entry's own fit; pred%≥64K = median error at >= 64 KiB of
# the prediction from the topology's joint constants (fits.joint)


def _scaled(x, factor):
    return None if x is None else x * factor


def _ci(ci, factor, digits=3):
    if not ci:
        return ""
    ends = ["" if v is None else f"{v * factor:.{digits}g}" for v in ci]
    return f"[{ends[0] or '-inf'}, {ends[1] or 'inf'}]"


def _pct(x):
    return None if x is None else 100.0 * x


def _size(n):
    n = int(n)
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _ranks_text(ranks):
    """``2,3,4``; beyond four rank counts ``2..1024(37)`` (first, last, how many)."""
    ranks = list(ranks)
    if len(ranks) <= 4:
        return ",".join(map(str, ranks))
    return f"{ranks[0]}..{ranks[-1]}({len(ranks)})"


def _seg_range(e):
    segs = e.get("segments") or []
    if not segs:
        return ""
    top = segs[-1]
    return f"{_size(top['min_bytes'])}-{_size(top['max_bytes'])}"


def _row(topology, collective, algorithm, ranks, e, gamma=None, gsrc=""):
    beta = e.get("beta")
    errors = e.get("errors") or {}
    loro = [v for v in (errors.get("leave_one_rank_out") or {}).values() if v is not None]
    bus = e.get("busbw_check") or {}
    p2p = e.get("from_p2p") or {}
    joint = e.get("joint") or {}
    return {
        "topology": topology, "collective": collective, "algorithm": algorithm,
        "ranks": ranks, "seg_bytes": _seg_range(e),
        "icpt_us": _scaled(e.get("alpha"), 1e6),
        "icpt_ci_us": _ci(e.get("alpha_ci"), 1e6),
        "beta_ps_per_B": _scaled(beta, 1e12),
        "beta_ci_ps_per_B": _ci(e.get("beta_ci"), 1e12),
        "bw_GBps": (1e-9 / beta) if beta else None,
        "gamma_ps_per_B": _scaled(gamma, 1e12), "gamma_src": gsrc or "",
        "breakpoints": ",".join(str(b) for b in e.get("breakpoints", [])),
        "med_err_pct": _pct(errors.get("median_rel")),
        "max_err_pct": _pct(errors.get("max_rel")),
        "loro_max_pct": _pct(max(loro)) if loro else None,
        "busbw_ratio": bus.get("ratio"),
        "p2p_pred_med_pct": _pct(p2p.get("median_rel")),
        "joint_pred_med_pct": _pct(joint.get("median_rel_large")),
        "icpt_status": e.get("alpha_status") or "",
        "beta_status": e.get("beta_status") or "",
        "st": (STATUS_LETTERS.get(e.get("alpha_status"), "-")
               + STATUS_LETTERS.get(e.get("beta_status"), "-")),
    }


def summary_table(constants: dict) -> pd.DataFrame:
    """The summary as a DataFrame (columns :data:`COLUMNS`)."""
    rows = []
    for topology, topo in constants.get("topologies", {}).items():
        if topo.get("p2p"):
            rows.append(_row(topology, "pingpong", "native", "2", topo["p2p"]))
        g = topo.get("gamma") or {}
        if g.get("source") == "reduce_local":
            rows.append({**_row(topology, "reduce_local", "native", "1",
                                {"alpha": g.get("overhead_s"),
                                 "segments": g.get("segments"),
                                 "breakpoints": g.get("breakpoints", []),
                                 "errors": g.get("errors")}),
                         "gamma_ps_per_B": _scaled(g.get("value"), 1e12),
                         "gamma_src": "reduce_local"})
        for collective, algos in topo.get("algorithms", {}).items():
            for algorithm, e in algos.items():
                if e.get("model") == "hockney-per-p":
                    for p, one in e["per_ranks"].items():
                        rows.append(_row(topology, collective, algorithm, p,
                                         {**one, "joint": e.get("joint")}))
                else:
                    rows.append(_row(topology, collective, algorithm,
                                     _ranks_text(e.get("ranks", [])), e,
                                     e.get("gamma"), e.get("gamma_source") or ""))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in table.columns:
        if col.endswith(("_us", "_per_B", "_GBps", "_pct", "_ratio")) and "ci" not in col:
            table[col] = pd.to_numeric(table[col])
    return table


def _gamma_lines(topology, topo) -> list:
    g = topo.get("gamma") or {}
    value = g.get("value")
    status = g.get("status")
    lines = [f"{topology}: gamma = "
             + (f"{value * 1e12:.4g} ps/B {_ci(g.get('ci'), 1e12)} from {g.get('source')}"
                + (f" ({status})" if status else "") if value is not None
                else f"not identifiable ({g.get('reason')})")]
    cross = g.get("cross_check")
    if cross and cross.get("value") is not None:
        lines.append(f"{topology}: cross-check gamma from {cross['source']} = "
                     f"{cross['value'] * 1e12:.4g} ps/B {_ci(cross.get('ci'), 1e12)}"
                     + (f" ({cross['status']})" if cross.get("status") else ""))
    return lines


def _joint_lines(topology, topo) -> list:
    j = topo.get("joint")
    if not j:
        return []
    c = j.get("constants") or {}
    parts = []
    for key, factor, unit in (("alpha", 1e6, "µs"), ("beta", 1e12, "ps/B"),
                              ("gamma", 1e12, "ps/B")):
        e = c.get(key) or {}
        if e.get("value") is not None:
            parts.append(f"{key} {e['value'] * factor:.3g} {unit} "
                         f"{_ci(e.get('ci'), factor)} {e.get('status', '')}".rstrip())
    err = j.get("errors") or {}
    py = (j.get("software") or {}).get("python") or {}
    extra = []
    for key, factor, unit in (("step_s", 1e6, "µs/step"), ("call_s", 1e6, "µs/call"),
                              ("byte_s", 1e12, "ps/B")):
        v = (py.get(key) or {}).get("value")
        if v:
            extra.append(f"{v * factor:.3g} {unit}")
    kappa = (j.get("contention") or {}).get("value")
    if kappa:
        extra.append(f"contention {kappa * 1e12:.3g} ps/B per rank beyond 2")
    parts.append("our Python algorithms add " + (", ".join(extra) if extra else "nothing"))
    line = f"{topology}: joint constants: " + ", ".join(parts)
    if err.get("median_rel_large") is not None:
        line += (f"; predicts {err.get('entries', 0)} collectives at >= "
                 f"{j.get('large_bytes', 65536) // 1024} KiB with median error "
                 f"{err['median_rel_large'] * 100:.3g}% over points, "
                 f"{err['median_of_entries_large'] * 100:.3g}% over collectives")
    return [line]


def _size_text(n):
    return constants_file._fmt_bytes(n)


def _native_lines(topology, topo) -> list:
    lines = []
    for collective, algos in topo.get("algorithms", {}).items():
        ident = (algos.get("native") or {}).get("identified")
        if not ident:
            continue
        if not ident.get("segments"):
            lines.append(f"{topology}: {collective}/native not identified "
                         f"({ident.get('reason', '')})")
            continue
        parts = []
        for seg in ident["segments"]:
            name = seg["algorithm"] + "".join(f"|{a}" for a in seg.get("equivalent", []))
            parts.append(f"{name} {_size_text(seg['min_bytes'])}-"
                         f"{_size_text(seg['max_bytes'])} (w {seg['weight']:.2f}, "
                         f"call {seg['call_s'] * 1e6:.3g} µs)")
        loro = ident.get("leave_one_rank_out") or {}
        held = ", ".join(f"p={p} {v['median_rel_large'] * 100:.3g}%"
                         for p, v in loro.items() if v.get("median_rel_large") is not None)
        verdict = ("" if ident.get("status") != "not_identified" else
                   f"; NOT identified ({ident.get('reason', '')}): best candidates only")
        lines.append(f"{topology}: {collective}/native = " + "; ".join(parts)
                     + (f"; held-out error ≥64K: {held}" if held else "") + verdict)
    return lines


def format_summary(constants: dict, *, wide: bool = False) -> str:
    """The summary as text: headlines, γ and joint lines, then the table."""
    table = summary_table(constants)
    lines = []
    for topology in constants.get("topologies", {}):
        lines.append(constants_file.format_headline(constants, topology))
    for topology, topo in constants.get("topologies", {}).items():
        lines += _gamma_lines(topology, topo)
        lines += _joint_lines(topology, topo)
        lines += _native_lines(topology, topo)
    lines.append("segment constants: each entry's largest-size segment; icpt is its "
                 "intercept, not a latency;")
    lines.append("st: status of icpt and β (I identified, B at bound 0 with a one-sided "
                 "interval, N not identified):")
    if wide:
        width, cols, headers = 400, list(COLUMNS), list(COLUMNS)  # never wrapped
    else:
        width, cols = 100, list(NARROW_COLUMNS)
        if table["joint_pred_med_pct"].isna().all():
            cols.remove("joint_pred_med_pct")
        headers = [_NARROW_HEADERS[c] for c in cols]
    if not wide:
        lines = [wrapped for line in lines for wrapped in textwrap.wrap(
            line, width=100, subsequent_indent="    ", break_on_hyphens=False)]
    with pd.option_context("display.width", width, "display.max_columns", None,
                           "display.max_colwidth", 40):
        digits = 4 if wide else 3
        text = table[cols].to_string(index=False, na_rep="-", header=headers,
                                     float_format=lambda x: f"{x:.{digits}g}")
    return "\n".join(lines) + "\n" + text
