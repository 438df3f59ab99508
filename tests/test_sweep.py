"""The sweep end to end under mpiexec: quick sweeps at 1-4 ranks, metadata, resume."""
import re

import pytest

from collectives.costs import AUXILIARY, COLLECTIVES, size_convention
from collectives.results import METADATA_KEYS, point_key, read_run
from mpirun import ROOT, library, mpirun

#: Tiny, uneven (6 float32 elements: blocks differ at 4 ranks) and multi-MiB sizes.
FAST = ["--sizes", "8,24,3M", "--time-budget", "0.01", "--min-reps", "3",
        "--max-reps", "50"]


def sweep(n, args, timeout=90, env=None):
    return mpirun(n, ["-m", "collectives.sweep"] + [str(a) for a in args],
                  timeout=timeout, env=env)


def expected_points(n, sizes=3, collectives=COLLECTIVES + AUXILIARY):
    """Points of a default --topology auto sweep on one host with n ranks."""
    ranks = [1] if n == 1 else sorted({2 ** k for k in range(1, n.bit_length())} | {n})
    per_group = len([c for c in collectives if c != "pingpong"]) * sizes
    return len(ranks) * per_group + (sizes if n >= 2 and "pingpong" in collectives else 0)


ENV = {"UCX_COLLCOST_TEST": "1", "NOT_AN_MPI_VARIABLE": "x"}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_quick_sweep(tmp_path, n):
    out = tmp_path / "run"
    topologies = ["intra", "world"] if n == 2 else ["intra"]  # auto: intra on one host
    extra = ["--topology", ",".join(topologies)] if n == 2 else []
    proc = sweep(n, FAST + extra + ["--out", out], timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = read_run(out)
    check_metadata(run.metadata, n, out)
    check_plan_order(run, n)
    pts = run.points
    assert len(pts) == expected_points(n) * len(topologies)
    assert set(pts["topology"]) == set(topologies)
    assert set(pts["collective"]) == set(COLLECTIVES + AUXILIARY) - (
        {"pingpong"} if n == 1 else set())
    assert pts["correct"].all()
    assert set(pts["bytes"]) == {8, 24, 3 << 20}
    assert (pts["nodes"] == 1).all()
    assert set(pts.loc[pts["collective"] == "pingpong", "ranks"]) <= {2}
    assert (pts["count"] == pts["bytes"] // 4).all()
    assert (pts["median_s"] > 0).all()
    # the median's CI is undefined (null) below 6 repetitions, and such points are unstable
    has_ci = pts["ci_low_s"].notna()
    assert (has_ci | ((pts["repetitions"] < 6) & pts["unstable"])).all()
    assert (pts["ci_low_s"][has_ci] <= pts["median_s"][has_ci]).all()
    assert (pts["median_s"][has_ci] <= pts["ci_high_s"][has_ci]).all()
    for _, row in pts.iterrows():
        # (a point may stop below --min-reps at 10x its budget: heavily loaded hosts)
        assert len(row["samples"]["max"]) == row["repetitions"] >= 1
        assert min(row["samples"]["max"]) == row["min_s"]
    assert len({point_key(r) for r in pts.to_dict("records")}) == len(pts)
    # rank 0 alone prints; the summary states its units
    assert proc.stdout.count("units:") == 1 and "microseconds" in proc.stdout
    assert f"wrote {len(pts)} point(s)" in proc.stdout
    assert (out / "points.csv").exists()


def _all_keys(obj, acc=None):
    acc = set() if acc is None else acc
    if isinstance(obj, dict):
        for k, v in obj.items():
            acc.add(k)
            _all_keys(v, acc)
    elif isinstance(obj, list):
        for v in obj:
            _all_keys(v, acc)
    return acc


def formats_metadata_names():
    """Backticked names of the `metadata.json` paragraph of docs/formats.md."""
    text = (ROOT / "docs" / "formats.md").read_text()
    start = text.index("`metadata.json` keys:")
    para = text[start:text.index("\n\n", start)]
    names = set(re.findall(r"`([a-z_0-9]+)`", para))
    return names - {"metadata"}


def check_metadata(meta, n, out):
    """Metadata completeness against results.METADATA_KEYS and docs/formats.md."""
    assert set(METADATA_KEYS) <= set(meta)
    missing = formats_metadata_names() - _all_keys(meta) - {"repetitions", "merged_from"}
    assert not missing, f"formats.md names missing from metadata: {missing}"
    assert meta["mpi"]["library"] == library().name and meta["mpi"]["version"]
    assert "\x00" not in meta["mpi"]["version"]  # Open MPI's ends in a NUL byte
    assert meta["world_size"] == n and meta["nodes"] == 1 and meta["ranks_per_node"] == n
    assert list(meta["hosts"].values()) == [n]
    assert meta["env"]["UCX_COLLCOST_TEST"] == "1"
    for k, v in library().env.items():  # set by tests/mpirun.py
        assert meta["env"][k] == v
    assert "NOT_AN_MPI_VARIABLE" not in meta["env"]
    # launcher bookkeeping (every launcher sets some) is recorded apart, never in env
    assert meta["launcher_env"] and not set(meta["launcher_env"]) & set(meta["env"])
    assert not [k for k in meta["env"] if k.startswith(("PMI", "HYDRA_", "I_MPI_HYDRA_"))
                or k == "OMPI_MCA_initial_wdir"]
    assert meta["timer"]["resolution_s"] > 0 and meta["timer"]["overhead_s"] > 0
    assert meta["harness_overhead_s"]["barrier"] > 0
    assert meta["options"]["seed"] == meta["seed"] == meta["launches"][0]["seed"]
    assert meta["options"]["sizes"] == [8, 24, 3 << 20]
    assert meta["options"]["dtype"] == "float32" and meta["options"]["time_budget"] == 0.01
    for c in COLLECTIVES + AUXILIARY:
        assert meta["size_convention"][c] == size_convention(c)
    assert meta["gpu"] is None
    assert meta["command_line"][-1] == str(out)
    commit = meta["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", meta["date_utc"])


def check_plan_order(run, n):
    """Points were measured in the plan's order: rebuilt from the stored seed."""
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    raw = sw._stored_raw(run.metadata)
    raw["resume"] = str(run.path)
    layout = layout_from_hosts(["h"] * n)
    plan = sw.plan_points(sw.validate(raw, layout), layout)
    planned = [(topo, p, c, alg, b) for (topo, p, _), pts in plan for c, alg, b in pts]
    got = list(zip(run.points["topology"], run.points["ranks"], run.points["collective"],
                   run.points["algorithm"], run.points["bytes"]))
    assert got == planned


def test_size_order_is_random_and_reproducible():
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    layout = layout_from_hosts(["h"] * 2)

    def order(seed):
        opts = sw.validate({"collectives": "reduce_local", "sizes": "8:1K", "seed": seed,
                            "resume": "x"}, layout)
        [(_, points)] = sw.plan_points(opts, layout)
        return [b for _, _, b in points]

    assert order(11) == order(11) and sorted(order(11)) == [8 << k for k in range(8)]
    assert order(11) != order(12)
    assert order(11) != sorted(order(11))


def test_help_explains_every_option():
    from collectives.sweep import build_parser
    text = build_parser().format_help()
    for opt in ("--collectives", "--algorithms", "--sizes", "--ranks", "--topology",
                "--dtype", "--sync", "--target-ci", "--time-budget", "--out", "--quick",
                "--resume", "--max-memory", "--point-timeout", "--seed",
                "collectives.merge"):
        assert opt in text, opt
    for c in COLLECTIVES + AUXILIARY:
        assert size_convention(c)[:30] in " ".join(text.split())
    for action in build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help"
