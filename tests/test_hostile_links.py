"""Hostile inputs to the links commands and the analysis commands (collectives.links,
fits.links, fits.compare, fits.report): empty option values, named pipes as inputs,
two outputs on one path, unbounded counts, damaged and duplicated points.  Each bad
input is exit 2 with one line naming the option, file, line or field, and nothing
written.  In process, no MPI launch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from collectives import files, links
from collectives.parsing import UsageError, empty_argument, reject_empty_arguments
from collectives.topology import layout_from_hosts
from fits import compare as fcompare
from fits import links as flinks
from fits import linksynth, report as freport

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path):
    return linksynth.write_run(tmp_path / "L1", linksynth.make_cluster(4), seed=1)


@pytest.fixture
def run2(tmp_path):
    return linksynth.write_run(tmp_path / "L2", linksynth.make_cluster(4), seed=2,
                               run_id="synthetic-1")


def _rewrite(run: Path, edit) -> None:
    lines = (run / "points.jsonl").read_text().splitlines()
    (run / "points.jsonl").write_text("\n".join(edit(lines)) + "\n")


def _files(path: Path) -> list:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- empty option values ----------------------------------------------------------------

def test_empty_argument_finds_options_and_positionals():
    assert empty_argument(["RUN", "--out", ""]) == "--out"
    assert empty_argument(["RUN", "--json="]) == "--json"
    assert empty_argument(["RUN", "--json=  "]) == "--json"
    assert empty_argument([""]) == "an argument"
    assert empty_argument(["RUN", "--out", "x", "--out=y"]) is None
    reject_empty_arguments([""])  # positionals are left to the command's own check
    with pytest.raises(UsageError, match="an argument is empty"):
        reject_empty_arguments([""], positionals=True)


@pytest.mark.parametrize("args, option", [(["--resume", ""], "--resume"),
                                          (["--resume="], "--resume"),
                                          (["--out", ""], "--out")])
def test_links_empty_out_or_resume_is_refused(tmp_path, monkeypatch, args, option):
    # was: --resume "" started a fresh run and --out "" wrote data/links-<id> here
    monkeypatch.chdir(tmp_path)
    got = links._setup(args + ["--mode", "rank"], layout_from_hosts(["a", "a"]))
    assert got[:2] == ("exit", 2), got
    assert f"{option} is empty" in got[2]
    assert list(tmp_path.iterdir()) == []


def test_fits_links_empty_fail_on_is_refused(run, capsys):
    # was: --fail-on "" switched the health check off and exited 0
    assert flinks.main([str(run), "--fail-on", ""]) == 2
    assert "--fail-on is empty" in capsys.readouterr().err


@pytest.mark.parametrize("opt", ["--json", "--plot"])
def test_compare_empty_output_is_refused(run, run2, tmp_path, capsys, opt):
    # was: --json "" wrote nothing and said nothing
    before = _files(tmp_path)
    assert fcompare.main([str(run), str(run2), opt, ""]) == 2
    assert f"{opt} is empty" in capsys.readouterr().err
    assert _files(tmp_path) == before


def test_compare_plot_and_json_on_one_path_is_refused(run, run2, tmp_path, capsys):
    # was: both written to one file, the second replacing the first
    out = tmp_path / "same"
    assert fcompare.main([str(run), str(run2), "--json", str(out), "--plot",
                          str(tmp_path / "." / "same")]) == 2
    assert "--plot and --json are the same file" in capsys.readouterr().err
    assert not out.exists()


# -- named pipes ------------------------------------------------------------------------

def test_check_input_refuses_a_named_pipe(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for directory in (False, None):
        with pytest.raises(UsageError, match="BASE .*is a named pipe, not a regular file"):
            files.check_input(fifo, option="BASE", directory=directory)


@pytest.mark.parametrize("module", ["fits.report", "fits.compare"])
def test_a_named_pipe_input_neither_blocks_nor_crashes(tmp_path, run, module):
    # was: fits.report FIFO crashed with NotADirectoryError (exit 1)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    args = [str(fifo), "--out", str(tmp_path / "r.html")] if module == "fits.report" \
        else [str(fifo), str(run)]
    p = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "is a named pipe" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r.html").exists()


# -- counts bounded before allocation ---------------------------------------------------

def test_report_and_compare_bound_bootstrap(run, run2, tmp_path, capsys):
    # was: fits.report SWEEP --bootstrap 10^12 tried to allocate 2.5 PiB (traceback)
    assert freport.main([str(run), "--out", str(tmp_path / "r.html"),
                         "--bootstrap", "1000000000000"]) == 2
    assert "--bootstrap must be between 0 and 10000" in capsys.readouterr().err
    assert fcompare.main([str(run), str(run2), "--bootstrap", "1000000000000"]) == 2
    assert "--bootstrap must be between 0 and 10000" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# -- damaged points ---------------------------------------------------------------------

def _sub(field, value):
    def edit(lines):
        row = json.loads(lines[0])
        row[field] = value
        return [json.dumps(row)] + lines[1:]
    return edit


@pytest.mark.parametrize("field, value, message", [
    ("bytes", 1e300, "field bytes must be between 0 and"),        # was OverflowError
    ("bytes", -8, "field bytes must be between 0 and"),           # was accepted
    ("repetitions", 10**20, "field repetitions must be between"),  # was OverflowError
    ("median_s", "x", "field median_s must be a number of seconds"),  # was 'bad field'
    ("median_s", float("inf"), "field median_s must be finite"),    # was dropped silently
    ("ci_low_s", True, "field ci_low_s must be a number of seconds"),  # was read as 1 s
    ("src", 1.5, "field src must be a whole number"),              # was read as 1
    ("dst", True, "field dst must be a whole number"),             # was read as 1
    ("samples", [1, 2], "field samples must be an object"),        # was AttributeError
])
def test_damaged_field_is_named(run, tmp_path, capsys, field, value, message):
    _rewrite(run, _sub(field, value))
    with pytest.raises(flinks.LinksFormatError, match=f"line 1: .*{message}"):
        flinks.read_links_run(run, samples=True)
    if field == "samples":  # read only by fits.compare (the test on raw repetitions)
        other = linksynth.write_run(tmp_path / "L2", linksynth.make_cluster(4), seed=2)
        assert fcompare.main([str(run), str(other), "--json",
                              str(tmp_path / "out")]) == 2
    else:
        assert flinks.main([str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_repeated_line_is_dropped_with_a_warning(run):
    # was: accepted silently (pooled twice into the link's fit and the comparison)
    ref = flinks.read_links_run(run, samples=True)
    _rewrite(run, lambda lines: lines + [lines[3]])
    n = sum(1 for _ in (run / "points.jsonl").open())
    with pytest.warns(UserWarning, match=rf"dropping 1 duplicated line\(s\) \({n}\)"):
        data = flinks.read_links_run(run, samples=True)
    assert data.median.size == ref.median.size
    assert (data.median == ref.median).all() and (data.samples == ref.samples).all()
    assert (data.offsets == ref.offsets).all()


def test_two_measurements_of_one_link_are_refused(run):
    def edit(lines):
        row = json.loads(lines[0])
        row["median_s"] *= 3
        return lines + [json.dumps(row)]
    _rewrite(run, edit)
    n = sum(1 for _ in (run / "points.jsonl").open())
    with pytest.raises(flinks.LinksFormatError,
                       match=f"line {n} measures the same link and size as line 1"):
        flinks.read_links_run(run)


# -- options bounded, usage named after the command that ran ----------------------------

@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_fits_links_seed_is_bounded(run, capsys, seed):
    # was: a numpy ValueError traceback for -1; 2^64 accepted
    assert flinks.main([str(run), "--no-write", "--seed", seed]) == 2
    err = capsys.readouterr().err
    assert "--seed must be between 0 and" in err and "Traceback" not in err


@pytest.mark.parametrize("command, args", [
    ("fit-links", lambda run, tmp: [str(tmp / "missing")]),
    ("compare", lambda run, tmp: [str(run), str(tmp / "missing")]),
    ("report", lambda run, tmp: [str(tmp / "missing"), "--out", str(tmp / "r.html")]),
])
def test_collcost_names_itself_in_errors_and_usage(run, tmp_path, capsys, command, args):
    # was: 'collcost fit-links' answered as 'python -m fits.links'
    from collcost import cli
    assert cli.main([command] + args(run, tmp_path)) == 2
    assert f"collcost {command}: error:" in capsys.readouterr().err
    assert cli.main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: collcost {command} ")


# -- sweep runs: statistics and sizes checked where every reader reads them ------------

@pytest.mark.parametrize("field, value, message", [
    ("median_s", -5, "median_s must be finite and >= 0 seconds"),  # summary printed -5e6 us
    ("ci_low_s", float("inf"), "ci_low_s must be finite and >= 0"),
    ("p99_s", "x", "p99_s must be a number of seconds or null"),   # was read as NaN
    ("bytes", 1e300, "bytes must be <= "),                          # was accepted
])
def test_sweep_run_statistics_are_checked(tmp_path, capsys, field, value, message):
    import shutil
    from collectives import summary
    run = tmp_path / "run"
    shutil.copytree(ROOT / "data" / "example-2rank", run)
    lines = (run / "points.jsonl").read_text().splitlines()
    row = json.loads(lines[4])
    row[field] = value
    lines[4] = json.dumps(row)
    (run / "points.jsonl").write_text("\n".join(lines) + "\n")
    before = _files(tmp_path)
    assert summary.main([str(run), "--format", "osu"]) == 2
    err = capsys.readouterr().err
    assert f"line 5: point field {message}" in err
    assert _files(tmp_path) == before


def test_links_writer_accepts_negative_one_way_times():
    # a links run's one-way times (round trip minus ack_s) can come out below zero on a
    # busy machine: the writer's check must not abort the job (6143e70 did), only the
    # sweep's reader refuses negative times
    from collectives import results
    row = json.loads((ROOT / "data" / "example-2rank" / "points.jsonl").open().readline())
    row["min_s"] = -5e-7
    results._check_point(row)
    with pytest.raises(results.RunFormatError, match="min_s must be finite and >= 0"):
        results._check_sweep_point(row)


@pytest.mark.parametrize("value", [-1.0, 0])
def test_a_median_at_or_below_zero_is_left_out_with_a_warning(run, value):
    # --direction both stores round trip - ack_s, which a loaded machine pushes below 0
    # (seen here: 3 ranks on 2 busy cores); such a point has no one-way time to fit.
    # was: fitted as it stood (a negative time pulled the link's alpha below zero)
    ref = flinks.read_links_run(run)
    _rewrite(run, _sub("median_s", value))
    with pytest.warns(UserWarning, match=r"1 point\(s\) with a median <= 0 s left out "
                                         r"\(first: line 1"):
        data = flinks.read_links_run(run)
    assert data.median.size == ref.median.size - 1 and (data.median > 0).all()


def _meta(run: Path, edit) -> None:
    m = json.loads((run / "metadata.json").read_text())
    edit(m)
    (run / "metadata.json").write_text(json.dumps(m))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["links"]["endpoints"][1].update(index=-3), r"links\.endpoints\[1\] must be"),
    (lambda m: m["links"]["endpoints"][1].update(index=0), r"links\.endpoints\[1\] must be"),
    (lambda m: m["links"]["endpoints"][1].update(index=1.7), r"links\.endpoints\[1\] must be"),
    (lambda m: m["links"]["endpoints"][1].update(host=None), r"links\.endpoints\[1\] must be"),
    (lambda m: m["links"].update(mode="both"), "field links.mode is 'both'"),
    (lambda m: m["links"].update(direction=None), "field links.direction is None"),
])
def test_damaged_links_metadata_is_named(run, edit, message):
    # were accepted: index -3 took another endpoint's slot (Python's negative index),
    # 1.7 was read as 1, a null host became the host name 'None'
    _meta(run, edit)
    with pytest.raises(flinks.LinksFormatError, match=message):
        flinks.read_links_run(run)


def test_compare_refuses_runs_of_different_directions(run, tmp_path, capsys):
    # was: compared (exit 0): one stores half a symmetric round trip, both one-way times
    other = linksynth.write_run(tmp_path / "one", linksynth.make_cluster(4), seed=3,
                                direction="one")
    assert fcompare.main([str(run), str(other)]) == 2
    assert "links direction both vs one" in capsys.readouterr().err


# -- Ctrl-C and a closed pipe: one line or nothing, never a traceback --------------------

@pytest.mark.parametrize("module", ["fits.compare", "fits.links"])
def test_closed_stdout_keeps_the_exit_status_without_a_traceback(run, run2, module):
    # was: BrokenPipeError traceback and exit 1 from 'fits.compare A B | head -1'
    args = [str(run), str(run2)] if module == "fits.compare" else \
        [str(run), "--no-write", "--fail-on", "suspects"]
    p = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # the reader is gone before anything is written
    err = p.stderr.read()
    assert p.wait(timeout=60) in (0, 1), err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_collcost_interrupted_is_one_line(run, monkeypatch, capsys):
    # was: a KeyboardInterrupt traceback
    from collcost import cli

    def interrupted(argv=None, prog=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(flinks, "main", interrupted)
    assert cli.main(["fit-links", str(run)]) == 130
    assert capsys.readouterr().err.strip() == "collcost fit-links: interrupted"


# -- bad input met after the start of an MPI job: still exit 2, one line ----------------

def test_links_resume_of_a_damaged_run_exits_2(tmp_path):
    # was: a traceback and MPI_Abort(1) (the damaged line is met when rank 0 reopens the
    # run, after the launch's checks)
    from mpirun import mpirun
    run = tmp_path / "run"
    tiny = ["--mode", "rank", "--sizes", "8,64", "--min-reps", "3", "--max-reps", "5",
            "--time-budget", "0.01", "--warmup", "1"]
    p = mpirun(2, ["-m", "mpi4py", "-m", "collectives.links", "--out", str(run)] + tiny,
               timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = (run / "points.jsonl").read_text().splitlines()
    damaged = "\n".join([lines[0], "garbage{"] + lines[1:]) + "\n"
    (run / "points.jsonl").write_text(damaged)
    p = mpirun(2, ["-m", "mpi4py", "-m", "collectives.links", "--resume", str(run)],
               timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "line 2 is damaged" in p.stderr and "Traceback" not in p.stderr
    assert (run / "points.jsonl").read_text() == damaged


def test_summary_warnings_are_one_line_each(tmp_path, capsys):
    # was: Python's warning format, 'summary.py:446: UserWarning: ...' plus a source line
    import shutil
    from collectives import summary
    run = tmp_path / "run"
    shutil.copytree(ROOT / "data" / "example-2rank", run)
    text = (run / "points.jsonl").read_text()
    (run / "points.jsonl").write_text(text[:-30])
    assert summary.main([str(run), "--format", "osu"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("python -m collectives.summary: warning: ") and
               "truncated last line" in line for line in err), err
    assert not any("UserWarning" in line or "read_run(" in line for line in err), err


def test_fits_links_default_output_is_next_to_the_run_and_says_so(run, capsys):
    # was: without --out nothing was written (unlike 'python -m fits RUN')
    assert flinks.main([str(run), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {run / 'analysis'}/" in err
    assert sorted(p.name for p in (run / "analysis").iterdir()) == \
        ["links.csv", "links.json", "tiers.json"]
    before = (run / "analysis" / "links.json").read_bytes()
    assert flinks.main([str(run), "--no-plots"]) == 2  # never replaced unasked
    assert "--overwrite replaces it" in capsys.readouterr().err
    assert (run / "analysis" / "links.json").read_bytes() == before
    (run / "analysis").rename(run / "moved")
    (run / "analysis").write_text("not a directory")
    assert flinks.main([str(run)]) == 2
    assert "--no-write writes nothing" in capsys.readouterr().err
    assert flinks.main([str(run), "--no-write"]) == 0
