"""Hostile inputs against every command: one test per class of issue 13.

1. no command damages its inputs; 2. one writer per run, readers catch duplicates;
3. (deadlines: tests/test_faults.py); 4. every count bounded before allocation;
5. every bad input exit 2 naming the option, file, line or field, nothing written.
In-process where the command allows it; MPI launches under a timeout (tests/mpirun.py).
"""
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from collectives.results import RunFormatError, point_key, read_run
from fits.synthetic import Truth, synthetic_points, write_run
from mpirun import mpirun

TINY = ["--time-budget", "0.005", "--min-reps", "2", "--max-reps", "20"]


def snapshot(path: Path) -> dict:
    """Every file under ``path`` with its bytes (to show nothing changed)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.fixture
def runs(tmp_path):
    """Two synthetic runs of the same layout (different launches)."""
    pts = lambda launch, seed: synthetic_points(  # noqa: E731
        Truth(), [("allreduce", "ring")], ranks=(2, 4), sizes=(8, 1024, 65536, 1 << 20),
        launch=launch, seed=seed)
    a = write_run(tmp_path / "a", pts("la", 0))
    b = write_run(tmp_path / "b", pts("lb", 1))
    return Path(a), Path(b)


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    """A real 2-rank sweep run (for --resume cases)."""
    out = tmp_path_factory.mktemp("sweep") / "run"
    proc = mpirun(2, ["-m", "collectives.sweep", "--collectives", "allreduce,bcast",
                      "--sizes", "8,64", "--out", out] + TINY, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def resume_setup(run: Path, extra=(), like: Path | None = None):
    """What rank 0 does for ``--resume run`` on the layout and tuning environment of
    the run ``like`` (default ``run``) was measured with, in-process."""
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    meta = json.loads(((like or run) / "metadata.json").read_text())
    hosts = [h for h, n in meta["hosts"].items() for _ in range(n)]
    env = dict(meta["env"])
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        setup, opened = sw._prepare(["--resume", str(run), *extra], layout_from_hosts(hosts))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if opened is not None:
        opened[0].release()
    return setup


# ------------------------------------------------------------------ 1. inputs kept

@pytest.mark.parametrize("out", ["{a}", "{a}/sub", "{a}/points.jsonl", "{link}"])
def test_merge_never_writes_into_an_input(runs, tmp_path, out, capsys):
    from collectives import merge
    a, b = runs
    (tmp_path / "link").symlink_to(a)
    before = snapshot(a), snapshot(b)
    status = merge.main([str(a), str(b), "--out", out.format(a=a, link=tmp_path / "link")])
    assert status == 2
    assert "input" in capsys.readouterr().err
    assert (snapshot(a), snapshot(b)) == before


@pytest.mark.parametrize("name", ["points.jsonl", "metadata.json", "points.csv"])
def test_fit_never_replaces_a_runs_file(runs, name, capsys):
    from fits.__main__ import main
    a, _ = runs
    before = snapshot(a)
    assert main([str(a), "--out", str(a / name), "--overwrite", "--no-plots"]) == 2
    assert "input" in capsys.readouterr().err
    assert snapshot(a) == before


def test_export_never_replaces_its_constants(runs, tmp_path, capsys):
    from fits.__main__ import main as fit
    from fits.predict import main as predict
    a, _ = runs
    consts = tmp_path / "c.json"
    assert fit([str(a), "--out", str(consts), "--bootstrap", "0", "--no-plots",
                "--quiet"]) == 0
    before = consts.read_bytes()
    link = tmp_path / "c-link.json"
    link.symlink_to(consts)
    for out in (consts, link):
        assert predict(["export", str(consts), "--target", "calculon", "--output",
                        str(out)]) == 2
        assert "input" in capsys.readouterr().err
    assert consts.read_bytes() == before


# ------------------------------------------------------------------ 2. duplicates

def _points(run):
    return (run / "points.jsonl").read_text().splitlines(keepends=True)


def test_reader_drops_repeated_lines_saying_which(runs):
    a, _ = runs
    lines = _points(a)
    (a / "points.jsonl").write_text("".join(lines + [lines[0], lines[2]]))
    with pytest.warns(UserWarning, match=r"dropping 2 duplicated line\(s\) \(9, 10\)"):
        run = read_run(a)
    assert len(run.points) == len(lines)


def test_reader_refuses_two_measurements_of_one_point(runs):
    a, _ = runs
    lines = _points(a)
    other = json.loads(lines[0])
    other["median_s"] *= 2
    (a / "points.jsonl").write_text("".join(lines) + json.dumps(other) + "\n")
    with pytest.raises(RunFormatError, match=r"line 9 measures the same point as line 1"):
        read_run(a)


def test_fit_of_a_run_with_conflicting_duplicates_is_exit_2(runs, tmp_path, capsys):
    from fits.__main__ import main
    a, _ = runs
    lines = _points(a)
    other = json.loads(lines[1])
    other["launch"] = "someone-else"  # a second writer's launch id
    (a / "points.jsonl").write_text("".join(lines) + json.dumps(other) + "\n")
    assert main([str(a), "--out", str(tmp_path / "c.json"), "--no-plots"]) == 2
    assert "line 9 measures the same point as line 2" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("kind", ["repeat", "conflict"])
def test_resume_refuses_duplicated_points(sweep_run, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(sweep_run, run)
    lines = _points(run)
    extra = lines[0] if kind == "repeat" else lines[0].replace('"launch":"', '"launch":"x')
    (run / "points.jsonl").write_text("".join(lines) + extra)
    before = snapshot(run)
    kind_, status, text, _ = resume_setup(run)
    assert (kind_, status) == ("exit", 2)
    assert f"line {len(lines) + 1}" in text and "line 1" in text
    assert snapshot(run) == before


# ------------------------------------------------------------------ 4. bounds

@pytest.mark.parametrize("args,message", [
    (["--point-timeout", "1e10"], "--point-timeout 10000000000.0 is longer than the limit"),
    (["--min-reps", "1000000000"], "--min-reps must be between 1 and 1000000"),
    (["--time-budget", "1e300"], "--time-budget must be a finite number > 0 and <= 86400"),
    (["--sizes", ",".join(["8"] * 5000)], "5000 sizes, more than the limit of 4096"),
    (["--ranks", ",".join(["2"] * 5000)], "5000 entries, more than the limit of 4096"),
    (["--seed", "-1"], "--seed must be between 0 and"),
    (["--sizes", "8:2P"], "is not a size"),
])
def test_sweep_counts_are_bounded(tmp_path, args, message):
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    kind, status, text, _ = sw._setup(args + ["--out", str(tmp_path / "r")],
                                      layout_from_hosts(["h"] * 2))
    assert (kind, status) == ("exit", 2)
    assert message in " ".join(text.split()), text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (["laws", "--workers", "1-30000000"], "limit is 100000"),
    (["laws", "--workers", "5000000000"], "limit of 1000000000"),
    (["export", "{c}", "--target", "calculon", "--nodes", "99999999999"],
     "between 1 and 1000000000"),
    (["laws", "--serial", ",".join(["0.1"] * 20000)], "more than the limit of 10000"),
])
def test_predict_counts_are_bounded(tmp_path, capsys, args, message):
    from fits.predict import main
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main([a.format(c=tmp_path / "c.json") for a in args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_predict_table_size_is_bounded(capsys):
    from fits.predict import main
    assert main(["laws", "--serial", ",".join(["0.1"] * 100), "--workers", "1-100000"]) == 2
    assert "10000000 rows, more than the limit of 1000000" in capsys.readouterr().err


def test_fit_bootstrap_is_bounded(runs, tmp_path, capsys):
    from fits.__main__ import main
    a, _ = runs
    assert main([str(a), "--bootstrap", "100000000", "--out", str(tmp_path / "c.json")]) == 2
    assert "--bootstrap must be between 0 and 10000" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


# ------------------------------------------------------------------ 5. bad input: exit 2

@pytest.mark.parametrize("args,message", [
    (["--out", ""], "--out is empty"),
    (["--resume", ""], "--resume is empty"),
    (["--out", "/proc/collcost-x"], "cannot create a directory in /proc"),
    (["--topology", "inter"], "--topology inter: the job spans 1 node"),
    (["--break-lock"], "--break-lock goes with --resume"),
])
def test_sweep_bad_paths_and_layouts(tmp_path, monkeypatch, args, message):
    from collectives import sweep as sw
    from collectives.topology import layout_from_hosts
    monkeypatch.chdir(tmp_path)
    extra = [] if "--out" in args or "--resume" in args else ["--out", "r"]
    kind, status, text, _ = sw._setup(args + extra, layout_from_hosts(["h"] * 2))
    assert (kind, status) == ("exit", 2)
    assert message in " ".join(text.split()), text
    assert list(tmp_path.iterdir()) == []  # not even data/


def _edit_meta(run, change):
    meta = json.loads((run / "metadata.json").read_text())
    change(meta)
    (run / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage,message", [
    (lambda r: (r / "points.jsonl").write_text(
        "{oops\n" + (r / "points.jsonl").read_text()), "points.jsonl: line 1 is not valid"),
    (lambda r: (r / "points.jsonl").write_text(
        (r / "points.jsonl").read_text().replace('"ranks":2', '"ranks":"two"', 1)),
     "points.jsonl: line 1: point field ranks must be a whole number"),
    (lambda r: _edit_meta(r, lambda m: m["options"].pop("sizes")),
     "field options.sizes is missing"),
    (lambda r: _edit_meta(r, lambda m: m["options"].update(time_budget="nan")),
     "stored options are damaged: --time-budget"),
    (lambda r: _edit_meta(r, lambda m: m.update(launches="x")),
     "field launches must be a list"),
    (lambda r: _edit_meta(r, lambda m: m["env"].update(MPIR_CVAR_COLLCOST_X="1")),
     "tuning variables differ: MPIR_CVAR_COLLCOST_X is '1' in the run, unset in this"),
])
def test_resume_of_a_damaged_or_differently_tuned_run(sweep_run, tmp_path, damage, message):
    run = tmp_path / "run"
    shutil.copytree(sweep_run, run)
    damage(run)
    before = snapshot(run)
    kind, status, text, _ = resume_setup(run, like=sweep_run)
    assert (kind, status) == ("exit", 2)
    assert message in " ".join(text.split()), text
    assert snapshot(run) == before


def test_resume_keeps_each_launchs_environment(sweep_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sweep_run, run)
    proc = mpirun(2, ["-m", "collectives.sweep", "--resume", run, "--sizes", "8,64"],
                  timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    launches = json.loads((run / "metadata.json").read_text())["launches"]
    assert len(launches) == 2 and launches[1]["env"] == launches[0]["env"]


def test_merge_refuses_different_measurement_options(runs, tmp_path, capsys):
    from collectives import merge
    a, b = runs
    _edit_meta(b, lambda m: m.setdefault("options", {}).update(time_budget=5.0))
    assert merge.main([str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    assert "option time_budget differs" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("argv,message", [
    (["{a}", "", "--out", "{m}"], "RUN is empty"),
    (["{a}", "{b}", "--out", ""], "--out is empty"),
    (["{a}", "{b}", "--out", "/proc/m"], "cannot create a directory in /proc"),
    (["{a}", "{a}/points.jsonl", "--out", "{m}"], "not a run directory (not a directory)"),
])
def test_merge_bad_paths(runs, tmp_path, capsys, argv, message):
    from collectives import merge
    a, b = runs
    assert merge.main([x.format(a=a, b=b, m=tmp_path / "m") for x in argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("argv,message", [
    (["", "--out", "{c}"], "RUN_DIR is empty"),
    (["{a}", "--out", ""], "--out is empty"),
    (["{a}", "--out", "{tmp}"], "is a directory, expected a file name"),
    (["{a}", "--out", "/nonexistent/c.json"], "directory /nonexistent does not exist"),
    (["{a}", "--out", "{c}", "--plots", "/proc/p"], "--plots /proc/p: cannot create"),
])
def test_fit_bad_paths(runs, tmp_path, capsys, argv, message):
    from fits.__main__ import main
    a, _ = runs
    args = [x.format(a=a, c=tmp_path / "c.json", tmp=tmp_path) for x in argv]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("argv,message", [
    (["rubric", ""], "an argument is empty"),
    (["rubric", "{tmp}"], "CSV {tmp}: is a directory"),
    (["rubric", "{tmp}/missing.csv"], "no such file"),
    (["export", "{tmp}", "--target", "calculon"], "is a directory"),
    (["laws", "--plots", "/proc/p"], "--plots /proc/p: cannot create"),
    (["laws", "--plots="], "--plots is empty"),
    (["step", "--constants", "{tmp}", "--grad-bytes", "1", "--compute-s", "1"],
     "--constants {tmp}: is a directory"),
])
def test_predict_bad_paths(tmp_path, capsys, argv, message):
    from fits.predict import main
    assert main([x.format(tmp=tmp_path) for x in argv]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--roots", "7"], "--roots 7: root 7 is not a rank of any communicator"),
    (["--collectives", "bcast", "--counts", "p-5", "--large", "0"],
     "the options select no case for bcast"),
    (["--large", "5GiB"], "larger than the limit"),
    (["--timeout", "1e10"], "--timeout '1e10' is longer than the limit"),
    (["--counts", ",".join(map(str, range(1000)))], "1000 entries, more than the limit"),
])
def test_check_options_that_select_nothing(args, message):
    out = mpirun(2, ["-m", "collectives.check"] + args, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "cases match" not in out.stdout


def test_check_stopped_rank_ends_the_check(tmp_path):
    out = mpirun(3, ["-m", "collectives.check", "--ranks", "1,2", "--timeout", "3",
                     "--large", "0", "--collectives", "allreduce"], timeout=60,
                 env={"COLLCOST_TEST_FAULT": "wait after p=1@2=stop"})
    assert out.returncode not in (0, 124), out.stderr
    assert "phase 'wait after p=1' exceeded its deadline of 3s" in out.stderr


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_resume_never_appends_through_a_link(sweep_run, tmp_path, how):
    """A run copied with links (cp -l, ln -s) would be changed through the copy."""
    orig, run = tmp_path / "orig", tmp_path / "run"
    shutil.copytree(sweep_run, orig)
    run.mkdir()
    for f in orig.iterdir():
        (os.symlink if how == "symlink" else os.link)(f, run / f.name)
    before = snapshot(orig)
    kind, status, text, _ = resume_setup(run, like=sweep_run)
    assert (kind, status) == ("exit", 2)
    assert ("symbolic link" if how == "symlink" else "hard links") in text
    assert snapshot(orig) == before
