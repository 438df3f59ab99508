"""Review of issue 10, minor points: the constants file says what p2p.alpha is, γ's
identifiable flag agrees with its status, the path-bytes formula lives in
collectives/costs.py, `python -m fits ... | head` exits quietly, --wide's help is true."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from collectives import costs
from fits import constants, joint, summary, synthetic
from fits.fit import FitOptions, fit_points

ROOT = Path(__file__).resolve().parents[1]


def _fit(truth, entries, bootstrap=40):
    rows = synthetic.synthetic_points(truth, entries, sizes=(0, 8, 1024, 65536, 1 << 20),
                                      ranks=(2, 3), seed=2, noise=0.05)
    return fit_points(pd.DataFrame(rows), FitOptions(bootstrap=bootstrap)).constants


def test_p2p_alpha_says_what_it_is():
    c = _fit(synthetic.Truth(), [("pingpong", "native")], bootstrap=0)
    p2p = c["topologies"]["intra"]["p2p"]
    assert "largest-size segment" in p2p["alpha_note"]
    assert "headline.latency" in p2p["alpha_note"]
    desc = constants.schema()["$defs"]["hockney"]["properties"]["alpha"]["description"]
    assert "not a latency" in desc
    constants.validate(c)


def test_kernel_gamma_identifiable_agrees_with_status():
    # γ ~ 0: the kernel's interval contains 0, so it is not identified, and the flag
    # must not say identifiable
    c = _fit(synthetic.Truth(gamma=1e-16),
             [("pingpong", "native"), ("reduce_local", "native")])
    g = c["topologies"]["intra"]["gamma"]
    assert g["source"] == "reduce_local"
    assert g["status"] != "identified"
    assert g["identifiable"] is False
    c = _fit(synthetic.Truth(), [("pingpong", "native"), ("reduce_local", "native")])
    g = c["topologies"]["intra"]["gamma"]
    assert g["identifiable"] is (g["status"] == "identified")


def test_path_bytes_formula_in_costs():
    p, n = np.array([2, 3, 4, 8]), np.array([1024.0, 4096.0, 1 << 20, 7.0])
    _, b, _ = costs.coefficients("allreduce", "ring", p)
    np.testing.assert_allclose(costs.path_bytes("allreduce", "ring", p, n), b * n)
    np.testing.assert_allclose(joint.regime_bytes("path", "allreduce", "ring", p, n),
                               costs.path_bytes("allreduce", "ring", p, n))
    np.testing.assert_allclose(costs.hockney(n, 1e-6, 1e-9), 1e-6 + n * 1e-9)


def test_fits_piped_into_head_exits_quietly(tmp_path):
    rows = synthetic.synthetic_points(synthetic.Truth(), [("pingpong", "native"),
                                                          ("allreduce", "ring")],
                                      ranks=(2, 3), seed=1)
    run = synthetic.write_run(tmp_path / "run", rows)
    out = tmp_path / "c.json"
    cmd = (f"{sys.executable} -m fits {run} --out {out} --bootstrap 5 --wide "
           "| head -c 1")
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert res.returncode == 0, res.stderr
    constants.load(out)


def test_wide_help_tells_the_width():
    res = subprocess.run([sys.executable, "-m", "fits", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    text = " ".join(res.stdout.split())
    assert "about 270-340 characters wide" in text
    c = json.loads((ROOT / "data/example-native-check-4x1/constants-all.json").read_text())
    width = max(len(line) for line in summary.format_summary(c, wide=True).splitlines())
    assert 270 <= width <= 340
