"""fits.summary and fits.plots on a two-topology synthetic fit."""
import pandas as pd
import pytest

from fits import summary, synthetic
from fits.fit import FitOptions, fit_points

SIZES = (0,) + tuple(2 ** k for k in range(0, 24, 2))


@pytest.fixture(scope="module")
def result():
    truth = synthetic.Truth()
    rows = synthetic.synthetic_points(
        truth, [("pingpong", "native"), ("reduce_local", "native"), ("allreduce", "ring"),
                ("bcast", "native")], ranks=(2, 4), sizes=SIZES, seed=0)
    inter = synthetic.Truth(segments=((0, 2e-5, 1e-9),), gamma=truth.gamma)
    rows += synthetic.synthetic_points(inter, [("pingpong", "native"), ("allreduce", "ring")],
                                       ranks=(2, 3), sizes=SIZES, seed=1, topology="inter")
    return fit_points(pd.DataFrame(rows), FitOptions(bootstrap=20),
                      metadata={"ranks_per_node": 4})


def test_topologies_fitted_separately(result):
    topo = result.constants["topologies"]
    assert set(topo) == {"intra", "inter"}
    assert topo["inter"]["ranks_per_node"] == 1 and topo["intra"]["ranks_per_node"] == 4
    # inter has no reduce_local of its own: the local kernel's γ is borrowed
    assert topo["inter"]["gamma"]["source"] == "reduce_local"
    ring = topo["inter"]["algorithms"]["allreduce"]["ring"]
    assert abs(ring["beta"] / 1e-9 - 1) < 0.02 and ring["breakpoints"] == []
    assert abs(topo["inter"]["p2p"]["alpha"] / 2e-5 - 1) < 0.05


def test_summary_table(result):
    table = summary.summary_table(result.constants)
    assert list(table.columns) == list(summary.COLUMNS)
    # intra: p2p, γ probe, ring, native bcast at p = 2 and 4; inter: p2p, the (borrowed)
    # γ probe, ring
    assert len(table) == 8
    row = table[(table.topology == "inter") & (table.algorithm == "ring")].iloc[0]
    assert row.beta_ps_per_B == pytest.approx(1000, rel=0.02)
    assert row.bw_GBps == pytest.approx(1.0, rel=0.02)
    text = summary.format_summary(result.constants)
    assert "inter: gamma = " in text and "reduce_local" in text


def test_plots(result, tmp_path):
    pytest.importorskip("matplotlib", reason="plots are an optional extra")
    from fits import plots
    paths = plots.plot_all(result.entries, tmp_path)
    names = sorted(p.name for p in paths)
    assert "inter-allreduce-ring.png" in names and "intra-bcast-native.png" in names
    assert all(p.stat().st_size > 10_000 for p in paths)
