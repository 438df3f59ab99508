"""Links analysis at scale: a synthetic links run of N nodes (default 1024: ~10^6
directed links x 3 sizes), written to a temporary directory, read back and analysed.

Prints, side by side in one run: seconds and peak memory (RSS high-water mark) of
writing, reading and analysing, and whether the planted slow node, slow links and the
two tiers were recovered (tier β within 10% of the truth).  Timings depend on the
machine's load (wall vs CPU seconds show it): rerun on a quiet machine for numbers to
quote.

    .venv/bin/python benchmarks/bench_links_scale.py [--nodes 1024] [--keep DIR]
"""
import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fits import linksynth, links  # noqa: E402


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1024)
    ap.add_argument("--groups", type=int, default=32)
    ap.add_argument("--repetitions", type=int, default=6)
    ap.add_argument("--keep", help="write the run here and keep it")
    ap.add_argument("--files", action="store_true",
                    help="write the run directory and read it back (the full path; about "
                         "2.7 GB and several minutes at 1024 nodes) instead of building "
                         "the points in memory")
    a = ap.parse_args()
    n = a.nodes
    slow_links = {(1, n // 2 + 3): 2.0, (7, 8): 2.0}
    c = linksynth.make_cluster(n, groups=a.groups, slow_nodes={n // 3: 2.0},
                               slow_links=slow_links, seed=1)
    t_write = t_read = c_write = c_read = 0.0
    r0 = r1 = rss_mb()
    size = 0.0
    tmp = None
    try:
        if a.files or a.keep:
            tmp = (Path(a.keep) if a.keep
                   else Path(tempfile.mkdtemp(prefix="links-bench-")) / "run")
            t, c0 = time.perf_counter(), time.process_time()
            linksynth.write_run(tmp, c, repetitions=a.repetitions, seed=2)
            t_write, c_write = time.perf_counter() - t, time.process_time() - c0
            size = sum(f.stat().st_size for f in tmp.iterdir()) / 2**20
            r0 = rss_mb()
            t, c0 = time.perf_counter(), time.process_time()
            data = links.read_links_run(tmp)
            t_read, c_read = time.perf_counter() - t, time.process_time() - c0
            r1 = rss_mb()
        else:
            t, c0 = time.perf_counter(), time.process_time()
            data = linksynth.links_data(c, repetitions=a.repetitions, seed=2)
            t_write, c_write = time.perf_counter() - t, time.process_time() - c0
            r0 = r1 = rss_mb()
        t, c0 = time.perf_counter(), time.process_time()
        an = links.analyze(data, progress=lambda m: print("  ", m, file=sys.stderr))
        t_an, c_an = time.perf_counter() - t, time.process_time() - c0
        r2 = rss_mb()
        with tempfile.TemporaryDirectory() as d:
            t, c0 = time.perf_counter(), time.process_time()
            links.write_outputs(an, Path(d) / "out", overwrite=False, plots=True)
            t_out, c_out = time.perf_counter() - t, time.process_time() - c0
        r3 = rss_mb()
    finally:
        if tmp is not None and not a.keep:
            shutil.rmtree(tmp.parent, ignore_errors=True)
    print(f"N={n} links={an.fit.src.size} points={data.median.size} files={size:.0f} MiB")
    print(f"{'stage':<10} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    for name, s, cpu, r in (
            ("generate" if not (a.files or a.keep) else "write", t_write, c_write, r0),
            ("read", t_read, c_read, r1), ("analyse", t_an, c_an, r2),
            ("outputs", t_out, c_out, r3)):
        print(f"{name:<10} {s:8.1f} {cpu:8.1f} {r:13.0f}")
    nodes = sorted(s["node"] for s in an.suspect_nodes)
    found = {(s["src"], s["dst"]) for s in an.suspect_links}
    want = {k for ij in slow_links for k in (ij, ij[::-1])}
    print(f"suspect nodes {nodes} (planted [{n // 3}])")
    print(f"suspect links found {len(found)}: planted found {len(want & found)}/{len(want)},"
          f" others {len(found - want)}")
    print("tiers:", [(t["tier"], t["links"], f"{1e-9 / t['beta']:.3g} GB/s") for t in an.tiers],
          "truth: 10, 5 GB/s")
    ok = (nodes == [n // 3] and want <= found and len(an.tiers) == 2
          and all(abs(t["beta"] / b - 1) < 0.1 for t, b in zip(an.tiers, c.tier_beta)))
    print("recovered:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
