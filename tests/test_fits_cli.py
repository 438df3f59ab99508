"""python -m fits end to end on synthetic run directories, and every bad input."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fits import constants, synthetic
from fits.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = [("pingpong", "native"), ("reduce_local", "native"), ("allreduce", "ring"),
           ("bcast", "native"), ("reduce_scatter", "ring"), ("allgather", "ring")]
SIZES = (0,) + tuple(2 ** k for k in range(0, 24, 2))


def _rows(seed=0, launch="launch-a", **kw):
    kw.setdefault("sizes", SIZES)
    return synthetic.synthetic_points(synthetic.Truth(), ENTRIES, ranks=(2, 3, 4),
                                      repetitions=9, seed=seed, launch=launch, **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return synthetic.write_run(tmp_path_factory.mktemp("runs") / "good", _rows())


def test_fit_writes_valid_constants_plots_and_summary(run_dir, tmp_path, capsys):
    out = tmp_path / "constants.json"
    rc = main([str(run_dir), "--out", str(out), "--plots", str(tmp_path / "plots"),
               "--bootstrap", "30"])
    assert rc == 0
    c = constants.load(out)
    topo = c["topologies"]["intra"]
    assert topo["gamma"]["source"] == "reduce_local"
    assert topo["p2p"]["breakpoints"] == [65536]
    assert c["provenance"]["runs"][0]["launches"] == 1
    ring = topo["algorithms"]["allreduce"]["ring"]
    assert ring["gamma_identifiable"] is False and ring["gamma_source"] == "reduce_local"
    assert ring["beta_ci"][0] <= ring["beta"] <= ring["beta_ci"][1]
    assert topo["algorithms"]["bcast"]["native"]["model"] == "hockney-per-p"
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "intra-allreduce-ring.png" in pngs and len(pngs) == 6
    assert all((tmp_path / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    text = capsys.readouterr()
    assert "allreduce" in text.out and "gamma = " in text.out
    assert "[fits]" in text.err  # progress on stderr


def test_robust_loss_and_fixed_segments(run_dir, tmp_path):
    out = tmp_path / "c.json"
    assert main([str(run_dir), "--out", str(out), "--loss", "huber", "--segments", "1",
                 "--bootstrap", "0", "--quiet"]) == 0
    c = constants.load(out)
    assert c["provenance"]["options"]["loss"] == "huber"
    ring = c["topologies"]["intra"]["algorithms"]["allreduce"]["ring"]
    assert ring["breakpoints"] == [] and ring["beta_ci"] is None


def test_two_launches_are_pooled(tmp_path):
    a = synthetic.write_run(tmp_path / "a", _rows(seed=1, launch="la"))
    b = synthetic.write_run(tmp_path / "b", _rows(seed=2, launch="lb"))
    out = tmp_path / "c.json"
    assert main([str(a), str(b), "--out", str(out), "--bootstrap", "20", "--quiet"]) == 0
    c = constants.load(out)
    assert [r["path"] for r in c["provenance"]["runs"]] == [str(a), str(b)]
    assert c["topologies"]["intra"]["algorithms"]["allreduce"]["ring"]["points"] == \
        2 * 3 * len(SIZES)


def test_merged_run_directory_keeps_launches(tmp_path):
    from collectives.results import merge_runs
    a = synthetic.write_run(tmp_path / "a", _rows(seed=1, launch="la"))
    b = synthetic.write_run(tmp_path / "b", _rows(seed=2, launch="lb"))
    merged = merge_runs([a, b], tmp_path / "merged").path
    out = tmp_path / "c.json"
    assert main([str(merged), "--out", str(out), "--bootstrap", "20", "--quiet"]) == 0
    assert constants.load(out)["provenance"]["runs"][0]["launches"] == 2


def _expect_usage_error(capsys, args, needle, out):
    rc = main([str(a) for a in args] + ["--out", str(out), "--bootstrap", "5"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert needle in err
    assert not out.exists()


def test_disagreeing_metadata_refused(tmp_path, capsys):
    a = synthetic.write_run(tmp_path / "a", _rows(launch="la"))
    b = synthetic.write_run(tmp_path / "b", _rows(launch="lb"), metadata={
        "mpi": {"library": "synthetic", "version": "synthetic 1", "standard": "4.0"}})
    _expect_usage_error(capsys, [a, b], "MPI library version differs", tmp_path / "c.json")


def test_same_launch_twice_refused(run_dir, tmp_path, capsys):
    _expect_usage_error(capsys, [run_dir, run_dir], "appears in both", tmp_path / "c.json")


def test_empty_run(tmp_path, capsys):
    empty = synthetic.write_run(tmp_path / "empty", [])
    _expect_usage_error(capsys, [empty], "empty run", tmp_path / "c.json")


def test_single_size(tmp_path, capsys):
    run = synthetic.write_run(tmp_path / "one", _rows(sizes=(4096,)))
    _expect_usage_error(capsys, [run], "only one size", tmp_path / "c.json")


def test_nan_median(tmp_path, capsys):
    rows = _rows()
    rows[7]["median_s"] = math.nan
    run = synthetic.write_run(tmp_path / "nan", rows)
    _expect_usage_error(capsys, [run], "NaN", tmp_path / "c.json")


def test_unknown_run_schema_version(run_dir, tmp_path, capsys):
    import shutil
    copy = tmp_path / "v99"
    shutil.copytree(run_dir, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["schema_version"] = 99
    (copy / "metadata.json").write_text(json.dumps(meta))
    _expect_usage_error(capsys, [copy], "unknown schema_version 99", tmp_path / "c.json")


def test_missing_run_and_bad_options(run_dir, tmp_path, capsys):
    _expect_usage_error(capsys, [tmp_path / "nope"], "not a run directory",
                        tmp_path / "c.json")
    rc = main([str(run_dir), "--out", str(tmp_path / "no" / "c.json")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main([str(run_dir), "--out", str(tmp_path / "c.json"), "--bootstrap", "-1"])
    assert rc == 2 and "--bootstrap" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(run_dir), "--out", str(tmp_path / "c.json"), "--loss", "l0"])
    assert exc.value.code == 2
    rc = main([str(run_dir), "--out", str(tmp_path / "c.json"), "--topology", "inter"])
    assert rc == 2 and "inter not in the points" in capsys.readouterr().err


def test_module_entry_point(run_dir, tmp_path):
    res = subprocess.run([sys.executable, "-m", "fits", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for option in ("--out", "--plots", "--loss", "--bootstrap", "--segments",
                   "--topology", "--seed", "--confidence"):
        assert option in res.stdout
    res = subprocess.run([sys.executable, "-m", "fits", str(tmp_path / "none"), "--out",
                          str(tmp_path / "c.json")], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "error:" in res.stderr
