"""The links plan (collectives/linkplan.py): tournament properties, endpoints, bookkeeping,
and a stand-in run of the coordinator at 1024 nodes (no MPI)."""
from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from collectives import linkplan as lp
from collectives.topology import layout_from_hosts


def all_pairs(n):
    return np.concatenate([lp.round_pairs(n, r) for r in range(lp.rounds(n))])


class TestTournament:
    @given(st.integers(2, 70))
    @settings(max_examples=60, deadline=None)
    def test_every_pair_once_and_rounds_disjoint(self, n):
        seen = set()
        assert lp.rounds(n) == (n - 1 if n % 2 == 0 else n)
        for r in range(lp.rounds(n)):
            pairs = lp.round_pairs(n, r)
            assert len(pairs) == n // 2
            ends = pairs.ravel().tolist()
            assert len(set(ends)) == len(ends), f"round {r} reuses an endpoint"
            assert (pairs[:, 0] < pairs[:, 1]).all() and pairs.max() < n
            for a, b in pairs.tolist():
                assert (a, b) not in seen
                seen.add((a, b))
                # the O(1) partner function agrees with the round's pairs
                assert lp.partner(n, r, a) == b and lp.partner(n, r, b) == a
            sitting_out = set(range(n)) - set(ends)
            assert len(sitting_out) == n % 2
            for i in sitting_out:
                assert lp.partner(n, r, i) is None
        assert len(seen) == n * (n - 1) // 2

    @pytest.mark.parametrize("n", [1, 0, -3])
    def test_too_few(self, n):
        with pytest.raises(lp.PlanError, match="at least 2 endpoints"):
            lp.rounds(n)

    def test_1024_is_fast_and_small(self):
        n = 1024
        tracemalloc.start()
        start = time.perf_counter()
        count, check = 0, np.zeros((n, n), dtype=bool)
        for r in range(lp.rounds(n)):
            p = lp.round_pairs(n, r)
            assert not check[p[:, 0], p[:, 1]].any()
            check[p[:, 0], p[:, 1]] = True
            count += len(p)
        took = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n * (n - 1) // 2 and check[np.triu_indices(n, 1)].all()
        # generous bounds for a busy 2-core machine; the check matrix itself is 1 MiB
        assert took < 20, f"planning 1024 endpoints took {took:.1f} s"
        assert peak < 8 << 20, f"planning peaked at {peak / 2**20:.1f} MiB"


class TestEndpoints:
    layout = layout_from_hosts(["a"] * 4 + ["b"] * 4 + ["c"] * 4)

    def test_node_mode(self):
        e = lp.endpoints(self.layout)
        assert [(x.index, x.host, x.rank) for x in e] == [(0, "a", 0), (1, "b", 4),
                                                          (2, "c", 8)]

    def test_group_mode(self):
        e = lp.endpoints(self.layout, "group", 2)
        assert [(x.host, x.rank, x.group) for x in e] == [
            ("a", 0, 0), ("a", 2, 1), ("b", 4, 0), ("b", 6, 1), ("c", 8, 0), ("c", 10, 1)]

    def test_rank_mode(self):
        e = lp.endpoints(layout_from_hosts(["a", "b", "a"]), "rank")
        assert [(x.host, x.rank, x.group) for x in e] == [("a", 0, 0), ("b", 1, 0),
                                                          ("a", 2, 1)]

    @pytest.mark.parametrize("hosts, mode, g, message", [
        (["a", "a", "a"], "node", None, "gives 1 endpoint(s) (3 rank(s) on 1 node(s))"),
        (["a"], "rank", None, "start at least 2 ranks"),
        (["a", "a", "b"], "group", 2, "node b holds only 1 rank(s)"),
        (["a", "b"], "group", None, "needs --groups-per-node"),
        (["a", "b"], "group", 0, "--groups-per-node must be a whole number >= 1"),
        (["a", "b"], "node", 2, "only meaningful with --mode group"),
        (["a", "b"], "switch", None, "--mode: unknown value 'switch'"),
    ])
    def test_bad(self, hosts, mode, g, message):
        with pytest.raises(lp.PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
            lp.endpoints(layout_from_hosts(hosts), mode, g)


class TestPlan:
    @pytest.mark.parametrize("n, k, steps", [(4, None, 3), (4, 1, 6), (5, 1, 10),
                                             (6, 2, 10), (6, 0, 5), (7, 100, 7)])
    def test_steps(self, n, k, steps):
        plan = lp.Plan(n, [8, 1024], "one", k)
        got = list(plan.steps())
        assert len(got) == plan.total_steps == steps
        assert [s.index for s in got] == list(range(steps))
        pairs = np.concatenate([s.pairs for s in got])
        assert len({tuple(p) for p in pairs.tolist()}) == len(pairs) == n * (n - 1) // 2
        assert max(len(s.pairs) for s in got) == plan.concurrent
        assert plan.schedule == ("serial" if plan.concurrent == 1 else "tournament")

    def test_assignments_and_directions(self):
        ends = lp.endpoints(layout_from_hosts(["h"] * 5), "rank")
        for direction, per_pair in (("one", 2), ("both", 4)):
            plan = lp.Plan(5, [8, 64], direction)
            assert plan.points == 10 * per_pair
            step = next(plan.steps())
            got = plan.assignments(step, ends)
            assert len(got) == 4  # two pairs, one endpoint sits out
            for rank, a in got.items():
                assert got[a.partner_rank].partner_rank == rank
                assert got[a.partner_rank].points == a.points
                assert len(a.points) == per_pair and a.concurrent == 2
                assert a.leader == (a.me < a.other)

    @pytest.mark.parametrize("kw, message", [
        ({"sizes": []}, "--sizes is empty"),
        ({"direction": "up"}, "--direction: unknown value 'up'"),
        ({"concurrent": -1}, "--concurrent must be a whole number >= 1"),
    ])
    def test_bad(self, kw, message):
        args = dict(n=4, sizes=[8], direction="one", concurrent=None)
        args.update(kw)
        with pytest.raises(lp.PlanError, match=message):
            lp.Plan(**args)

    def test_describe_and_estimate(self):
        plan = lp.Plan(5, [8, 64, 1024], "both", 1)
        ends = lp.endpoints(layout_from_hosts(["a", "b", "c", "d", "e"]))
        text = plan.describe(ends, "node")
        assert "5 endpoints" in text and "10 pairs" in text and "serial" in text
        assert "60 points" in text and "sits out" in text
        # 10 steps x 2 directions x 3 sizes x 0.5 s, plus the step overhead
        assert plan.estimate(0.5, step_overhead=0) == pytest.approx(30.0)
        assert plan.estimate(0.5, remaining_points=30, step_overhead=0) == \
            pytest.approx(15.0)
        assert lp.format_duration(3723) == "1h02m" and lp.format_duration(75) == "1m15s"


def run_standin(plan, ends, ledger, measure):
    """What rank 0 does, without MPI: walk the steps, hand out assignments, record the
    rows the pair leaders send back.  Returns (rows written, most points one rank was
    told about in one step, steps that had work)."""
    written, biggest, busy = 0, 0, 0
    start = ledger.first_round_left(plan)
    for step in plan.steps(start):
        told = plan.assignments(step, ends, ledger)
        if not told:
            continue
        busy += 1
        ranks = [r for pair in step.pairs.tolist() for r in (ends[pair[0]].rank,
                                                              ends[pair[1]].rank)]
        assert set(told) <= set(ranks)
        biggest = max(biggest, max(len(a.points) for a in told.values()))
        for a in told.values():
            if a.leader:
                for src, dst, size in a.points:
                    ledger.mark(src, dst, size, measure(src, dst, size))
                    written += 1
    return written, biggest, busy


class TestBookkeepingAt1024:
    def test_full_run_then_resume(self):
        n, sizes = 1024, [8, 65536, 4 << 20]
        ends = lp.endpoints(layout_from_hosts([f"n{i:04d}" for i in range(n)]))
        plan = lp.Plan(n, sizes, "one")
        ledger = lp.Ledger(n, sizes)
        assert ledger.nbytes == n * n * len(sizes) * 5  # bool + float32: O(n^2) only
        assert ledger.remaining(plan) == plan.points == 523776 * 3
        # a first launch that stops after a third of the rounds
        cut = plan.rounds // 3
        partial_plan = [s for s in plan.steps() if s.round < cut]
        for step in partial_plan:
            for a in plan.assignments(step, ends, ledger).values():
                if a.leader:
                    for src, dst, size in a.points:
                        ledger.mark(src, dst, size, 1e-6 * (1 + size / 1e4))
        done_first = ledger.count()
        assert done_first == cut * 512 * 3
        assert ledger.first_round_left(plan) == cut
        start = time.perf_counter()
        written, biggest, busy = run_standin(plan, ends, ledger,
                                             lambda s, d, size: 1e-6 * (1 + size / 1e4))
        took = time.perf_counter() - start
        assert written + done_first == plan.points  # every point once, none twice
        assert ledger.remaining(plan) == 0 and biggest == 3
        assert busy == plan.rounds - cut
        assert not np.isnan(ledger.median[np.triu_indices(n, 1)]).any()
        assert took < 120, f"the stand-in coordinator took {took:.0f} s at 1024 nodes"

    def test_both_directions_and_serial_resume_partial_pair(self):
        n, sizes = 9, [8, 1024]
        ends = lp.endpoints(layout_from_hosts(["h"] * n), "rank")
        plan = lp.Plan(n, sizes, "both", 1)
        ledger = lp.Ledger(n, sizes)
        ledger.mark(3, 5, 1024, 2e-6)  # one point of one pair done before
        written, biggest, busy = run_standin(plan, ends, ledger, lambda *a: 1e-6)
        assert written == plan.points - 1 and ledger.remaining(plan) == 0
        assert biggest == 4 and busy == plan.total_steps == 36

    def test_ledger_rejects_unplanned(self):
        ledger = lp.Ledger(4, [8])
        with pytest.raises(ValueError, match="size 9"):
            ledger.mark(0, 1, 9)
        with pytest.raises(ValueError, match=r"\(2, 2\)"):
            ledger.mark(2, 2, 8)


class TestRowsAndFiles:
    """The rank-0 side without MPI: a row's size does not grow with its repetitions,
    and the writer streams every link of 128 endpoints to disk and reads them back."""

    @staticmethod
    def row(n, reps, size=1024):
        from collectives.harness import Timing
        from collectives.operations import Prepared
        rng = np.random.default_rng(reps)
        t = 1e-6 * (1 + rng.random(reps))
        timing = Timing(max_s=t, min_s=t, mean_s=t, discarded=0, warmup=3,
                        stop_rule="budget")
        return timing, Prepared("pingpong", "native", size // 4, None, None, scale=0.5)

    def test_row_size_bounded_in_repetitions(self, tmp_path):
        import json

        from collectives import links
        layout = layout_from_hosts(["h"] * 4)
        opts, ends, plan = links.validate({"mode": "rank", "sizes": "1K",
                                           "out": str(tmp_path / "r")}, layout)
        step = next(plan.steps())
        a = plan.assignments(step, ends)[0]
        lengths = []
        for reps in (100, 10_000, 100_000):
            timing, prepared = self.row(4, reps)
            row = links._row(opts, plan, ends, a, 0, a.other, 1024, prepared, timing, True)
            assert row["repetitions"] == reps and row["samples_kept"] == 64
            assert row["median_s"] == pytest.approx(0.5 * np.median(timing.max_s))
            lengths.append(len(json.dumps(row)))
        assert max(lengths) < 1.2 * min(lengths) and max(lengths) < 6000, lengths
        assert list(tmp_path.iterdir()) == []  # validating wrote nothing

    def test_writer_streams_every_link_and_resume_reads_them(self, tmp_path):
        import json

        from collectives import links
        n = 128
        layout = layout_from_hosts([f"n{i}" for i in range(n)])
        run = tmp_path / "run"
        opts, ends, plan = links.validate({"sizes": "1K", "out": str(run)}, layout)
        meta = {"run_id": "test-run", "links": links._links_section(opts, plan, ends),
                "options": opts.to_metadata()}
        writer = links.LinkRunWriter.create(opts.out, meta)
        assert (run / ".lock").exists()
        timing, prepared = self.row(n, 500)
        for step in plan.steps():
            rows = [links._row(opts, plan, ends, a, a.me, a.other, 1024, prepared,
                               timing, True)
                    for a in plan.assignments(step, ends).values() if a.leader]
            writer.append(rows)
        csv = writer.finish()
        assert not (run / ".lock").exists()
        size = (run / "points.jsonl").stat().st_size
        assert writer.written == plan.pairs == 8128 and size < 8128 * 6000
        assert len(csv.read_text().splitlines()) == 8128 + 1
        # resume: every point is found again, none is left to do
        ledger = lp.Ledger(n, plan.sizes)
        again = links.LinkRunWriter.resume_into(run, ledger)
        again.finish()
        assert ledger.remaining(plan) == 0 and ledger.first_round_left(plan) == plan.rounds
        meta = json.loads((run / "metadata.json").read_text())
        assert [x["launch"] for x in meta["launches"]] == ["test-run", "test-run+1"]
        back = links.read_links(run)
        assert len(back.points) == 8128 and set(back.points["samples_kept"]) == {64}
