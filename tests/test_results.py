"""Run directories: durable appends, truncated lines, schema checks, resume, merge."""
import json
import os
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from collectives import results
from mpirun import ROOT
from collectives.results import (KEY_FIELDS, POINT_FIELDS, RunFormatError, RunWriter,
                                 merge_runs, point_key, read_run)


def py_env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def make_point(nbytes=8, collective="allreduce", ranks=2, reps=3, **kw):
    t = [1e-6 * (i + 1) for i in range(reps)]
    p = dict(collective=collective, algorithm="native", topology="intra", ranks=ranks,
             nodes=1, bytes=nbytes, count=nbytes // 4, dtype="float32", op="sum",
             buffer="numpy", sync="barrier", median_s=2e-6, ci_low_s=1e-6,
             ci_high_s=3e-6, mean_s=2e-6, min_s=1e-6, p95_s=3e-6, p99_s=3e-6,
             repetitions=reps, discarded=0, warmup=1, stop_rule="ci", unstable=False,
             correct=True, samples={"max": t, "min": t, "mean": t})
    p.update(kw)
    return p


def meta(**kw):
    m = {"command_line": ["test"], "seed": 1, "world_size": 2, "nodes": 1,
         "ranks_per_node": 2, "mpi": {"library": "MPICH", "version": "MPICH 5.0.2"},
         "options": {"dtype": "float32", "op": "sum", "sync": "barrier",
                     "buffer": "numpy"},
         "env": {"MPIR_CVAR_DEVICE_COLLECTIVES": "none"}, "gpu": None}
    m.update(kw)
    return m


def write_run(path, sizes, **metakw):
    w = RunWriter.create(path, meta(**metakw))
    for s in sizes:
        w.append(make_point(s))
    w.finish()
    return w


class TestWriter:
    def test_create_append_read(self, tmp_path):
        w = write_run(tmp_path / "r", [8, 16, 32])
        run = read_run(tmp_path / "r")
        assert run.metadata["schema_version"] == results.SCHEMA_VERSION
        assert run.metadata["kind"] == "collcost-run"
        assert list(run.points["bytes"]) == [8, 16, 32]
        assert list(run.points.columns[:len(POINT_FIELDS)]) == list(POINT_FIELDS)
        assert set(run.points["launch"]) == {w.launch} == {run.run_id}
        assert run.points["samples"][0]["max"] == [1e-6, 2e-6, 3e-6]
        csv = pd.read_csv(tmp_path / "r" / "points.csv")
        assert "samples" not in csv.columns and list(csv["bytes"]) == [8, 16, 32]
        assert run.metadata["launches"][0]["launch"] == run.run_id

    def test_each_append_is_on_disk_immediately(self, tmp_path):
        w = RunWriter.create(tmp_path / "r", meta())
        w.append(make_point(8))
        # another reader sees the line before finish() or close()
        lines = (tmp_path / "r" / "points.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["bytes"] == 8
        assert not (tmp_path / "r" / "points.csv").exists()
        w.close()

    def test_completed_keys(self, tmp_path):
        w = RunWriter.create(tmp_path / "r", meta())
        w.append(make_point(8))
        assert w.completed_keys() == {point_key(make_point(8))}
        assert len(point_key(make_point(8))) == len(KEY_FIELDS)
        with pytest.raises(ValueError, match="already written"):
            w.append(make_point(8))
        w.close()

    @pytest.mark.parametrize("change,msg", [
        (dict(collective="gather"), "unknown collective"),
        (dict(topology="rack"), "unknown topology"),
        (dict(ranks=0), "ranks must be >= 1"),
        (dict(bytes=-1), "bytes must be >= 0"),
        (dict(stop_rule="tired"), "stop_rule"),
        (dict(repetitions=5), "3 samples but repetitions=5"),
        (dict(samples={"max": [1.0]}), "samples must be a dict"),
    ])
    def test_bad_points_rejected_and_not_written(self, tmp_path, change, msg):
        w = RunWriter.create(tmp_path / "r", meta())
        with pytest.raises(RunFormatError, match=msg):
            w.append(make_point(8, **change))
        w.close()
        assert (tmp_path / "r" / "points.jsonl").read_text() == ""

    def test_missing_field_rejected(self, tmp_path):
        w = RunWriter.create(tmp_path / "r", meta())
        p = make_point(8)
        del p["median_s"]
        with pytest.raises(RunFormatError, match="median_s"):
            w.append(p)
        w.close()

    def test_refuses_non_empty_directory(self, tmp_path):
        (tmp_path / "r").mkdir()
        (tmp_path / "r" / "x").write_text("x")
        from collectives.files import UsageError
        with pytest.raises(UsageError, match="not an empty directory"):
            RunWriter.create(tmp_path / "r", meta())

    def test_unserializable_metadata_creates_nothing(self, tmp_path):
        with pytest.raises(TypeError):
            RunWriter.create(tmp_path / "r", meta(bad=object()))
        assert not (tmp_path / "r").exists()

    def test_numpy_values_serialize(self, tmp_path):
        import numpy as np
        w = RunWriter.create(tmp_path / "r", meta())
        t = np.array([1e-6, 2e-6, 3e-6])
        w.append(make_point(8, ranks=np.int64(2), median_s=np.float64(2e-6),
                            samples={"max": t, "min": t, "mean": t}))
        w.finish()
        run = read_run(tmp_path / "r")
        assert run.points["ranks"][0] == 2 and run.points["samples"][0]["max"][2] == 3e-6


    def test_nan_is_written_as_null(self, tmp_path):
        import numpy as np
        w = RunWriter.create(tmp_path / "r", meta())
        w.append(make_point(8, ci_low_s=float("nan"), ci_high_s=np.float64("nan")))
        w.finish()
        line = (tmp_path / "r" / "points.jsonl").read_text()
        assert "NaN" not in line and '"ci_low_s":null' in line
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
        assert np.isnan(read_run(tmp_path / "r").points["ci_high_s"][0])


class TestReader:
    def test_truncated_last_line_warns_and_is_dropped(self, tmp_path):
        write_run(tmp_path / "r", [8, 16])
        with open(tmp_path / "r" / "points.jsonl", "a") as fh:
            fh.write(json.dumps(make_point(32))[:40])
        with pytest.warns(UserWarning, match="truncated last line"):
            run = read_run(tmp_path / "r")
        assert list(run.points["bytes"]) == [8, 16]

    def test_bad_line_in_the_middle_is_an_error(self, tmp_path):
        write_run(tmp_path / "r", [8])
        with open(tmp_path / "r" / "points.jsonl", "a") as fh:
            fh.write("{broken\n" + json.dumps(make_point(16)) + "\n")
        with pytest.raises(RunFormatError, match="line 2 is not valid JSON"):
            read_run(tmp_path / "r")

    @pytest.mark.parametrize("change,msg", [
        (dict(ranks=None), "ranks"), (dict(bytes="lots"), "bytes"),
        (dict(repetitions=None), "repetitions"), (dict(count=float("nan")), "count"),
        (dict(samples={"max": 1.0, "min": 1.0, "mean": 1.0}), "samples"),
    ])
    def test_damaged_field_is_a_format_error(self, tmp_path, change, msg):
        # a hand-edited or damaged line used to escape as TypeError/ValueError with no
        # file, line or field named (merge and the fitter report RunFormatError only)
        write_run(tmp_path / "r", [8])
        with open(tmp_path / "r" / "points.jsonl", "a") as fh:
            for point in (make_point(16, **change), make_point(32)):
                point.update(launch="x", timestamp_utc="2026-01-01T00:00:00.000000Z")
                fh.write(json.dumps(point) + "\n")
        with pytest.raises(RunFormatError, match=f"line 2: .*{msg}"):
            read_run(tmp_path / "r")

    def test_unknown_schema_version(self, tmp_path):
        write_run(tmp_path / "r", [8])
        m = json.loads((tmp_path / "r" / "metadata.json").read_text())
        m["schema_version"] = 99
        (tmp_path / "r" / "metadata.json").write_text(json.dumps(m))
        with pytest.raises(RunFormatError, match="unknown schema_version 99"):
            read_run(tmp_path / "r")

    def test_not_a_run(self, tmp_path):
        with pytest.raises(RunFormatError, match="no such directory"):
            read_run(tmp_path / "nope")
        (tmp_path / "d").mkdir()
        with pytest.raises(RunFormatError, match="no metadata.json"):
            read_run(tmp_path / "d")
        (tmp_path / "d" / "metadata.json").write_text('{"kind": "other"}')
        with pytest.raises(RunFormatError, match="not a collcost run"):
            read_run(tmp_path / "d")

    def test_empty_run_has_columns(self, tmp_path):
        RunWriter.create(tmp_path / "r", meta()).finish()
        run = read_run(tmp_path / "r")
        assert len(run.points) == 0 and "median_s" in run.points.columns


class TestResume:
    def test_resume_repairs_truncation_and_appends_new_launch(self, tmp_path):
        write_run(tmp_path / "r", [8, 16])
        with open(tmp_path / "r" / "points.jsonl", "a") as fh:
            fh.write(json.dumps(make_point(32))[:50])
        with pytest.warns(UserWarning, match="truncated"):
            w = RunWriter.resume(tmp_path / "r", command_line=["again"], seed=1)
        assert {k[5] for k in w.completed_keys()} == {8, 16}
        w.append(make_point(32))
        w.finish()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no truncation left
            run = read_run(tmp_path / "r")
        assert list(run.points["bytes"]) == [8, 16, 32]
        assert run.points["launch"][2] == run.run_id + "+1"
        assert [l["launch"] for l in run.metadata["launches"]] == [run.run_id,
                                                                  run.run_id + "+1"]

    def test_resume_after_complete_line_without_newline(self, tmp_path):
        write_run(tmp_path / "r", [8])
        with open(tmp_path / "r" / "points.jsonl", "a") as fh:
            # a complete row whose newline was lost
            fh.write(json.dumps(make_point(16, launch="x", timestamp_utc="t")))
        w = RunWriter.resume(tmp_path / "r")
        w.append(make_point(32))
        w.finish()
        assert list(read_run(tmp_path / "r").points["bytes"]) == [8, 16, 32]


KILL_WRITER = r"""
import sys
from collectives.results import RunWriter
sys.path.insert(0, {tests!r})
from test_results import make_point, meta
w = RunWriter.create({path!r}, meta())
for i in range(3):
    w.append(make_point(8 << i))
import os
os._exit(9)   # killed: no finish(), no close()
"""


def test_killed_writer_loses_no_completed_point(tmp_path):
    code = KILL_WRITER.format(tests=os.path.dirname(__file__), path=str(tmp_path / "r"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=py_env())
    assert proc.returncode == 9, proc.stderr
    run = read_run(tmp_path / "r")
    assert list(run.points["bytes"]) == [8, 16, 32]


class TestMerge:
    def test_merge_keeps_launches(self, tmp_path):
        write_run(tmp_path / "a", [8, 16], seed=1)
        write_run(tmp_path / "b", [8, 16], seed=2)
        run = merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
        a, b = read_run(tmp_path / "a"), read_run(tmp_path / "b")
        assert len(run.points) == 4
        assert run.launches == sorted([a.run_id, b.run_id])
        assert [m["run_id"] for m in run.metadata["merged_from"]] == [a.run_id, b.run_id]
        assert run.run_id not in (a.run_id, b.run_id)
        assert (tmp_path / "m" / "points.csv").exists()

    @pytest.mark.parametrize("change,what", [
        (dict(mpi={"library": "Open MPI", "version": "Open MPI 5"}), "MPI library"),
        (dict(nodes=2), "nodes"),
        (dict(ranks_per_node=4), "ranks per node"),
        (dict(options={"dtype": "float64", "op": "sum", "sync": "barrier",
                       "buffer": "numpy"}), "dtype"),
        (dict(env={"MPIR_CVAR_DEVICE_COLLECTIVES": "all"}), "tuning variables"),
    ])
    def test_merge_refuses_different_metadata(self, tmp_path, change, what):
        write_run(tmp_path / "a", [8])
        write_run(tmp_path / "b", [8], **change)
        with pytest.raises(ValueError, match=what):
            merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
        assert not (tmp_path / "m").exists()

    def test_merge_refuses_same_run_twice_and_existing_out(self, tmp_path):
        write_run(tmp_path / "a", [8])
        with pytest.raises(ValueError, match="given twice"):
            merge_runs([tmp_path / "a", tmp_path / "a"], tmp_path / "m")
        write_run(tmp_path / "b", [8])
        from collectives.files import UsageError
        with pytest.raises(UsageError, match="is the input"):
            merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "a")

    def test_merge_cli(self, tmp_path, capsys):
        from collectives.merge import main
        write_run(tmp_path / "a", [8])
        write_run(tmp_path / "b", [8])
        assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                     str(tmp_path / "m")]) == 0
        assert "2 launches" in capsys.readouterr().out
        write_run(tmp_path / "c", [8], nodes=3)
        assert main([str(tmp_path / "a"), str(tmp_path / "c"), "--out",
                     str(tmp_path / "n")]) == 2
        assert "nodes differs" in capsys.readouterr().err
        assert not (tmp_path / "n").exists()
        with pytest.raises(SystemExit) as exc:
            main([str(tmp_path / "a")])  # --out missing: argparse usage error
        assert exc.value.code == 2


def test_merge_cli_unwritable_out_is_a_clean_error(tmp_path, capsys):
    # an --out that cannot be created used to end in an OSError traceback (status 1)
    from collectives.merge import main
    write_run(tmp_path / "a", [8])
    write_run(tmp_path / "b", [8])
    (tmp_path / "file").write_text("not a directory")
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "file" / "m")]) == 2
    assert "file" in capsys.readouterr().err
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 "/proc/collcost-merge-test"]) == 2
    assert "/proc/collcost-merge-test" in capsys.readouterr().err
    assert not os.path.exists("/proc/collcost-merge-test")
