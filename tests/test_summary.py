"""collectives.summary: the 100-column table and the OSU / nccl-tests layouts, read back
with the patterns those tools' users rely on (ReFrame's OSU regexes, nccl-tests' JSON
keys)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectives import costs, summary
from collectives.costs import AUXILIARY, COLLECTIVES

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "example-2rank"
SIZES = [8, 1024, 65536, 1 << 20, 8 << 20]


def _row(c, alg="native", p=4, nbytes=1 << 20, med=1e-3, mean=1.1e-3, topo="intra",
         unstable=False, correct=True, reps=37, launch="L1", dtype="float32"):
    elem = {"float32": 4, "float64": 8, "int32": 4, "int64": 8}[dtype]
    return {"collective": c, "algorithm": alg, "topology": topo, "ranks": p, "nodes": 1,
            "bytes": nbytes, "dtype": dtype, "op": "sum", "buffer": "numpy",
            "sync": "barrier", "count": nbytes // elem, "launch": launch,
            "median_s": med, "ci_low_s": med * 0.99, "ci_high_s": med * 1.02,
            "mean_s": mean, "min_s": med * 0.9, "p95_s": med * 1.1, "p99_s": med * 1.2,
            "repetitions": reps, "discarded": 0, "warmup": 5, "stop_rule": "ci",
            "unstable": unstable, "correct": correct,
            "timestamp_utc": "2026-12-01T10:00:00.5Z"}


def _all_rows():
    """Every collective x every algorithm it has, long names and both flags."""
    rows = []
    for c in COLLECTIVES + AUXILIARY:
        algs = (costs.algorithms(c) if c in COLLECTIVES else ()) + (costs.NATIVE,)
        for alg in dict.fromkeys(algs):
            for i, n in enumerate(SIZES):
                rows.append(_row(c, alg, p=1024, nbytes=n + (3 if i == 1 else 0),
                                 med=1e-6 * (1 + n / 1e3), mean=1.2e-6 * (1 + n / 1e3),
                                 unstable=i == 0, correct=i != 0 and i != 2))
    return rows


# ---------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------

class TestTable:
    def test_fits_100_columns_with_the_longest_names_and_flags(self):
        text = summary.format_table(_all_rows())
        assert max(len(line) for line in text.splitlines()) <= 100, \
            max(text.splitlines(), key=len)
        assert "unstable,WRONG" in text  # the longest flags, on the widest row
        assert "recursive_doubling" in text and "reduce_scatter" in text

    def test_default_columns_have_units_and_wide_adds_the_rest(self):
        narrow = summary.format_table([_row("allreduce")], legend=False).splitlines()
        head = narrow[0].split()
        assert head == ["collective", "algorithm", "topo", "ranks", "size", "median(us)",
                        "ci95(%)", "busbw(GB/s)", "flags"]
        wide = summary.format_table([_row("allreduce")], wide=True, legend=False)
        whead = wide.splitlines()[0].split()
        for extra in ("bytes", "algbw(GB/s)", "mean(us)", "min(us)", "p99(us)", "reps",
                      "warmup", "stop"):
            assert extra in whead and extra not in head

    def test_values(self):
        """median in us, CI as the wider side in %, busbw = bytes/median x factor;
        counts print as integers."""
        rows = [_row(c, p=4) for c in COLLECTIVES + AUXILIARY]
        lines = summary.format_table(rows, wide=True, legend=False).splitlines()
        head = lines[0].split()
        factor = {"allreduce": 1.5, "reduce_scatter": 0.75, "allgather": 0.75,
                  "bcast": 1.0, "pingpong": 1.0}
        for line in lines[1:]:
            f = dict(zip(head, line.split()))
            assert float(f["median(us)"]) == pytest.approx(1000.0)
            assert float(f["ci95(%)"]) == pytest.approx(2.0)
            algbw = (1 << 20) / 1e-3 / 1e9
            assert float(f["algbw(GB/s)"]) == pytest.approx(algbw, abs=1e-3)
            if f["collective"] in factor:
                assert float(f["busbw(GB/s)"]) == pytest.approx(
                    algbw * factor[f["collective"]], abs=1e-3)
            else:
                assert f["busbw(GB/s)"] == "-"
            assert re.fullmatch(r"\d+", f["reps"]) and int(f["reps"]) == 37
            assert re.fullmatch(r"\d+", f["ranks"]) and f["size"] == "1MiB"

    def test_float_counts_from_a_frame_print_as_integers(self):
        row = _row("allreduce", reps=37.0, p=4.0)
        line = summary.format_table([row], wide=True, legend=False).splitlines()[1]
        assert "37.0" not in line and " 4 " in line

    def test_merged_run_one_section_per_launch(self):
        rows = [_row("allreduce", nbytes=n, launch=launch) for launch in ("B", "A")
                for n in (8, 1024)]
        lines = summary.format_table(rows, legend=False).splitlines()
        assert [line for line in lines if line.startswith("launch ")] == [
            "launch A: 2 point(s)", "launch B: 2 point(s)"]
        assert sum(line.startswith("collective ") for line in lines) == 2
        data = [line for line in lines if line.startswith("allreduce")]
        assert len(data) == 4

    def test_large_table_is_bounded(self):
        """10^5 points (a 1024-node sweep's order of magnitude) format in seconds."""
        base = _all_rows()
        rows = [dict(r, ranks=2 + i % 1000) for i in range(100_000 // len(base) + 1)
                for r in base][:100_000]
        start = time.perf_counter()
        text = summary.format_table(rows)
        elapsed = time.perf_counter() - start
        assert text.count("\n") >= 100_000
        assert elapsed < 60, elapsed  # generous: a shared, busy machine


# ---------------------------------------------------------------------------------
# OSU
# ---------------------------------------------------------------------------------

#: The pattern ReFrame's OSU checks use for a data line (size, then the latency).
OSU_LINE = re.compile(r"^(?P<size>\d+)\s+(?P<latency>\S+)", re.MULTILINE)


def _osu_blocks(text):
    """Split OSU output into (header line, body) per benchmark block."""
    parts = re.split(r"^(# OSU MPI .*)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2]))


class TestOSU:
    def test_reframe_patterns_read_sizes_and_latencies(self):
        rows = [_row("allreduce", nbytes=n, mean=1e-6 * (2 + n / 1e4)) for n in SIZES]
        text = summary.format_osu(rows)
        # ReFrame's OSU sanity: the benchmark's title and a line starting with the size
        assert re.search(r"OSU MPI Allreduce Latency Test", text)
        assert re.search(r"^8", text, re.MULTILINE)
        found = {int(m["size"]): float(m["latency"]) for m in OSU_LINE.finditer(text)}
        assert found == {n: pytest.approx(round(1e6 * 1e-6 * (2 + n / 1e4), 2), abs=0.006)
                         for n in SIZES}
        # the per-size extraction ReFrame's osu_latency check does
        m = re.search(rf"^{8 << 20}\s+(\S+)", text, re.MULTILINE)
        assert float(m.group(1)) == pytest.approx(2 + (8 << 20) / 1e4, abs=0.006)

    def test_layout_is_osus(self):
        """OSU's print_only_header/print_stats: '# Size' left in 10 columns, the value
        right-aligned in 20 with 2 decimals; a '# Datatype: MPI_X.' line."""
        text = summary.format_osu([_row("bcast", nbytes=64, mean=3.456e-6)])
        lines = text.splitlines()
        assert "# Datatype: MPI_FLOAT." in lines
        head = next(line for line in lines if line.startswith("# Size"))
        assert head == "# Size" + " " * 4 + "Avg Latency(us)".rjust(20)
        data = [line for line in lines if not line.startswith("#") and line]
        assert data == ["64".ljust(10) + "3.46".rjust(20)]
        wide = summary.format_osu([_row("bcast", nbytes=64)], wide=True).splitlines()
        head = next(line for line in wide if line.startswith("# Size"))
        assert head.split("  ")[-1].strip() == "Iterations" and "Min Latency(us)" in head
        data = [line for line in wide if line and not line.startswith("#")][0].split()
        assert data[-1] == "37"

    def test_one_block_per_group_and_osu_size_conventions(self):
        notes = []
        text = summary.format_osu(_all_rows(), notes=notes)
        blocks = _osu_blocks(text)
        groups = {(r["collective"], r["algorithm"]) for r in _all_rows()
                  if r["collective"] != "reduce_local"}
        assert len(blocks) == len(groups)
        titles = {h for h, _ in blocks}
        assert titles == {"# OSU MPI Broadcast Latency Test",
                          "# OSU MPI Reduce_scatter Latency Test",
                          "# OSU MPI Allreduce Latency Test",
                          "# OSU MPI Allgather Latency Test", "# OSU MPI Latency Test"}
        for head, body in blocks:
            sizes = [int(m["size"]) for m in OSU_LINE.finditer(body)]
            expected = [n + (3 if i == 1 else 0) for i, n in enumerate(SIZES)]
            if "Allgather" in head:  # OSU's allgather size is the per-rank block
                expected = [n // 1024 for n in expected]
            assert sizes == expected, head
        assert notes and "reduce_local" in notes[0]

    def test_example_run(self):
        rows, meta = summary.load_rows(EXAMPLE)
        text = summary.render(rows, "osu")
        n = sum(1 for r in rows if r["collective"] != "reduce_local")
        assert len(OSU_LINE.findall(text)) == n


# ---------------------------------------------------------------------------------
# nccl-tests
# ---------------------------------------------------------------------------------

class TestNccl:
    def test_json_keys_nccl_tests_users_read(self):
        rows = [_row("allreduce", p=8, nbytes=n, mean=1e-5 * (1 + n / 1e6)) for n in SIZES]
        rows[2]["correct"] = False
        text = summary.format_nccl(rows, {"command_line": ["x", "--y"],
                                          "date_utc": "2026-12-01T10:00:00Z"})
        doc = json.loads(text)  # one group: exactly one JSON document
        assert doc["version"] == 3
        assert doc["args"] == ["x", "--y"] and doc["start_time"] == "2026-12-01 10:00:00"
        assert doc["config"]["minimum_bytes"] == 8 and doc["config"]["maximum_bytes"] == 8 << 20
        sizes = [r["size"] for r in doc["results"]]
        assert sizes == SIZES
        busbws = []
        for r, n in zip(doc["results"], SIZES):
            oop = r["out_of_place"]
            t = 1e-5 * (1 + n / 1e6)
            assert oop["time"] == pytest.approx(t * 1e6)
            assert oop["alg_bw"] == pytest.approx(n / t / 1e9)
            assert oop["bus_bw"] == pytest.approx(n / t / 1e9 * 2 * 7 / 8)
            busbws.append(oop["bus_bw"])
            assert r["type"] == "float" and r["redop"] == "sum"
            assert r["root"].strip() == "-1" and len(r["root"]) == 6
            assert r["count"] == n // 4
            assert r["in_place"] is None and r["actual_iterations"] == 37
        assert [r["out_of_place"]["nwrong"] for r in doc["results"]] == [0, 0, None, 0, 0]
        assert doc["out_of_bounds"] == {"count": 1, "okay": False}
        assert doc["average_bus_bandwidth"]["bandwidth"] == pytest.approx(
            sum(busbws) / len(busbws))

    def test_sizes_and_counts_follow_nccl_tests(self):
        """size: whole vector (reduce_scatter input, allgather output); count: the
        per-rank block for reduce_scatter and allgather; busbw factors (p-1)/p, 1."""
        n, p = 1 << 20, 4
        docs = summary.nccl_documents([_row(c, p=p, nbytes=n) for c in
                                       ("reduce_scatter", "allgather", "bcast")])
        by = {d["collcost"]["collective"]: d for d in docs}
        for c, count, factor, redop, root in (
                ("reduce_scatter", n // 4 // p, 0.75, "sum", -1),
                ("allgather", n // 4 // p, 0.75, "none", -1),
                ("bcast", n // 4, 1.0, "none", 0)):
            r = by[c]["results"][0]
            assert r["size"] == n and r["count"] == count, c
            assert r["redop"] == redop and int(r["root"]) == root
            assert r["out_of_place"]["bus_bw"] == pytest.approx(
                r["out_of_place"]["alg_bw"] * factor)
        assert by["bcast"]["collcost"]["test"] == "broadcast_perf"

    def test_json_lines_one_document_per_group(self):
        notes = []
        text = summary.format_nccl(_all_rows(), notes=notes)
        docs = [json.loads(line) for line in text.splitlines()]
        groups = {(r["collective"], r["algorithm"]) for r in _all_rows()
                  if r["collective"] != "reduce_local"}
        assert len(docs) == len(groups)
        assert {(d["collcost"]["collective"], d["collcost"]["algorithm"])
                for d in docs} == groups
        assert all(len(d["results"]) == len(SIZES) for d in docs)
        assert "reduce_local" in notes[0]


# ---------------------------------------------------------------------------------
# The command (python -m collectives.summary / collcost summary)
# ---------------------------------------------------------------------------------

def _cmd(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "collectives.summary", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


class TestCommand:
    def test_selection_gives_one_nccl_document(self):
        res = _cmd(EXAMPLE, "--format", "nccl", "--collectives", "allreduce",
                   "--algorithms", "native", "--ranks", "2", "--topology", "intra")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["collcost"]["collective"] == "allreduce" and doc["results"]

    def test_table_and_csv(self):
        res = _cmd(EXAMPLE)
        assert res.returncode == 0, res.stderr
        assert max(len(line) for line in res.stdout.splitlines()) <= 100
        res = _cmd(EXAMPLE, "--format", "csv")
        assert res.returncode == 0 and res.stdout.startswith("collective,algorithm,")
        assert "samples" not in res.stdout.splitlines()[0]

    @pytest.mark.parametrize("args, needle", [
        (["--ranks", "x"], "--ranks"),
        (["--collectives", "alltoall"], "--collectives: alltoall not in the run"),
        (["--format", "xml"], "--format"),
    ])
    def test_bad_options(self, args, needle):
        res = _cmd(EXAMPLE, *args)
        assert res.returncode == 2 and needle in res.stderr and res.stdout == ""

    def test_links_run_points_to_fit_links(self, tmp_path):
        from fits import linksynth
        linksynth.write_run(tmp_path / "links", linksynth.make_cluster(3))
        res = _cmd(tmp_path / "links")
        assert res.returncode == 2 and "collcost fit-links" in res.stderr

    def test_bad_run(self, tmp_path):
        res = _cmd(tmp_path / "nope")
        assert res.returncode == 2 and "no such file or directory" in res.stderr
        res = _cmd(tmp_path)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------
# The progress line on a terminal (collectives.progress): one row, never wider
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", [60, 100, 200])
def test_progress_line_fits_the_terminal(monkeypatch, columns):
    import io
    from collectives.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", str(columns))
    out = Tty()
    progress = Progress(3, out)
    for label in ("allreduce recursive_doubling intra p=1024 64MiB " * 3, "short", "x"):
        progress.update(label)
    progress.close()
    rows = out.getvalue().split("\r")[1:]
    assert len(rows) == 3
    assert all(len(row.rstrip("\n")) == columns - 1 for row in rows)
