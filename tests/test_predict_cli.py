"""``python -m fits.predict``: formats, plots, help, and exit status 2 on bad input."""
import io
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import predict_fixtures as fx
from fits.predict import scaling
from fits.predict import main, parse_workers


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def csv_table(text):
    return pd.read_csv(io.StringIO(text), comment="#")


@pytest.fixture
def rubric_csv(tmp_path):
    p = np.array([1, 2, 4, 8, 16])
    path = tmp_path / "runs.csv"
    pd.DataFrame({"p": p, "seconds": 60 * scaling.amdahl_time(0.05, p),
                  "quality": [1.0, 1.0, 1.0, 1.0, 1.3]}).to_csv(path, index=False)
    return path


@pytest.fixture
def constants_file(tmp_path):
    from fits.constants import save
    return save(fx.two_level(q=4, nodes=8), tmp_path / "constants.json")


class TestLaws:
    def test_formats_agree(self, capsys):
        argv = ["laws", "--serial", "0.1,0.2", "--workers", "1-8:x2", "--comm-coeff", "0.02"]
        code, text, _ = run(argv + ["--format", "csv"], capsys)
        assert code == 0
        t = csv_table(text)
        assert len(t) == 8
        row = t[(t.serial_fraction == 0.1) & (t.workers == 8)].iloc[0]
        assert row.amdahl_speedup == pytest.approx(1 / (0.1 + 0.9 / 8))
        assert row.gustafson_speedup == pytest.approx(8 - 0.1 * 7)
        assert row.strong_time == pytest.approx(0.1 + 0.9 / 8 + 0.02 * 3)
        assert row.weak_time == pytest.approx(1 + 0.02 * 3)
        assert row.fraction_of_ceiling == pytest.approx(row.amdahl_speedup / 10)
        code, text, _ = run(argv + ["--format", "json"], capsys)
        doc = json.loads(text)
        assert len(doc["table"]) == 8
        s = doc["summary"]["s=0.1"]
        assert s["amdahl_ceiling"] == pytest.approx(10)
        assert s["strong_optimal_workers"] == scaling.textbook_optimal_workers(0.1, 0.02)
        assert s["fraction_of_ceiling_at_largest"] == pytest.approx(row.amdahl_speedup / 10)
        code, text, _ = run(argv, capsys)
        assert code == 0 and "gustafson_speedup" in text and "s=0.2:" in text

    def test_zero_serial_fraction_json_infinity(self, capsys):
        code, text, _ = run(["laws", "--serial", "0", "--workers", "1,2", "--comm-coeff", "0",
                             "--format", "json"], capsys)
        assert code == 0
        summary = json.loads(text)["summary"]["s=0"]
        assert summary["amdahl_ceiling"] == "inf"
        assert summary["strong_optimal_workers"] == "inf"

    @pytest.mark.parametrize("argv,msg", [
        (["--serial", "1.5"], "between 0 and 1"),
        (["--workers", "0,2"], "worker counts must be >= 1"),
        (["--workers", "8-2"], "bad worker list item"),
        (["--comm-coeff", "-1"], "must be finite and >= 0"),
    ])
    def test_bad_input_exit_2(self, argv, msg, capsys):
        try:
            code = main(["laws"] + argv)
        except SystemExit as e:
            code = e.code
        assert code == 2
        assert msg in capsys.readouterr().err


class TestRubric:
    def test_table_and_summary(self, rubric_csv, capsys):
        code, text, _ = run(["rubric", str(rubric_csv), "--format", "json"], capsys)
        assert code == 0
        doc = json.loads(text)
        assert doc["summary"]["serial_fraction"] == pytest.approx(0.05, abs=1e-12)
        assert doc["summary"]["drifting_p"] == [16]
        # E(p) = 1/(0.05 p + 0.95) >= 0.7  <=>  p <= 9.57
        assert doc["summary"]["largest_efficient_p"] == 8
        assert [r["quality_ok"] for r in doc["table"]] == [True] * 4 + [False]
        code, text, _ = run(["rubric", str(rubric_csv), "--format", "csv", "--threshold",
                             "0.9"], capsys)
        t = csv_table(text)
        assert list(t.p) == [1, 2, 4, 8, 16]
        assert "# largest_efficient_p: 2" in text  # p <= 3.2
        code, text, _ = run(["rubric", str(rubric_csv)], capsys)
        assert re.search(r"^verdict +scales to p=8", text, re.M)

    @pytest.mark.parametrize("content,msg", [
        ("p,time\n1,10\n", "missing column(s) seconds"),
        ("p,seconds\n1,10\n2,-3\n", "'seconds' must be > 0"),
        ("p,seconds\n0,10\n", "whole numbers >= 1"),
        ("p,seconds\n1,abc\n", "not a number"),
    ])
    def test_bad_tables_exit_2(self, tmp_path, content, msg, capsys):
        path = tmp_path / "bad.csv"
        path.write_text(content)
        code, _, err = run(["rubric", str(path)], capsys)
        assert code == 2 and msg in err

    def test_missing_file_exit_2(self, tmp_path, capsys):
        code, _, err = run(["rubric", str(tmp_path / "nope.csv")], capsys)
        assert code == 2 and "no such file" in err


class TestStep:
    def test_explicit_constants(self, capsys):
        code, text, _ = run(["step", "--alpha", "1e-5", "--beta", "1e-9", "--gamma", "0",
                             "--grad-bytes", "1e8", "--compute-s", "1", "--workers", "1,2,4",
                             "--algorithm", "ring", "--format", "json"], capsys)
        assert code == 0
        doc = json.loads(text)
        t = doc["table"]
        # ring on 4 ranks: 6 α + 1.5 n β
        assert t[2]["comm_s"] == pytest.approx(6e-5 + 1.5 * 1e8 * 1e-9)
        assert t[2]["step_s"] == pytest.approx(0.25 + t[2]["comm_s"])
        assert doc["summary"]["ranks_per_node"] == 4
        S = np.array([r["speedup"] for r in t])
        assert doc["summary"]["amdahl_fit_serial_fraction"] == pytest.approx(
            scaling.fit_serial_fraction([1, 2, 4], S))

    def test_constants_file_hierarchical(self, constants_file, capsys):
        code, text, _ = run(["step", "--constants", str(constants_file), "--params", "25e6",
                             "--compute-s", "0.3", "--workers", "1-32:x2", "--rate", "2.5",
                             "--deadline", "50", "--steps", "1000", "--format", "csv"],
                            capsys)
        assert code == 0
        t = csv_table(text)
        assert list(t.workers) == [1, 2, 4, 8, 16, 32]
        assert "inter_allreduce" in t.algorithm.iloc[-1]
        assert "intra_allreduce" in t.algorithm.iloc[1]
        assert "# gradient_bytes: 100000000.0" in text
        assert "# cheapest_workers:" in text

    def test_plots(self, constants_file, tmp_path, capsys):
        pytest.importorskip("matplotlib")
        d = tmp_path / "plots"
        code, _, err = run(["step", "--constants", str(constants_file), "--grad-bytes", "4e6",
                            "--compute-s", "0.05", "--workers", "1-16:x2", "--plots", str(d)],
                           capsys)
        assert code == 0 and "wrote" in err
        names = sorted(p.name for p in d.iterdir())
        assert names == ["step_breakdown.png", "step_efficiency.png", "step_speedup.png"]
        for p in d.iterdir():
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    @pytest.mark.parametrize("argv,msg", [
        (["--alpha", "1e-6", "--beta", "1e-9", "--algorithm", "tree"], "unknown allreduce"),
        (["--alpha", "1e-6"], "both --alpha and --beta"),
        (["--alpha", "1e-6", "--beta", "1e-9", "--overlap", "1.5"], "--overlap"),
        (["--alpha=-1e-6", "--beta", "1e-9"], "must be finite and >= 0"),
        (["--alpha", "1e-6", "--beta", "1e-9", "--workers", "0-4"], ">= 1"),
        (["--constants", "/nonexistent/c.json"], "c.json"),
    ])
    def test_bad_input_exit_2(self, argv, msg, capsys):
        try:
            code = main(["step", "--grad-bytes", "1e6", "--compute-s", "1"] + argv)
        except SystemExit as e:
            code = e.code
        assert code == 2
        assert msg in capsys.readouterr().err


def test_laws_and_rubric_plots(rubric_csv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["laws", "--workers", "1-64:x2", "--plots", str(tmp_path)]) == 0
    assert main(["rubric", str(rubric_csv), "--plots", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "laws_efficiency.png", "laws_speedup.png", "rubric_efficiency.png",
        "rubric_speedup.png"]


def test_parse_workers():
    assert parse_workers("1,4,2") == [1, 2, 4]
    assert parse_workers("2-8:2") == [2, 4, 6, 8]
    assert parse_workers("1-20:x3") == [1, 3, 9]
    assert parse_workers("3-5,4") == [3, 4, 5]


HELP = {"laws": ["--serial", "--workers", "--comm-coeff", "--format", "--plots"],
        "rubric": ["--threshold", "--quality-tol", "--rate", "--format", "--plots"],
        "step": ["--constants", "--alpha", "--beta", "--gamma", "--grad-bytes", "--params",
                 "--dtype-size", "--compute-s", "--serial-s", "--overlap", "--mode",
                 "--workers", "--ranks-per-node", "--algorithm", "--rate", "--threshold",
                 "--deadline", "--steps", "--format", "--plots"],
        "export": ["--target", "--output", "--algorithm", "--astra-topology",
                   "--ranks-per-node", "--nodes", "--time-unit"]}


@pytest.mark.parametrize("sub", sorted(HELP))
def test_help_explains_every_option(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in HELP[sub]:
        assert opt in text, opt


def test_exit_status_2_as_a_program():
    """The real entry point, end to end: one line on stderr, nothing on stdout."""
    r = subprocess.run([sys.executable, "-m", "fits.predict", "step", "--alpha", "1",
                        "--beta", "1", "--grad-bytes", "1", "--compute-s", "1",
                        "--workers", "1,2", "--algorithm", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown allreduce algorithm 'nope'" in r.stderr
    assert r.stdout == ""


class TestHumanOutput:
    """Table format: fits 100 columns, summaries as aligned lines, counts as integers."""

    def check(self, text):
        long = [line for line in text.splitlines() if len(line.rstrip()) > 100]
        assert not long, long
        assert "{" not in text and "[\"" not in text

    def test_laws(self, capsys):
        code, text, _ = run(["laws", "--serial", "0.05,0.1", "--workers", "1-8:x2"], capsys)
        assert code == 0
        self.check(text)
        assert re.search(r"^s=0.05:$", text, re.M)
        assert re.search(r"^  strong_optimal_workers +66$", text, re.M)  # not 66.0
        assert re.search(r"^  amdahl_ceiling +20$", text, re.M)

    def test_step_says_what_priced_it(self, constants_file, capsys):
        code, text, _ = run(["step", "--constants", str(constants_file), "--grad-bytes",
                             "1e8", "--compute-s", "0.5", "--workers", "1-64:x2"], capsys)
        assert code == 0
        self.check(text)
        assert re.search(r"^gradient_bytes +100000000$", text, re.M)
        assert re.search(r"^pricing +library$", text, re.M)
        assert "priced_by:" in text and "@headline" in text
        assert re.search(r"^  \[\d\] .*inter_allreduce=", text, re.M)  # legend of labels
