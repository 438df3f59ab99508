"""jobs/local.sh, the README's main job, end to end: sweep with every algorithm, fit,
a training-step prediction, the HTML report; the report's path is the last line."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.mpi
def test_local_job_runs_the_whole_pipeline(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    env = dict(os.environ, COLLCOST_OUT=str(out))
    res = subprocess.run([str(ROOT / "jobs" / "local.sh")], capture_output=True,
                         text=True, env=env, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == f"{out}/report.html"
    report = Path(lines[-1]).read_text()
    assert "Headline constants per topology" in report
    for name in ("metadata.json", "points.jsonl", "constants.json", "plots"):
        assert (out / name).exists(), name
    # the hand-written algorithms were measured, and the step was predicted
    points = (out / "points.csv").read_text()
    for alg in ("ring", "recursive_doubling", "rabenseifner", "binomial"):
        assert f",{alg}," in points, alg
    assert "== 3/4 predict" in res.stderr and "fastest_workers" in res.stdout
