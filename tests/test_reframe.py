"""The ReFrame check (jobs/reframe/collcost_check.py) run by ReFrame itself with its
built-in generic system (local scheduler, local launcher): a real 2-rank sweep, fit and
comparison per run.  Skipped when reframe-hpc is not installed (extra ``reframe``)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fits import constants

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REFRAME = shutil.which("reframe", path=str(BIN)) or shutil.which("reframe")
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")

pytestmark = [pytest.mark.skipif(REFRAME is None, reason="reframe-hpc is not installed "
                                 "(pip install -e '.[reframe]')"),
              pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")]


def _reframe(tmp_path, name, *settings):
    env = dict(os.environ, RFM_TRAP_JOB_ERRORS="y", HOME=str(tmp_path))
    cmd = [REFRAME, "--nocolor", "-c", str(ROOT / "jobs" / "reframe" / "collcost_check.py"), "-r",
           "--prefix", str(tmp_path / name), "-S", f"python={sys.executable}",
           "-S", f"mpiexec={MPIEXEC} -n 2", "-S", "bootstrap=20"]
    for s in settings:
        cmd += ["-S", s]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                         cwd=ROOT)
    stage = tmp_path / name / "stage" / "generic" / "default" / "builtin" / \
        "CollcostSweepFitCheck"
    if not stage.exists():  # passing tests: their stage is cleaned, keep_files kept
        stage = tmp_path / name / "output" / "generic" / "default" / "builtin" / \
            "CollcostSweepFitCheck"
    return res, stage


def test_check_passes_then_fails_on_references_and_regressions(tmp_path):
    # 1. no reference: sweep + fit run, latency and bandwidth reported
    res, stage = _reframe(tmp_path, "plain")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "OK ] (1/1) CollcostSweepFitCheck" in res.stdout
    assert "P: latency: " in res.stdout and "P: bandwidth: " in res.stdout
    fitted = stage / "constants.json"
    assert "latency_us: " in (stage / "perf.txt").read_text()
    # 2. its own constants as the reference, lenient thresholds: passes
    ref = tmp_path / "ref.json"
    shutil.copy(fitted, ref)
    res, _ = _reframe(tmp_path, "same", f"reference_constants={ref}",
                      "tolerance=0.95", "compare_threshold=20")
    assert res.returncode == 0, res.stdout[-3000:]
    # 3. a site reference 1000x faster than anything here: performance failure
    res, _ = _reframe(tmp_path, "perf", "ref_bandwidth_GBps=1e5", "tolerance=0.2")
    assert res.returncode != 0 and "performance" in res.stdout.lower()
    # 4. a reference constants file with a 100x smaller β: regression, sanity failure
    doc = constants.load(ref)
    p2p = doc["topologies"]["intra"]["p2p"]
    p2p["beta"] /= 100
    p2p["beta_ci"] = [v / 100 for v in p2p["beta_ci"]]
    fast = tmp_path / "fast.json"
    constants.save(doc, fast)
    res, stage = _reframe(tmp_path, "regress", f"reference_constants={fast}",
                          "compare_threshold=0.5")
    assert res.returncode != 0
    assert "constants regressed against the reference" in res.stdout, res.stdout[-2500:]
    assert "REGRESSION" in (stage / "compare.txt").read_text()
    assert json.loads((stage / "compare.json").read_text())["regressions"] >= 1
