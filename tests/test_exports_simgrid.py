"""The SimGrid export in the real SimGrid (Debian's 3.32: python3-simgrid, smpirun).

* Every platform export is loaded by SimGrid's own S4U engine (the system python3 with
  the ``simgrid`` bindings, tests/simgrid/s4u_pingpong.py) and one-way transfers of
  8 B-8 MiB are simulated on the same host (loopback = intra topology) and between hosts
  (inter topology): each within 5% of collcost's own point-to-point prediction
  (``fits.predict.topology.p2p_time``).
* A small C program (tests/simgrid/allreduce.c) built with ``smpicc`` runs under
  ``smpirun`` with the export's SMPI options and ``--cfg=smpi/allreduce:lr`` (logical
  ring): its MPI_Allreduce times are within 10% of collcost's ring prediction from the
  same constants; its ping-pong is within 5% from 1 KiB up.

The simulated application's own computation is not timed
(``--cfg=smpi/simulate-computation:no``), so the prediction uses γ = 0.  Without SimGrid
these tests skip with the reason; .ci/run installs it, so CI runs them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import predict_fixtures as fx
from collectives import costs
from fits.constants import save
from fits.predict import main, topology

HERE = Path(__file__).parent / "simgrid"
DATA = Path(__file__).parent.parent / "data"
SYSTEM_PYTHON = "/usr/bin/python3"
SIZES = [8 * 4 ** k for k in range(11)]  # 8 B .. 8 MiB
AR_SIZES = [98304, 1572864, 6291456]     # 96 KiB, 1.5 MiB, 6 MiB: divisible by 8·p


def _simgrid_python() -> str | None:
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", "import simgrid"], capture_output=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return SYSTEM_PYTHON if r.returncode == 0 else None


S4U = _simgrid_python()
SMPI = shutil.which("smpirun") and shutil.which("smpicc")
need_s4u = pytest.mark.skipif(S4U is None, reason="SimGrid's Python bindings are not "
                              "installed (apt-get install python3-simgrid; .ci/run does)")
need_smpi = pytest.mark.skipif(not SMPI, reason="smpirun/smpicc are not installed "
                               "(apt-get install simgrid; .ci/run does)")


def headline_fixture():
    """Constants with headlines (latency, bandwidth) that differ from the segments."""
    doc = fx.two_level(q=2, nodes=2)
    for name, lat, bw in (("intra", 4e-7, 2.5e10), ("inter", 1.5e-5, 1.2e8)):
        doc["topologies"][name]["headline"] = {
            key: {"value": v, "ci": [v * 0.9, v * 1.1], "status": "identified",
                  "bytes_range": r, "ranks": [2], "note": "fixture"}
            for key, v, r in (("latency", lat, [8, 4096]),
                              ("bandwidth", bw, [131072, 8388608]))}
    return doc


CASES = {
    # name: (constants loader, export options, nodes, ranks per node)
    "emulated-2x2": (lambda: json.loads((DATA / "example-emulated-2x2" /
                                          "constants-2x2.json").read_text()), [], 2, 2),
    "emulated-3x2": (lambda: json.loads((DATA / "example-emulated-2x2" /
                                          "constants-2x2.json").read_text()),
                     ["--nodes", "3"], 3, 2),
    "one-host": (lambda: json.loads((DATA / "example-2rank" /
                                      "constants.json").read_text()),
                 ["--ranks-per-node", "3"], 1, 3),
    "headline-2x2": (headline_fixture, [], 2, 2),
}


def export(tmp_path, case):
    load, options, nodes, q = CASES[case]
    doc = load()
    src = save(doc, tmp_path / "constants.json")
    out = tmp_path / "platform.xml"
    assert main(["export", str(src), "--target", "simgrid", "-o", str(out)] + options) == 0
    return doc, out


def links_of(doc):
    return {name: topology.link(doc, name) for name in ("intra", "inter")
            if name in doc["topologies"]}


def deviation(got, want):
    return np.abs(np.asarray(got) / np.asarray(want) - 1)


@need_s4u
@pytest.mark.parametrize("case", sorted(CASES))
def test_s4u_point_to_point_within_5_percent(tmp_path, case):
    doc, platform = export(tmp_path, case)
    _, _, nodes, q = CASES[case]
    lk = links_of(doc)
    pairs = []
    if q > 1:
        pairs.append(("intra", "node-0", "node-0"))
    if nodes > 1:
        pairs.append(("inter", "node-0", f"node-{nodes - 1}"))
    assert pairs
    for name, src, dst in pairs:
        r = subprocess.run([S4U, str(HERE / "s4u_pingpong.py"), str(platform), src, dst]
                           + [str(n) for n in SIZES], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        sim = json.loads(r.stdout)["seconds"]
        want = topology.p2p_time(lk[name], np.asarray(SIZES, dtype=float))
        dev = deviation(sim, want)
        assert dev.max() <= 0.05, (name, list(zip(SIZES, sim, want)))


@pytest.fixture(scope="module")
def allreduce_binary(tmp_path_factory):
    if not SMPI:
        pytest.skip("smpicc is not installed (apt-get install simgrid; .ci/run does)")
    exe = tmp_path_factory.mktemp("smpi") / "allreduce"
    r = subprocess.run(["smpicc", "-O1", "-o", str(exe), str(HERE / "allreduce.c")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return exe


def smpirun(platform, exe, *args):
    opts = Path(f"{platform}.smpi.cfg").read_text().split()
    cmd = (["smpirun"] + opts + ["--cfg=smpi/simulate-computation:no",
                                 "--cfg=smpi/allreduce:lr", "--log=root.thres:warning",
                                 "-platform", str(platform), "-hostfile",
                                 f"{platform}.hostfile", str(exe)] + [str(a) for a in args])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-2000:])
    return [line.split() for line in r.stdout.splitlines() if line.strip()]


@need_smpi
@pytest.mark.parametrize("case", sorted(CASES))
def test_smpi_ring_allreduce_within_10_percent(tmp_path, case, allreduce_binary):
    doc, platform = export(tmp_path, case)
    _, _, nodes, q = CASES[case]
    rows = smpirun(platform, allreduce_binary, *AR_SIZES)
    sim = {int(r[1]): float(r[2]) for r in rows if r[0] == "allreduce"}
    assert sorted(sim) == AR_SIZES
    n = np.asarray(AR_SIZES, dtype=float)
    want = topology.flat_time(doc, "allreduce", "ring", nodes, q, n, gamma=False)
    dev = deviation([sim[s] for s in AR_SIZES], want)
    assert dev.max() <= 0.10, list(zip(AR_SIZES, [sim[s] for s in AR_SIZES], want))


@need_smpi
def test_smpi_point_to_point(tmp_path, allreduce_binary):
    doc, platform = export(tmp_path, "emulated-2x2")
    lk = links_of(doc)
    sizes = [n for n in SIZES if n >= 1024]
    rows = smpirun(platform, allreduce_binary, "pingpong", *sizes)
    got = {}
    for _, peer, n, t in (r for r in rows if r[0] == "pingpong"):
        got.setdefault(int(peer), []).append(float(t))
    # ranks 0, 1 on node-0 (intra), 2, 3 on node-1 (inter)
    for peer, name in ((1, "intra"), (2, "inter"), (3, "inter")):
        want = topology.p2p_time(lk[name], np.asarray(sizes, dtype=float))
        dev = deviation(got[peer], want)
        assert dev.max() <= 0.05, (name, list(zip(sizes, got[peer], want)))


def test_ring_prediction_is_the_registry_formula():
    """flat_time: the ring's steps are paced by the slowest link a step crosses."""
    doc = headline_fixture()
    lk = links_of(doc)
    n = 3 * 2 ** 20
    inter = lk["inter"]
    want = costs.predict("allreduce", "ring", 4, n, inter.latency, inter.beta, inter.gamma)
    assert topology.flat_time(doc, "allreduce", "ring", 2, 2, n) == pytest.approx(want)
    intra = lk["intra"]
    want = costs.predict("allreduce", "ring", 3, n, intra.latency, intra.beta, 0.0)
    assert topology.flat_time(doc, "allreduce", "ring", 1, 3, n, gamma=False) == \
        pytest.approx(want)
