"""Hierarchical all-reduce (fits.predict.hierarchy) and the training-step model (fits.predict.step).

Expected values are composed by hand from collectives.costs.predict, the registry.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import predict_fixtures as fx
from collectives import costs
from fits.predict import hierarchy, step

N_BYTES = [0, 8, 4096, 65536, 3 * 2 ** 20, 2 ** 24]


def pred(collective, algorithm, p, n, alpha, beta, gamma=0.0):
    return float(costs.predict(collective, algorithm, p, n, alpha, beta, gamma))


class TestLevelTimes:
    def test_fitted_entry_is_used(self):
        lvl = fx.topology(ranks_per_node=4, nodes=1, algorithms={
            "allreduce": {"ring": fx.registry_entry(2e-6, 3e-10, 1e-11)}})
        for n in N_BYTES:
            for p in (1, 2, 3, 4, 7):
                got = float(hierarchy.collective_time(lvl, "allreduce", "ring", p, n))
                want = 0.0 if p == 1 else pred("allreduce", "ring", p, n, 2e-6, 3e-10, 1e-11)
                assert got == pytest.approx(want, rel=1e-14, abs=1e-300)

    def test_null_gamma_counts_as_absorbed(self):
        lvl = fx.topology(ranks_per_node=4, nodes=1, gamma=5e-9, algorithms={
            "allreduce": {"ring": fx.registry_entry(2e-6, 3e-10, None)}})
        assert float(hierarchy.collective_time(lvl, "allreduce", "ring", 4, 1e6)) == \
            pytest.approx(pred("allreduce", "ring", 4, 1e6, 2e-6, 3e-10, 0.0))

    def test_p2p_fallback_uses_registry_formula_and_level_gamma(self):
        lvl = fx.topology(ranks_per_node=8, nodes=1, alpha=1e-6, beta=1e-10, gamma=3e-11)
        for alg in costs.algorithms("allreduce", native=False):
            assert float(hierarchy.collective_time(lvl, "allreduce", alg, 6, 1e6)) == \
                pytest.approx(pred("allreduce", alg, 6, 1e6, 1e-6, 1e-10, 3e-11))

    def test_segment_covering_the_size(self):
        segs = [(0, 1e-6, 4e-10), (65536, 9e-6, 1e-10)]
        lvl = fx.topology(ranks_per_node=4, nodes=1, algorithms={
            "allreduce": {"ring": fx.registry_entry(segments=segs, gamma=0.0)}})
        for n, (a, b) in ((100, segs[0][1:]), (65535, segs[0][1:]), (65536, segs[1][1:]),
                          (2 ** 24, segs[1][1:])):
            assert float(hierarchy.collective_time(lvl, "allreduce", "ring", 4, n)) == \
                pytest.approx(pred("allreduce", "ring", 4, n, a, b))
        # vectorized over sizes at once
        got = hierarchy.collective_time(lvl, "allreduce", "ring", 4, [100, 2 ** 24])
        assert got[1] == pytest.approx(pred("allreduce", "ring", 4, 2 ** 24, 9e-6, 1e-10))

    def test_native_per_rank_count(self):
        lvl = fx.topology(ranks_per_node=4, nodes=1, algorithms={
            "allreduce": {"native": fx.native_entry({2: (1e-6, 1e-10), 4: (3e-6, 2e-10)})}})
        assert float(hierarchy.collective_time(lvl, "allreduce", "native", 4, 1000)) == \
            pytest.approx(3e-6 + 1000 * 2e-10)
        with pytest.raises(ValueError, match="not at p=3"):
            hierarchy.collective_time(lvl, "allreduce", "native", 3, 1000)
        assert math.isnan(float(hierarchy.collective_time(
            lvl, "allreduce", "native", 3, 1000, strict=False)))

    def test_only_native_fitted_falls_back_to_registry_elsewhere(self):
        lvl = fx.topology(ranks_per_node=8, nodes=1, alpha=1e-6, beta=1e-10, gamma=0.0,
                          algorithms={"allreduce": {"native": fx.native_entry(
                              {2: (1e-9, 1e-13)})}})
        t, names = hierarchy.fastest(lvl, "allreduce", [2, 6], 1000)
        assert names[0] == "native" and t[0] == pytest.approx(1e-9 + 1000 * 1e-13)
        assert names[1] != "native"
        assert t[1] == pytest.approx(min(pred("allreduce", a, 6, 1000, 1e-6, 1e-10)
                                         for a in costs.algorithms("allreduce", native=False)))

    def test_fastest_among_fitted(self):
        lvl = fx.topology(ranks_per_node=8, nodes=1, algorithms={"allreduce": {
            "ring": fx.registry_entry(5e-6, 1e-10, 0.0),
            "recursive_doubling": fx.registry_entry(1e-6, 1e-10, 0.0)}})
        t, names = hierarchy.fastest(lvl, "allreduce", 8, [8, 2 ** 24])
        assert names.tolist() == ["recursive_doubling", "ring"]
        assert t[0] == pytest.approx(pred("allreduce", "recursive_doubling", 8, 8, 1e-6, 1e-10))
        assert t[1] == pytest.approx(pred("allreduce", "ring", 8, 2 ** 24, 5e-6, 1e-10))

    def test_fastest_without_fits_considers_every_registry_algorithm(self):
        lvl = fx.topology(ranks_per_node=8, nodes=1, alpha=1e-6, beta=1e-10, gamma=1e-11)
        for n in (8, 2 ** 24):
            t, _ = hierarchy.fastest(lvl, "allreduce", 6, n)
            want = min(pred("allreduce", a, 6, n, 1e-6, 1e-10, 1e-11)
                       for a in costs.algorithms("allreduce", native=False))
            assert float(t) == pytest.approx(want)

    def test_errors(self):
        lvl = fx.topology(ranks_per_node=4, nodes=1)
        with pytest.raises(ValueError, match="unknown algorithm 'tree'"):
            hierarchy.collective_time(lvl, "allreduce", "tree", 4, 10)
        with pytest.raises(ValueError, match="native"):
            hierarchy.collective_time(lvl, "allreduce", "native", 4, 10)
        with pytest.raises(ValueError, match="nbytes"):
            hierarchy.collective_time(lvl, "allreduce", "ring", 4, -1)

    def test_nothing_to_predict_with_is_a_clear_error(self):
        # only an all-reduce fitted, no p2p: the two-level scheme's intra-node
        # reduce-scatter has no constants at all
        lvl = {"algorithms": {"allreduce": {"ring": fx.registry_entry(1e-6, 1e-10)}},
               "gamma": {"value": None}}
        with pytest.raises(ValueError, match="no fitted reduce_scatter.*no point-to-point"):
            hierarchy.fastest(lvl, "reduce_scatter", 4, 1e6)
        with pytest.raises(ValueError, match="no fitted reduce_scatter"):
            hierarchy.predict_allreduce({"topologies": {"intra": lvl, "inter": lvl}},
                                        2, 4, 1e6)


class TestHierarchical:
    c = fx.two_level(q=4, nodes=8)
    intra = (5e-7, 5e-11, 2e-11)
    inter = (8e-6, 4e-10, 2e-11)

    def test_one_node_is_flat_intra(self):
        for n in N_BYTES:
            got = float(hierarchy.predict_allreduce(self.c, 1, 4, n, "ring"))
            assert got == pytest.approx(pred("allreduce", "ring", 4, n, *self.intra))

    def test_one_rank_per_node_is_flat_inter(self):
        for n in N_BYTES:
            got = float(hierarchy.predict_allreduce(self.c, 6, 1, n, "ring"))
            assert got == pytest.approx(pred("allreduce", "ring", 6, n, *self.inter))

    @pytest.mark.parametrize("N,q", [(2, 2), (3, 4), (8, 4), (5, 3)])
    def test_two_level_composition(self, N, q):
        a_s, b_s, g_s = self.intra
        a_n, b_n, g_n = self.inter
        for n in N_BYTES:
            want = (pred("reduce_scatter", "ring", q, n, a_s, b_s, g_s)
                    + pred("allreduce", "ring", N, n / q, a_n, b_n * q, g_n)  # NIC shared by q
                    + pred("allgather", "ring", q, n, a_s, b_s, g_s))
            got = float(hierarchy.predict_allreduce(self.c, N, q, n, "ring"))
            assert got == pytest.approx(want, rel=1e-13)

    def test_breakdown_and_mapping(self):
        b = hierarchy.allreduce_breakdown(self.c, 4, 4, 2 ** 20, {
            "reduce_scatter": "pairwise", "allreduce": "rabenseifner", "allgather": "ring"})
        assert b["intra_reduce_scatter_algorithm"] == "pairwise"
        assert b["inter_allreduce_algorithm"] == "rabenseifner"
        assert b["intra_allgather_algorithm"] == "ring"
        assert b["intra_allreduce"] == 0.0
        assert b["total"] == pytest.approx(b["intra_reduce_scatter"] + b["inter_allreduce"]
                                           + b["intra_allgather"])
        assert b["inter_allreduce"] == pytest.approx(
            pred("allreduce", "rabenseifner", 4, 2 ** 18, 8e-6, 4 * 4e-10, 2e-11))

    def test_name_applies_where_registered(self):
        b = hierarchy.allreduce_breakdown(self.c, 2, 4, 2 ** 20, "recursive_doubling")
        assert b["inter_allreduce_algorithm"] == "recursive_doubling"
        assert b["intra_allgather_algorithm"] == "recursive_doubling"
        assert b["intra_reduce_scatter_algorithm"] in costs.algorithms("reduce_scatter")

    def test_vectorized_over_counts(self):
        N = np.array([1, 2, 4])[:, None]
        q = np.array([1, 2, 4])[None, :]
        got = hierarchy.predict_allreduce(self.c, N, q, 1e6, "ring")
        assert got.shape == (3, 3)
        assert got[0, 0] == 0.0
        for i in range(3):
            for j in range(3):
                assert got[i, j] == pytest.approx(float(hierarchy.predict_allreduce(
                    self.c, int(N[i, 0]), int(q[0, j]), 1e6, "ring")))

    def test_default_is_fastest_per_stage(self):
        t = float(hierarchy.predict_allreduce(self.c, 4, 4, 2 ** 20))
        every = [float(hierarchy.predict_allreduce(self.c, 4, 4, 2 ** 20, {
            "reduce_scatter": rs, "allreduce": ar, "allgather": ag}))
            for rs in costs.algorithms("reduce_scatter", native=False)
            for ar in costs.algorithms("allreduce", native=False)
            for ag in costs.algorithms("allgather", native=False)]
        assert t == pytest.approx(min(every))

    def test_errors(self):
        only_intra = fx.constants(intra=fx.topology(ranks_per_node=4, nodes=1))
        with pytest.raises(ValueError, match="no 'inter' topology"):
            hierarchy.predict_allreduce(only_intra, 2, 4, 100)
        with pytest.raises(ValueError, match="nodes must be whole numbers"):
            hierarchy.predict_allreduce(self.c, 0, 4, 100)
        with pytest.raises(ValueError, match="unknown allreduce algorithm"):
            hierarchy.predict_allreduce(self.c, 2, 4, 100, "tree")
        with pytest.raises(ValueError, match="nbytes"):
            hierarchy.predict_allreduce(self.c, 2, 4, -5)


def test_constants_fitted_from_synthetic_runs_reproduce_the_truth():
    """End to end with the fitter: known constants -> synthetic points -> fits.fit ->
    constants dict -> hierarchical prediction == the truth composed by hand."""
    import pandas as pd
    from fits import fit, synthetic
    from fits.constants import validate

    intra = synthetic.Truth(segments=((0, 1e-6, 2e-10), (65536, 4e-6, 1e-10)), gamma=3e-11)
    inter = synthetic.Truth(segments=((0, 8e-6, 8e-10), (65536, 2e-5, 5e-10)), gamma=3e-11)
    entries = [("pingpong", "native"), ("reduce_local", "native"), ("allreduce", "ring"),
               ("reduce_scatter", "ring"), ("allgather", "ring")]
    rows = synthetic.synthetic_points(intra, entries, ranks=(2, 3, 4), noise=0.0,
                                      repetitions=3, topology="intra")
    rows += synthetic.synthetic_points(inter, entries[:3], ranks=(2, 3, 4, 5), noise=0.0,
                                       repetitions=3, topology="inter")
    c = fit.fit_points(pd.DataFrame(rows), fit.FitOptions(bootstrap=0)).constants
    validate(c)
    q, N = 4, 3
    for n in (8, 1024, 65536, 2 ** 20, 2 ** 24):
        a, b = inter.constants("allreduce", "ring", N, n / q)
        want = (intra.time("reduce_scatter", "ring", q, n)
                + pred("allreduce", "ring", N, n / q, float(a), float(b) * q, inter.gamma)
                + intra.time("allgather", "ring", q, n))
        assert float(hierarchy.predict_allreduce(c, N, q, n, "ring")) == \
            pytest.approx(float(want), rel=1e-9)


class TestStepTable:
    alpha, beta, gamma = 1e-5, 1e-9, 1e-10
    G = 4e7

    def comm(self, K, alg="ring"):
        c = step.explicit_constants(self.alpha, self.beta, self.gamma)
        t, labels = step.allreduce_times(c, K, self.G, ranks_per_node=max(K), algorithm=alg)
        return t, labels

    def test_strong_by_hand(self):
        K = [1, 2, 4, 8]
        comm, labels = self.comm(K)
        t = step.step_table(comm, K, compute_s=2.0, serial_s=0.1, overlap=0.25)
        for k, row in zip(K, t.itertuples()):
            c = 0.0 if k == 1 else pred("allreduce", "ring", k, self.G, self.alpha,
                                         self.beta, self.gamma)
            comp = 2.0 / k
            exposed = c - min(0.25 * c, comp)
            T = 0.1 + comp + exposed
            assert row.comm_s == pytest.approx(c)
            assert row.step_s == pytest.approx(T)
            assert row.speedup == pytest.approx(2.1 / T)
            assert row.efficiency == pytest.approx(2.1 / T / k)
            assert row.serial_fraction == pytest.approx(c / (comp + c))
            assert row.cost_per_step == pytest.approx(k * T)  # worker-seconds
        assert labels[0] == "none" and labels[1] == "intra_allreduce=ring@headline"

    def test_weak_by_hand(self):
        K = [1, 4, 16]
        comm, _ = self.comm(K)
        t = step.step_table(comm, K, compute_s=1.0, mode="weak", rate_per_worker_hour=3.6)
        for k, row in zip(K, t.itertuples()):
            T = 1.0 + row.comm_s
            assert row.compute_s == 1.0
            assert row.efficiency == pytest.approx(1.0 / T)      # T(1)/T(K)
            assert row.speedup == pytest.approx(k / T)
            assert row.cost_per_step == pytest.approx(3.6 * k * T / 3600)
            assert row.cost_per_work == pytest.approx(3.6 * T / 3600)

    def test_overlap_is_bounded_by_compute(self):
        t = step.step_table([0.0, 10.0], [1, 2], compute_s=1.0, overlap=1.0)
        assert t["exposed_comm_s"].tolist() == [0.0, 9.5]

    def test_hierarchical_comm_from_constants(self):
        c = fx.two_level(q=4, nodes=8)
        comm, labels = step.allreduce_times(c, [2, 4, 8, 12, 32], 1e6, ranks_per_node=4,
                                            algorithm="ring")
        assert comm[0] == pytest.approx(float(hierarchy.predict_allreduce(c, 1, 2, 1e6, "ring")))
        assert comm[2] == pytest.approx(float(hierarchy.predict_allreduce(c, 2, 4, 1e6, "ring")))
        # 12 workers on 3 full nodes; 32 on 8
        assert comm[3] == pytest.approx(float(hierarchy.predict_allreduce(c, 3, 4, 1e6, "ring")))
        assert comm[4] == pytest.approx(float(hierarchy.predict_allreduce(c, 8, 4, 1e6, "ring")))
        assert "inter_allreduce=ring" in labels[2]

    @settings(max_examples=40, deadline=None)
    @given(st.floats(1e-3, 10), st.floats(0, 1), st.floats(0, 1),
           st.lists(st.floats(0, 5), min_size=5, max_size=5), st.sampled_from(step.MODES))
    def test_efficiency_at_most_one_and_unit_at_one_worker(self, tc, ts, ov, comm, mode):
        K = [1, 2, 3, 8, 64]
        t = step.step_table(comm, K, compute_s=tc, serial_s=ts, overlap=ov, mode=mode)
        assert t["speedup"].iloc[0] == pytest.approx(1.0)
        assert np.all(t["efficiency"] <= 1 + 1e-12)
        assert np.all((t["serial_fraction"] >= 0) & (t["serial_fraction"] <= 1))

    def test_invalid(self):
        with pytest.raises(ValueError, match="whole numbers >= 1"):
            step.step_table([0.0], [0], compute_s=1.0)
        with pytest.raises(ValueError, match="compute time"):
            step.step_table([0.0], [1], compute_s=-1.0)
        with pytest.raises(ValueError, match="overlap"):
            step.step_table([0.0], [1], compute_s=1.0, overlap=2)
        with pytest.raises(ValueError, match="mode"):
            step.step_table([0.0], [1], compute_s=1.0, mode="diagonal")
        with pytest.raises(ValueError, match="alpha"):
            step.explicit_constants(-1.0, 1e-9)
        with pytest.raises(ValueError, match="exactly one"):
            step.gradient_bytes(grad_bytes=10, params=3)
        assert step.gradient_bytes(params=1000, dtype_size=2) == 2000.0


class TestRecommend:
    def table(self, rate=None):
        K = [1, 2, 4, 8, 16, 32]
        comm = [0.0, 0.01, 0.03, 0.05, 0.09, 0.2]
        return step.step_table(comm, K, compute_s=1.0, rate_per_worker_hour=rate)

    def test_brute_force(self):
        t = self.table(rate=3.6)
        rec = step.recommend(t, threshold=0.7, deadline_s=120.0, steps=200)
        job_s = 200 * t["step_s"].to_numpy()
        job_cost = 3.6 * t["workers"].to_numpy() * job_s / 3600
        assert rec["fastest_workers"] == int(t["workers"].to_numpy()[np.argmin(job_s)])
        ok = t["efficiency"] >= 0.7
        assert rec["largest_efficient_workers"] == int(t["workers"][ok].max())
        meets = job_s <= 120.0
        assert 1 < meets.sum() < len(meets)
        K = t["workers"].to_numpy()
        assert rec["cheapest_workers"] == int(K[meets][np.argmin(job_cost[meets])])
        assert rec["cheapest_job_cost"] == pytest.approx(job_cost[meets].min())

    def test_no_deadline_and_impossible_deadline(self):
        t = self.table()
        assert step.recommend(t)["cheapest_workers"] == 1
        assert step.recommend(t, deadline_s=1e-6)["cheapest_workers"] is None

    def test_weak_job_takes_fewer_steps(self):
        t = step.step_table([0.0, 0.1], [1, 4], compute_s=1.0, mode="weak")
        rec = step.recommend(t, steps=100, deadline_s=30)
        assert rec["fastest_job_s"] == pytest.approx(100 / 4 * 1.1)
        assert rec["cheapest_workers"] == 4  # K=1 needs 100 s > 30 s


# ---------------------------------------------------------------- pricing

def joint_entry(alpha, beta, gamma=0.0, step_s=5e-6, call_s=2e-6):
    """A one-regime joint-constants entry (fits.joint), network α, β, γ."""
    def c(v):
        return {"value": v, "ci": [v, v], "status": "identified"}
    return {"regimes": [{"min_bytes": 0, "max_bytes": None, "alpha": c(alpha),
                         "beta": c(beta)}],
            "gamma_segments": [{"min_bytes": 0, "max_bytes": None, "gamma": c(gamma)}],
            "software": {"python": {"step_s": c(step_s), "call_s": c(call_s)}}}


class TestPricing:
    """The step model prices the library's collective / the network, not our Python."""

    def consts(self, *, joint=False, native=None):
        c = fx.two_level(q=4, nodes=8, intra_algorithms={
            "allreduce": {"ring": fx.registry_entry(9e-5, 9e-9, None)}})  # slow Python
        fx.add_headline(c, "intra", latency=5e-7, bandwidth=2e10)
        fx.add_headline(c, "inter", latency=8e-6, bandwidth=2.5e9)
        if joint:
            c["topologies"]["intra"]["joint"] = joint_entry(6e-7, 4e-11, 1e-11)
            c["topologies"]["inter"]["joint"] = joint_entry(9e-6, 3.5e-10, 1e-11)
        if native:
            c["topologies"]["inter"]["algorithms"]["allreduce"] = {
                "native": {"identified": native}}
        return c

    def test_default_is_the_network_not_our_python(self):
        c = self.consts()
        n = 2 ** 22
        t, labels = step.allreduce_times(c, [4], n, ranks_per_node=4, pricing="library")
        want = min(pred("allreduce", a, 4, n, 5e-7, 1 / 2e10, 2e-11)
                   for a in costs.algorithms("allreduce", native=False))
        assert t[0] == pytest.approx(want)
        assert labels[0].endswith("@headline")
        t, labels = step.allreduce_times(c, [4], n, ranks_per_node=4, pricing="fitted",
                                         algorithm="ring")
        assert t[0] == pytest.approx(pred("allreduce", "ring", 4, n, 9e-5, 9e-9))
        assert labels[0] == "intra_allreduce=ring@fitted"

    def test_joint_constants_without_software_cost(self):
        from fits import joint as joint_fit
        c = self.consts(joint=True)
        n = 2 ** 20
        t, labels = step.allreduce_times(c, [2, 4], n, ranks_per_node=4,
                                         algorithm="ring", pricing="topology")
        for i, p in enumerate((2, 4)):
            want = joint_fit.predict(c["topologies"]["intra"]["joint"], "allreduce", "ring",
                                     p, n, implementation=None)
            assert t[i] == pytest.approx(float(want))
            assert labels[i] == "intra_allreduce=ring@joint"

    def test_native_model_extrapolates_in_p(self):
        from fits import native
        model = {"segments": [{"algorithm": "recursive_doubling", "call_s": 3e-6}],
                 "breakpoints": []}
        c = self.consts(joint=True, native=model)
        n = 2 ** 20
        # 64 workers = 16 nodes of 4: the inter stage is the library's all-reduce at
        # N = 16 (never measured), n/q bytes, β × q (the NIC is shared by q ranks)
        b = hierarchy.allreduce_breakdown(c, 16, 4, n, pricing="library")
        assert b["inter_allreduce_algorithm"] == "recursive_doubling@native"
        j = dict(c["topologies"]["inter"]["joint"])
        j = {**j, "regimes": [{**r, "beta": {**r["beta"], "value": r["beta"]["value"] * 4}}
                              for r in j["regimes"]]}
        want = native.predict(model, j, "allreduce", 16, n / 4)
        assert float(b["inter_allreduce"]) == pytest.approx(float(want))
        assert str(b["intra_reduce_scatter_algorithm"]).endswith("@joint")
        # an explicit algorithm is priced with the topology constants, not the library's
        b = hierarchy.allreduce_breakdown(c, 16, 4, n, "ring", pricing="library")
        assert b["inter_allreduce_algorithm"] == "ring@joint"

    def test_unknown_pricing(self):
        with pytest.raises(ValueError, match="pricing must be one of"):
            hierarchy.allreduce_breakdown(self.consts(), 2, 4, 100, pricing="guess")
