"""Human-readable summary of a constants file (a pandas table).

One row per fitted entry (point-to-point, γ probe, each algorithm; native algorithms
one row per rank count) with the constants of the largest-size segment, their
intervals, the breakpoints and the validation figures.  Units chosen for reading:
α in µs, β in ps/B (and 1/β in GB/s), γ in ps/B, errors in percent.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["summary_table", "format_summary", "COLUMNS"]

COLUMNS = ("topology", "collective", "algorithm", "ranks", "alpha_us", "alpha_ci_us",
           "beta_ps_per_B", "beta_ci_ps_per_B", "bw_GBps", "gamma_ps_per_B",
           "gamma_src", "breakpoints", "med_err_pct", "max_err_pct", "loro_max_pct",
           "busbw_ratio", "p2p_pred_med_pct")


def _scaled(x, factor):
    return None if x is None else x * factor


def _ci(ci, factor, digits=3):
    if not ci:
        return ""
    return f"[{ci[0] * factor:.{digits}g}, {ci[1] * factor:.{digits}g}]"


def _pct(x):
    return None if x is None else 100.0 * x


def _row(topology, collective, algorithm, ranks, e, gamma=None, gsrc=""):
    beta = e.get("beta")
    errors = e.get("errors") or {}
    loro = [v for v in (errors.get("leave_one_rank_out") or {}).values() if v is not None]
    bus = e.get("busbw_check") or {}
    p2p = e.get("from_p2p") or {}
    return {
        "topology": topology, "collective": collective, "algorithm": algorithm,
        "ranks": ranks,
        "alpha_us": _scaled(e.get("alpha"), 1e6),
        "alpha_ci_us": _ci(e.get("alpha_ci"), 1e6),
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
                                 "breakpoints": g.get("breakpoints", []),
                                 "errors": g.get("errors")}),
                         "gamma_ps_per_B": _scaled(g.get("value"), 1e12),
                         "gamma_src": "reduce_local"})
        for collective, algos in topo.get("algorithms", {}).items():
            for algorithm, e in algos.items():
                if e.get("model") == "hockney-per-p":
                    for p, one in e["per_ranks"].items():
                        rows.append(_row(topology, collective, algorithm, p, one))
                else:
                    rows.append(_row(topology, collective, algorithm,
                                     ",".join(map(str, e.get("ranks", []))), e,
                                     e.get("gamma"), e.get("gamma_source") or ""))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in table.columns:
        if col.endswith(("_us", "_per_B", "_GBps", "_pct", "_ratio")) and "ci" not in col:
            table[col] = pd.to_numeric(table[col])
    return table


def format_summary(constants: dict) -> str:
    """The summary as fixed-width text, plus one line per topology about γ."""
    table = summary_table(constants)
    lines = []
    for topology, topo in constants.get("topologies", {}).items():
        g = topo.get("gamma") or {}
        value = g.get("value")
        lines.append(f"{topology}: gamma = "
                     + (f"{value * 1e12:.4g} ps/B {_ci(g.get('ci'), 1e12)} from "
                        f"{g.get('source')}" if value is not None
                        else f"not identifiable ({g.get('reason')})"))
        cross = g.get("cross_check")
        if cross and cross.get("value") is not None:
            lines.append(f"{topology}: cross-check gamma from {cross['source']} = "
                         f"{cross['value'] * 1e12:.4g} ps/B {_ci(cross.get('ci'), 1e12)}")
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.max_colwidth", 40):
        text = table.to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.4g}")
    return text + "\n" + "\n".join(lines)
