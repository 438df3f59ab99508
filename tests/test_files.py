"""collectives.files: atomic writes and the output-path check every command uses."""
import json
import os

import pytest

from collectives.files import (UsageError, atomic_path, atomic_write_bytes,
                               atomic_write_json, atomic_write_text, check_input,
                               check_output)


def test_atomic_writes_replace_whole_file(tmp_path):
    f = tmp_path / "a.txt"
    atomic_write_text(f, "one\n")
    atomic_write_text(f, "two\n")
    assert f.read_text() == "two\n"
    atomic_write_bytes(f, b"\x00\x01")
    assert f.read_bytes() == b"\x00\x01"
    atomic_write_json(f, {"x": float("nan"), "y": [1, 2]})
    assert json.loads(f.read_text()) == {"x": None, "y": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temp left
    assert oct(f.stat().st_mode & 0o777) != oct(0o600)  # like open(), not mkstemp


def test_failed_write_leaves_old_file(tmp_path):
    f = tmp_path / "a.json"
    atomic_write_text(f, "old\n")
    with pytest.raises(TypeError):
        atomic_write_json(f, {"x": object()})
    with pytest.raises(RuntimeError):
        with atomic_path(f, suffix=".png") as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert f.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_output_refused(bad):
    with pytest.raises(UsageError, match="^--out is empty"):
        check_output(bad)


def test_output_is_or_inside_input_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "points.jsonl").write_text("")
    for out in (run, run / "points.jsonl", run / "new.json"):
        with pytest.raises(UsageError, match="input"):
            check_output(out, inputs=[run], overwrite=True)
    f = tmp_path / "c.json"
    f.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(f)
    with pytest.raises(UsageError, match="is the input"):
        check_output(link, inputs=[f], option="--output", overwrite=True)
    hard = tmp_path / "hard.json"
    os.link(f, hard)
    with pytest.raises(UsageError, match="^--output .*is the input"):
        check_output(hard, inputs=[f], option="--output", overwrite=True)


def test_output_location_checks(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a directory"):
        check_output(tmp_path / "d", overwrite=True)
    with pytest.raises(UsageError, match="exists"):
        check_output(tmp_path / "f")
    assert check_output(tmp_path / "f", overwrite=True) == (tmp_path / "f").resolve()
    with pytest.raises(UsageError, match="does not exist"):
        check_output(tmp_path / "missing" / "x.json")
    assert check_output(tmp_path / "missing" / "x.json", parents=True)
    with pytest.raises(UsageError, match="not a directory"):
        check_output(tmp_path / "f" / "x.json")
    with pytest.raises(UsageError, match="not a directory"):
        check_output(tmp_path / "f", directory=True)
    (tmp_path / "d" / "x").write_text("")
    with pytest.raises(UsageError, match="not empty"):
        check_output(tmp_path / "d", directory=True)
    assert check_output(tmp_path / "d", directory=True, overwrite=True)


def test_unwritable_output_refused():
    # /proc/self is not a place to create files, even for root
    with pytest.raises(UsageError, match="^--plots .*cannot write"):
        check_output("/proc/self/collcost.png", option="--plots")


def test_check_input(tmp_path):
    with pytest.raises(UsageError, match="^RUN is empty"):
        check_input("", option="RUN")
    with pytest.raises(UsageError, match="no such"):
        check_input(tmp_path / "nope")
    with pytest.raises(UsageError, match="is a directory"):
        check_input(tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        (tmp_path / "f").write_text("")
        check_input(tmp_path / "f", directory=True)


def test_inside_ok_allows_new_names_in_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("metadata.json", "points.jsonl", "points.csv", ".lock"):
        (run / name).write_text("")
        with pytest.raises(UsageError, match="input"):
            check_output(run / name, inputs=[run], overwrite=True, inside_ok=True)
    assert check_output(run / "constants.json", inputs=[run], inside_ok=True) \
        == (run / "constants.json").resolve()
    with pytest.raises(UsageError, match="is the input"):
        check_output(run, inputs=[run], overwrite=True, inside_ok=True, directory=True)


def test_a_runs_own_files_are_never_outputs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metadata.json").write_text("{}")
    for name in ("points.jsonl", "points.csv", "metadata.json", ".lock"):
        with pytest.raises(UsageError, match="is a file of the run directory"):
            check_output(run / name, overwrite=True)
    assert check_output(run / "constants.json")  # other names: the caller decides


def test_names_too_long_for_an_atomic_write_are_refused(tmp_path):
    with pytest.raises(UsageError, match="longer than 231 bytes"):
        check_output(tmp_path / ("x" * 240 + ".json"))
    assert check_output(tmp_path / ("x" * 200 + ".json"))
