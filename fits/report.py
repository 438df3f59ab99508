"""One self-contained HTML report of runs: ``python -m fits.report RUN... --out report.html``.

Each RUN is a sweep run directory, a links run directory or a constants file:

* a **sweep run**: its headline constants per topology (latency, bandwidth with
  intervals and status, through :func:`fits.constants.headline`), the summary table
  (:func:`fits.summary.summary_table`) and one fit plot per entry (:mod:`fits.plots`).
  The constants come from ``RUN/constants.json`` when that file was fitted from this
  run (its provenance names the run's ``run_id``) and ``RUN/plots/`` holds its plots;
  otherwise the run is fitted here (``--bootstrap`` replicates).
* a **links run**: the tiers with α, β and intervals, the suspect nodes and links with
  their evidence, the latency and bandwidth heatmaps (:mod:`fits.links`).
* a **constants file**: its headlines and summary table.

With two inputs of the same kind, a comparison (:mod:`fits.compare`: per-point and
per-constant tables and its plot) closes the page.  Every image is a PNG embedded as a
``data:`` URI; the page loads nothing from the network (no scripts, fonts or styles
from elsewhere).  The file is written atomically; nothing is written on bad input
(exit 2).
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

from collectives.files import UsageError, atomic_write_text, check_input, check_output

__all__ = ["build_report", "main"]

EXIT_USAGE = 2

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9;line-height:1.45}
header{background:#1f3a5f;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:1.5em}header p{margin:4px 0 0;opacity:.85;font-size:.92em}
main{max-width:1180px;margin:0 auto;padding:12px 32px 48px}
nav{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 16px;margin:16px 0}
nav a{margin-right:14px;color:#1f3a5f}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:6px 20px 16px;
margin:18px 0}
h2{color:#1f3a5f;border-bottom:2px solid #e3e7ee;padding-bottom:4px}
h3{color:#34495e;margin-top:18px}
table{border-collapse:collapse;font-size:.86em;margin:8px 0;max-width:100%}
th,td{border:1px solid #d5dae1;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#eef1f5;text-align:center}
td.l,th.l{text-align:left}
td.l{white-space:normal;max-width:560px}
tr:nth-child(even) td{background:#fafbfc}
.scroll{overflow-x:auto}
.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}
.warn{color:#9a6700;font-weight:600}.muted{color:#6b7280}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0;flex:1 1 480px;max-width:560px}
figure img{width:100%;height:auto;border:1px solid #e3e7ee;border-radius:4px;background:#fff}
figcaption{font-size:.82em;color:#555}
img.wide{max-width:100%;height:auto}
.card{display:inline-block;border:1px solid #dde1e7;border-radius:6px;padding:8px 14px;
margin:4px 8px 4px 0;background:#fbfcfd;vertical-align:top}
.card .v{font-size:1.4em;font-weight:600}.card .k{font-size:.8em;color:#555}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _img(path_or_bytes, alt, cls="") -> str:
    data = (path_or_bytes if isinstance(path_or_bytes, bytes)
            else Path(path_or_bytes).read_bytes())
    b64 = base64.b64encode(data).decode("ascii")
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _fmt(v, k=1.0, d=3):
    if v is None:
        return "–"
    try:
        return f"{float(v) * k:.{d}g}"
    except (TypeError, ValueError):
        return _e(v)


def _ci(ci, k=1.0):
    if not ci:
        return "–"
    lo = "−∞" if ci[0] is None else _fmt(ci[0], k)
    hi = "∞" if ci[1] is None else _fmt(ci[1], k)
    return f"[{lo}, {hi}]"


def _status(s):
    cls = {"identified": "ok", "at_bound": "warn", "not_identified": "bad"}.get(s, "muted")
    return f'<span class="{cls}">{_e(s or "–")}</span>'


def _table(frame, *, left=(), max_rows=None) -> str:
    rows = frame if max_rows is None else frame.head(max_rows)
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>'
                   for c in rows.columns)
    body = []
    for rec in rows.itertuples(index=False):
        cells = []
        for c, v in zip(rows.columns, rec):
            if isinstance(v, float):
                txt = "–" if v != v else f"{v:.4g}"
            else:
                txt = "" if v is None else _e(v)
            cells.append(f'<td class="{"l" if c in left else ""}">{txt}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ("" if max_rows is None or len(frame) <= max_rows else
            f'<p class="muted">… {len(frame) - max_rows} more rows</p>')
    return (f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'
            + more)


# -- sections ---------------------------------------------------------------------------

def _headline_section(doc) -> str:
    from . import constants as cfile
    out = []
    for topo in doc.get("topologies") or {}:
        h = cfile.headline(doc, topo)
        t = doc["topologies"][topo]
        if h is None:
            p2p = t.get("p2p") or {}
            out.append(f'<h3>{_e(topo)}</h3><p class="muted">no headline in these '
                       f"constants (no ping-pong, or fitted before headlines existed); "
                       f"point-to-point α = {_fmt(p2p.get('alpha'), 1e6)} µs, β = "
                       f"{_fmt(p2p.get('beta'), 1e12)} ps/B</p>")
            continue
        lat, bw = h["latency"], h["bandwidth"]
        bwv = bw.get("value")
        k, unit = (1e-9, "GB/s") if bwv is None or bwv >= 1e9 else (1e-6, "MB/s")
        out.append(
            f'<h3>{_e(topo)} <span class="muted">({_e(t.get("nodes"))} node(s), '
            f'{_e(t.get("ranks_per_node"))} rank(s) per node)</span></h3>'
            f'<div class="card"><div class="k">latency</div><div class="v">'
            f'{_fmt(lat.get("value"), 1e6)} µs</div><div class="k">95% CI '
            f'{_ci(lat.get("ci"), 1e6)} · {_status(lat.get("status"))} · sizes '
            f'{_e(lat.get("bytes_range"))} B</div></div>'
            f'<div class="card"><div class="k">bandwidth</div><div class="v">'
            f'{_fmt(bwv, k)} {unit}</div><div class="k">95% CI {_ci(bw.get("ci"), k)} · '
            f'{_status(bw.get("status"))} · sizes {_e(bw.get("bytes_range"))} B</div></div>'
            + "".join(f'<p class="muted">{_e(key)}: {_e(e.get("note"))}</p>'
                      for key, e in (("latency", lat), ("bandwidth", bw)) if e.get("note")))
    return "".join(out) or '<p class="muted">no topology</p>'


def _summary_section(doc) -> str:
    from .summary import summary_table
    try:
        table = summary_table(doc)
    except Exception as exc:  # a summary bug must not lose the report
        return f'<p class="bad">summary table unavailable: {_e(exc)}</p>'
    return _table(table, left=("topology", "collective", "algorithm", "ranks"))


def _sweep_constants(run_path: Path, bootstrap: int, say):
    """(constants, plot paths or None, where-from sentence, temp dir or None)."""
    from . import constants as cfile
    cfile_path = run_path / "constants.json"
    meta = json.loads((run_path / "metadata.json").read_text(encoding="utf-8"))
    if cfile_path.is_file():
        try:
            doc = cfile.load(cfile_path)
            ids = [r.get("run_id") for r in doc["provenance"]["runs"]]
            plots = sorted((run_path / "plots").glob("*.png"))
            if meta.get("run_id") in ids and plots:
                return doc, plots, f"constants from {cfile_path}, plots from " \
                                   f"{run_path / 'plots'}", None
        except (ValueError, KeyError, TypeError):
            pass
    from .fit import FitOptions, fit_runs
    from .plots import plot_all
    say(f"fitting {run_path} (bootstrap {bootstrap})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_runs([run_path], FitOptions(bootstrap=bootstrap))
    tmp = tempfile.TemporaryDirectory(prefix="collcost-report-")
    plots = plot_all(res.entries, tmp.name)
    return res.constants, plots, f"fitted here from {run_path} (bootstrap {bootstrap})", tmp


def _sweep_section(path: Path, bootstrap: int, say) -> tuple:
    doc, plots, where, tmp = _sweep_constants(path, bootstrap, say)
    try:
        imgs = "".join(f'<figure>{_img(p, p.stem)}<figcaption>{_e(p.stem)}</figcaption>'
                       f'</figure>' for p in plots)
    finally:
        if tmp is not None:
            tmp.cleanup()
    body = (f'<p class="muted">{_e(where)}</p><h3>Headline constants per topology</h3>'
            f"{_headline_section(doc)}<h3>Fitted constants</h3>{_summary_section(doc)}"
            f'<h3>Fit plots</h3><div class="grid">{imgs or "<p>none</p>"}</div>')
    return body, doc


def _links_section(path: Path, say) -> tuple:
    import pandas as pd
    from . import links
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = links.read_links_run(path)
    an = links.analyze(data, progress=say)
    n_s = len(an.suspect_nodes) + len(an.suspect_links)
    verdict = ('<p class="ok">No suspect node or link.</p>' if not n_s else
               f'<p class="bad">{len(an.suspect_nodes)} suspect node(s), '
               f"{len(an.suspect_links)} suspect link(s).</p>")
    tiers = pd.DataFrame([{
        "tier": t["tier"], "what": t["description"], "links": t["links"],
        "α µs": _fmt(t["alpha"], 1e6), "α 95% CI µs": _ci(t["alpha_ci"], 1e6),
        "bandwidth GB/s": _fmt(t["bandwidth_Bps"], 1e-9),
        "β ps/B": _fmt(t["beta"], 1e12), "β 95% CI ps/B": _ci(t["beta_ci"], 1e12),
        "groups": len(t["groups"]), "largest group": t["largest_group"]}
        for t in an.tiers])
    parts = [f'<p class="muted">{data.nodes} endpoints, {an.fit.src.size} directed links, '
             f"sizes {data.sizes[0]}–{data.sizes[-1]} B; analysed in {an.seconds:.1f} s"
             "</p>", verdict, "<h3>Tiers</h3>", _table(tiers, left=("what",))]
    if an.suspect_nodes:
        sn = pd.DataFrame([{"host": s["host"], "node": s["node"], "feature": s["feature"],
                            "slowdown": round(s["slowdown"], 3), "z": round(s["z"], 1),
                            "evidence": s["evidence"]} for s in an.suspect_nodes])
        parts += ["<h3>Suspect nodes</h3>", _table(sn, left=("host", "evidence"))]
    if an.suspect_links:
        sl = pd.DataFrame([{"src": s["src_host"], "dst": s["dst_host"],
                            "feature": s["feature"], "tier": s["tier"],
                            "slowdown": round(s["slowdown"], 3), "z": round(s["z"], 1),
                            "evidence": s["evidence"]} for s in an.suspect_links])
        parts += ["<h3>Suspect links</h3>",
                  _table(sl, left=("src", "dst", "evidence"), max_rows=200)]
    with tempfile.TemporaryDirectory(prefix="collcost-report-") as d:
        pngs = links.plot_heatmaps(an, d)
        parts.append('<h3>Heatmaps</h3><div class="grid">' + "".join(
            f"<figure>{_img(p, p.stem)}<figcaption>{_e(p.stem)} per directed link "
            f"(red boxes: its suspect links)</figcaption></figure>" for p in pngs) + "</div>")
    return "".join(parts), an


def _constants_section(path: Path) -> tuple:
    from . import constants as cfile
    doc = cfile.load(path)
    return (f"<h3>Headline constants per topology</h3>{_headline_section(doc)}"
            f"<h3>Fitted constants</h3>{_summary_section(doc)}"), doc


def _comparison_section(base, new, threshold, bootstrap, say) -> str:
    from . import compare
    cmp = compare.compare(base, new, threshold=threshold, bootstrap=bootstrap,
                          progress=say)
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="collcost-report-") as d:
        png = compare.plot_comparison(cmp, Path(d) / "compare.png")
        buf.write(png.read_bytes())
    verdict = (f'<p class="bad">{cmp.regressions} regression(s) past '
               f"{threshold:.0%}.</p>" if cmp.regressions else
               f'<p class="ok">No regression past {threshold:.0%}.</p>')
    parts = [f'<p>BASE <code>{_e(base.path)}</code> → NEW <code>{_e(new.path)}</code>; '
             "points: Mann–Whitney U on the raw repetitions, Benjamini–Hochberg "
             "adjusted; constants: changes whose intervals are disjoint.</p>", verdict]
    parts += [f'<p class="warn">{_e(n)}</p>' for n in cmp.notes]
    parts.append(_img(buf.getvalue(), "comparison", "wide"))
    pts = cmp.points
    if pts is not None and len(pts):
        sig = pts[pts["significant"]].copy()
        sig = sig.reindex(sig["change"].abs().sort_values(ascending=False).index)
        parts.append(f"<h3>Points</h3><p>{len(pts)} compared, {len(sig)} changed "
                     f"significantly, {int(pts['regression'].sum())} regressions.</p>")
        if len(sig):
            show = sig.drop(columns=[c for c in ("dtype", "op", "buffer", "sync", "p")
                                     if c in sig.columns]).copy()
            show["change"] = [f"{100 * c:+.1f}%" for c in show["change"]]
            show["base_s"] = [_fmt(v, 1e6) for v in show["base_s"]]
            show["new_s"] = [_fmt(v, 1e6) for v in show["new_s"]]
            show = show.rename(columns={"base_s": "base µs", "new_s": "new µs"})
            parts.append(_table(show, left=("collective", "algorithm", "topology"),
                                max_rows=100))
    c = cmp.constants
    if c is not None and len(c):
        order = c.reindex(c["change"].abs().sort_values(ascending=False).index)
        rows = order.assign(
            change=[f"{100 * v:+.1f}%" if v == v else "–" for v in order["change"]],
            interval=[f"[{100 * lo:+.0f}%, {100 * hi:+.0f}%]" if lo == lo and hi == hi
                      else "–" for lo, hi in zip(order["change_lo"], order["change_hi"])],
            flag=["REGRESSION" if r else "improved" if i else "changed" if s else ""
                  for r, i, s in zip(order["regression"], order["improvement"],
                                     order["significant"])])
        scale = [compare._SCALE.get(u, (1.0, u)) for u in order["unit"]]
        rows = rows.assign(
            unit=[u for _, u in scale],
            base=[_fmt(v, k) for v, (k, _) in zip(order["base"], scale)],
            new=[_fmt(v, k) for v, (k, _) in zip(order["new"], scale)])
        rows = rows[["constant", "unit", "base", "new", "change", "interval", "flag"]]
        parts.append("<h3>Constants</h3>" + _table(rows, left=("constant", "flag"),
                                                   max_rows=150))
    return "".join(parts)


def build_report(inputs, *, bootstrap: int = 100, threshold: float = 0.05,
                 progress=None) -> str:
    """The HTML text of the report of ``inputs`` (paths; see the module docstring)."""
    from . import compare
    say = progress or (lambda m: None)
    sides = [compare.load_side(p, f"RUN {i + 1}") for i, p in enumerate(inputs)]
    if len(sides) == 2:
        compare.check_layouts(sides[0], sides[1])  # refuse before any work
    sections = []
    for s in sides:
        title = {"sweep": "Sweep run", "links": "Links run",
                 "constants": "Constants file"}[s.kind]
        if s.kind == "sweep":
            body, _ = _sweep_section(s.path, bootstrap, say)
        elif s.kind == "links":
            body, _ = _links_section(s.path, say)
        else:
            body, _ = _constants_section(s.path)
        sections.append((f"{title}: {s.path.name}", body))
    if len(sides) == 2:
        sections.append(("Comparison", _comparison_section(sides[0], sides[1], threshold,
                                                           bootstrap, say)))
    nav = "".join(f'<a href="#s{i}">{_e(t)}</a>' for i, (t, _) in enumerate(sections))
    body = "".join(f'<section id="s{i}"><h2>{_e(t)}</h2>{b}</section>'
                   for i, (t, b) in enumerate(sections))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>collcost report</title><style>{_CSS}</style></head><body>"
            f"<header><h1>collcost report</h1><p>{_e(', '.join(str(p) for p in inputs))}"
            f" · generated {now}</p></header><main><nav>{nav}</nav>{body}"
            "<p class=\"muted\">Units: α in µs, β in ps/B, bandwidth in GB/s (10⁹ B/s); "
            "intervals are 95% unless stated.</p></main></body></html>\n")


PROG = "python -m fits.report"


def build_parser(prog: str = PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Write one self-contained HTML report (images embedded, no network) "
                    "of sweep runs, links runs or constants files; with two inputs of "
                    "the same kind, their comparison.  Exit 2 on bad input (nothing "
                    "written).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="RUN",
                   help="sweep run directory, links run directory or constants file "
                        "(1 or 2)")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--bootstrap", type=int, default=100,
                   help="bootstrap replicates when a sweep run must be fitted")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="regression threshold of the comparison (fraction)")
    return p


def main(argv=None, prog: str = PROG) -> int:
    from collectives.parsing import reject_empty_arguments
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        reject_empty_arguments(argv)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser(prog).parse_args(argv)

    def say(msg):
        print(f"[fits.report] {msg}", file=sys.stderr, flush=True)

    try:
        if len(args.inputs) > 2:
            raise UsageError(f"RUN: give 1 or 2 inputs, got {len(args.inputs)}")
        from .__main__ import MAX_BOOTSTRAP  # the fit's bound, before anything is built
        if not 0 <= args.bootstrap <= MAX_BOOTSTRAP:
            raise UsageError(f"--bootstrap must be between 0 and {MAX_BOOTSTRAP}, got "
                             f"{args.bootstrap}")
        if not args.threshold >= 0:
            raise UsageError(f"--threshold must be >= 0, got {args.threshold}")
        paths = [check_input(p, option="RUN", directory=None) for p in args.inputs]
        if len(paths) == 2 and paths[0] == paths[1]:
            raise UsageError(f"RUN {args.inputs[0]} given twice")
        files = []
        for p in paths:  # the report may sit in a run directory, never on an input file
            files += [p] if p.is_file() else [q for q in p.iterdir() if q.is_file()]
            if p.is_dir() and (p / "plots").is_dir():
                files.append(p / "plots")
        out = check_output(args.out, inputs=files, option="--out",
                           overwrite=args.overwrite)
        if not str(out).endswith((".html", ".htm")):
            raise UsageError(f"--out {args.out}: expected a .html file name")
        from .plots import require_matplotlib
        try:
            require_matplotlib()
        except RuntimeError as exc:
            raise UsageError(f"the report draws plots: {exc}") from None
        text = build_report(paths, bootstrap=args.bootstrap, threshold=args.threshold,
                            progress=say)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # a run or constants file that cannot be read
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    atomic_write_text(out, text)
    say(f"wrote {out} ({len(text) / 1e6:.1f} MB)")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
