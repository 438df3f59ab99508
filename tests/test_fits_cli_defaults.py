"""python -m fits RUN with no --out: RUN/constants.json and RUN/plots/, never replacing
what is there without --overwrite, never touching the run's own files."""
from __future__ import annotations

import hashlib
import shutil

import pytest

from fits import constants, synthetic
from fits.__main__ import main

ENTRIES = [("pingpong", "native"), ("allreduce", "ring")]
SIZES = (0,) + tuple(2 ** k for k in range(0, 20, 3))


def _digest(run):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    rows = synthetic.synthetic_points(synthetic.Truth(), ENTRIES, ranks=(2, 3),
                                      repetitions=5, seed=1, launch="a", sizes=SIZES)
    return synthetic.write_run(tmp_path_factory.mktemp("runs") / "run", rows)


@pytest.fixture()
def run(template, tmp_path):
    return shutil.copytree(template, tmp_path / "run")


def _plots_available():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_default_output_next_to_the_run(run, capsys):
    before = _digest(run)
    assert main([str(run), "--bootstrap", "0", "--quiet"]) == 0
    err = capsys.readouterr().err
    out = run / "constants.json"
    assert constants.load(out)["topologies"]
    assert f"wrote {out.resolve()}" in err
    if _plots_available():
        pngs = list((run / "plots").glob("*.png"))
        assert pngs and f"plot(s) to {run / 'plots'}" in err
    else:
        assert "no plots: matplotlib is not installed" in err
    after = _digest(run)
    assert {k: after[k] for k in before} == before  # the run's files are untouched


def test_refuses_to_replace_without_overwrite(run, capsys):
    assert main([str(run), "--bootstrap", "0", "--quiet", "--no-plots"]) == 0
    first = (run / "constants.json").read_bytes()
    capsys.readouterr()
    assert main([str(run), "--bootstrap", "0", "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "constants file" in err and "exists" in err
    assert "--overwrite replaces it" in err
    assert (run / "constants.json").read_bytes() == first
    assert main([str(run), "--bootstrap", "0", "--quiet", "--no-plots", "--seed", "3",
                 "--overwrite"]) == 0
    assert "replaced" in capsys.readouterr().err
    # --force is the same option (what other tools call it)
    assert main([str(run), "--bootstrap", "0", "--quiet", "--no-plots", "--force"]) == 0


@pytest.mark.skipif(not _plots_available(), reason="matplotlib not installed")
def test_existing_plots_need_overwrite(run, capsys):
    (run / "plots").mkdir()
    (run / "plots" / "old.png").write_bytes(b"x")
    assert main([str(run), "--bootstrap", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--plots" in err and "not empty" in err and "--overwrite" in err
    assert not (run / "constants.json").exists()  # nothing written
    assert main([str(run), "--bootstrap", "0", "--quiet", "--overwrite"]) == 0
    assert len(list((run / "plots").glob("*.png"))) > 1


def test_explicit_out_draws_no_default_plots(run, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main([str(run), "--out", str(out), "--bootstrap", "0", "--quiet"]) == 0
    assert out.exists() and not (run / "plots").exists()
    assert not (tmp_path / "plots").exists()


@pytest.mark.parametrize("name", ["metadata.json", "points.jsonl", "points.csv"])
def test_never_writes_over_an_input(run, capsys, name):
    before = (run / name).read_bytes()
    assert main([str(run), "--out", str(run / name), "--overwrite", "--bootstrap", "0",
                 "--no-plots"]) == 2
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert (run / name).read_bytes() == before


def test_several_runs_need_out(run, template, capsys):
    assert main([str(run), str(template), "--bootstrap", "0"]) == 2
    assert "--out is needed when several RUN_DIRs" in capsys.readouterr().err
    assert main([str(run), "--plots", str(run / "p"), "--no-plots"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_a_command_name_for_a_run_points_to_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no directory called 'predict' here
    assert main(["predict", "laws"]) == 2
    err = capsys.readouterr().err
    assert "python -m fits.predict" in err and "collcost predict" in err
