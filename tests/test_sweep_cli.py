"""The sweep's command line as a newcomer uses it: --algorithms all for the selected
collectives, the summary at the end in 100 columns or in the OSU / nccl-tests layouts
(read back with the patterns those tools' users rely on), under mpiexec at 1, 3 and 4
ranks with tiny and multi-MiB sizes."""
from __future__ import annotations

import json
import re

import pytest

from collectives import costs
from collectives.files import UsageError
from mpirun import mpirun

FAST = ["--time-budget", "0.01", "--min-reps", "3", "--max-reps", "20"]
OSU_LINE = re.compile(r"^(?P<size>\d+)\s+(?P<latency>\S+)", re.MULTILINE)


def _layout(n=4):
    from collectives.topology import layout_from_hosts
    return layout_from_hosts(["h"] * n)


class TestAlgorithmsAll:
    def _algos(self, collectives, algorithms="all"):
        from collectives import sweep as sw
        opts = sw.validate({"collectives": collectives, "algorithms": algorithms,
                            "sizes": "8", "resume": "x"}, _layout())
        return opts.algorithms

    @pytest.mark.parametrize("colls", ["allreduce,bcast", "bcast", "reduce_scatter",
                                       "allgather,pingpong", "pingpong,reduce_local"])
    def test_all_means_every_algorithm_of_the_selected_collectives(self, colls):
        selected = [c for c in colls.split(",") if c in costs.COLLECTIVES]
        expected = {costs.NATIVE} | {a for c in selected for a in costs.algorithms(c)}
        assert set(self._algos(colls)) == expected

    def test_the_plan_runs_each_collective_on_its_own_algorithms(self):
        from collectives import sweep as sw
        opts = sw.validate({"collectives": "allreduce,bcast", "algorithms": "all",
                            "sizes": "8", "resume": "x"}, _layout())
        planned = {(c, a) for _, pts in sw.plan_points(opts, _layout()) for c, a, _ in pts}
        assert planned == {(c, a) for c in ("allreduce", "bcast")
                           for a in costs.algorithms(c)}

    def test_a_named_algorithm_the_collectives_lack_is_still_refused(self):
        with pytest.raises(UsageError, match="'pairwise' is not an algorithm"):
            self._algos("allreduce,bcast", "pairwise")
        with pytest.raises(UsageError, match="'pairwise' is not an algorithm"):
            self._algos("allreduce", "all,pairwise")


def _sweep(n, args, timeout=180):
    return mpirun(n, ["-m", "mpi4py", "-m", "collectives.sweep"] + [str(a) for a in args],
                  timeout=timeout)


@pytest.mark.parametrize("n", [1, 3])
def test_table_fits_100_columns_and_says_where(tmp_path, n):
    out = tmp_path / "run"
    res = _sweep(n, FAST + ["--collectives", "allreduce,reduce_scatter,pingpong",
                            "--algorithms", "all", "--sizes", "8,3M", "--out", out])
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert lines[-1].startswith("wrote ") and str(out) in lines[-1]
    table = lines[:-1]  # (the last line holds the run's path, as long as it is)
    assert max(len(line) for line in table) <= 100, max(table, key=len)
    head = next(line for line in lines if line.startswith("collective "))
    assert "median(us)" in head and "busbw(GB/s)" in head


@pytest.mark.parametrize("n", [1, 4])
def test_osu_layout(tmp_path, n):
    out = tmp_path / "run"
    res = _sweep(n, FAST + ["--collectives", "allreduce,allgather,pingpong,reduce_local",
                            "--sizes", "8,3M", "--format", "osu", "--out", out])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wrote " not in res.stdout and f"to {out}" in res.stderr  # stdout: layout only
    assert "reduce_local left out" in res.stderr
    text = res.stdout
    assert re.search(r"OSU MPI Allreduce Latency Test", text)  # ReFrame's sanity check
    assert re.search(r"^8", text, re.MULTILINE)
    ranks = [1] if n == 1 else [2, 4]
    blocks = re.split(r"^(# OSU MPI .*)$", text, flags=re.MULTILINE)[1:]
    found = {}
    for head, body in zip(blocks[::2], blocks[1::2]):
        p = int(re.search(r"topology intra, (\d+) ranks", body).group(1))
        found[(head, p)] = [int(m["size"]) for m in OSU_LINE.finditer(body)]
        assert all(float(m["latency"]) > 0 for m in OSU_LINE.finditer(body))
    for p in ranks:
        assert found[("# OSU MPI Allreduce Latency Test", p)] == [8, 3 << 20]
        assert found[("# OSU MPI Allgather Latency Test", p)] == [8 // p, (3 << 20) // p]
    if n > 1:
        assert found[("# OSU MPI Latency Test", 2)] == [8, 3 << 20]
    # the same layout again from the run directory
    again = mpirun(1, ["-m", "collcost", "summary", str(out), "--format", "osu"],
                   timeout=120)
    assert again.returncode == 0 and again.stdout == text


@pytest.mark.parametrize("n", [1, 3])
def test_nccl_layout(tmp_path, n):
    out = tmp_path / "run"
    res = _sweep(n, FAST + ["--collectives", "allreduce,reduce_scatter,bcast",
                            "--algorithms", "native,ring", "--sizes", "8,3M",
                            "--format", "nccl", "--out", out])
    assert res.returncode == 0, res.stderr[-3000:]
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    ranks = [1] if n == 1 else [2, 3]
    names = {d["collcost"]["test"] for d in docs}
    assert names == {"all_reduce_perf", "reduce_scatter_perf", "broadcast_perf"}
    assert len(docs) == len(ranks) * 5  # allreduce x2, reduce_scatter x2, bcast x1
    for d in docs:
        p = d["collcost"]["ranks"]
        assert p in ranks and d["version"] == 3
        assert [r["size"] for r in d["results"]] == [8, 3 << 20]
        factor = float(costs.busbw_factor(d["collcost"]["collective"], p))
        for r in d["results"]:
            oop = r["out_of_place"]
            assert oop["time"] > 0 and oop["nwrong"] == 0
            assert oop["alg_bw"] == pytest.approx(r["size"] / oop["time"] / 1e3)
            assert oop["bus_bw"] == pytest.approx(oop["alg_bw"] * factor)
        assert d["out_of_bounds"]["okay"] is True


def test_bad_format_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    res = _sweep(1, FAST + ["--sizes", "8", "--format", "xml", "--out", out], timeout=60)
    assert res.returncode == 2 and "--format" in res.stderr
    assert not out.exists()
