"""SimGrid export vs collcost's own prediction, side by side (needs Debian's SimGrid).

For a constants file (default: the committed emulated 2 x 2 example), exports the
SimGrid platform, then prints for each size:

* point-to-point, S4U (SimGrid's own engine through its Python bindings, /usr/bin/python3):
  same host (loopback = intra) and between hosts (inter), simulated vs
  ``fits.predict.topology.p2p_time``;
* point-to-point under ``smpirun`` (the C program tests/simgrid/allreduce.c, ping-pong);
* MPI_Allreduce under ``smpirun --cfg=smpi/allreduce:lr`` vs the ring prediction
  ``fits.predict.topology.flat_time`` (γ = 0: the simulation does not time computation).

The simulation is deterministic: the numbers do not depend on the load of the machine.

    .venv/bin/python benchmarks/bench_simgrid_exports.py [CONSTANTS] [--nodes N]
        [--ranks-per-node Q]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fits.constants import load  # noqa: E402
from fits.predict import main as predict_main  # noqa: E402
from fits.predict import topology  # noqa: E402

SIZES = [8 * 4 ** k for k in range(11)]
AR_SIZES = [98304, 1572864, 6291456]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode:
        sys.exit(f"{cmd[0]} failed: {r.stderr[-1000:]}")
    return r.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("constants", nargs="?", type=Path,
                    default=ROOT / "data" / "example-emulated-2x2" / "constants-2x2.json")
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--ranks-per-node", type=int)
    args = ap.parse_args(argv)
    if not (shutil.which("smpirun") and shutil.which("smpicc")):
        sys.exit("smpirun/smpicc not found: apt-get install simgrid python3-simgrid")
    doc = load(args.constants)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        platform = tmp / "platform.xml"
        extra = []
        if args.nodes:
            extra += ["--nodes", str(args.nodes)]
        if args.ranks_per_node:
            extra += ["--ranks-per-node", str(args.ranks_per_node)]
        if predict_main(["export", str(args.constants), "--target", "simgrid", "-o",
                         str(platform)] + extra):
            return 2
        hosts = Path(f"{platform}.hostfile").read_text().split()
        nodes, q = len(hosts), int(hosts[0].split(":")[1])
        links = {n: topology.link(doc, n) for n in ("intra", "inter")
                 if n in doc["topologies"]}
        print(f"# {args.constants}: {nodes} node(s) x {q} rank(s)")
        for name, lk in links.items():
            print(f"# {lk.describe()}")
        print("\nPoint-to-point, S4U (one put per size)")
        print(f"{'link':>6} {'bytes':>9} {'simgrid s':>12} {'collcost s':>12} {'dev %':>7}")
        pairs = ([("intra", "node-0", "node-0")] if q > 1 else []) + \
            ([("inter", "node-0", f"node-{nodes - 1}")] if nodes > 1 else [])
        worst = {}
        for name, src, dst in pairs:
            out = json.loads(run(["/usr/bin/python3", str(ROOT / "tests" / "simgrid" /
                                                          "s4u_pingpong.py"),
                                  str(platform), src, dst] + [str(n) for n in SIZES]))
            want = topology.p2p_time(links[name], np.asarray(SIZES, dtype=float))
            for n, got, w in zip(SIZES, out["seconds"], want):
                dev = (got / w - 1) * 100
                worst[f"s4u {name}"] = max(worst.get(f"s4u {name}", 0), abs(dev))
                print(f"{name:>6} {n:>9} {got:>12.6g} {w:>12.6g} {dev:>7.3f}")
        exe = tmp / "allreduce"
        run(["smpicc", "-O1", "-o", str(exe), str(ROOT / "tests" / "simgrid" /
                                                    "allreduce.c")])
        base = (["smpirun"] + Path(f"{platform}.smpi.cfg").read_text().split()
                + ["--cfg=smpi/simulate-computation:no", "--cfg=smpi/allreduce:lr",
                   "--log=root.thres:warning", "-platform", str(platform), "-hostfile",
                   f"{platform}.hostfile", str(exe)])
        print("\nPoint-to-point, smpirun ping-pong (rank 0 to each peer)")
        print(f"{'peer':>6} {'link':>6} {'bytes':>9} {'smpi s':>12} {'collcost s':>12} "
              f"{'dev %':>7}")
        for line in run(base + ["pingpong"] + [str(n) for n in SIZES]).splitlines():
            _, peer, n, got = line.split()
            name = "intra" if int(peer) < q else "inter"
            w = float(topology.p2p_time(links[name], float(n)))
            dev = (float(got) / w - 1) * 100
            key = f"smpi {name}" + (" >= 1 KiB" if int(n) >= 1024 else " < 1 KiB")
            worst[key] = max(worst.get(key, 0), abs(dev))
            print(f"{peer:>6} {name:>6} {n:>9} {float(got):>12.6g} {w:>12.6g} {dev:>7.3f}")
        print("\nMPI_Allreduce, smpirun --cfg=smpi/allreduce:lr vs collcost ring (γ = 0)")
        print(f"{'bytes':>9} {'smpi s':>12} {'collcost s':>12} {'dev %':>7}")
        for line in run(base + [str(n) for n in AR_SIZES]).splitlines():
            _, n, got = line.split()
            w = float(topology.flat_time(doc, "allreduce", "ring", nodes, q, float(n),
                                         gamma=False))
            dev = (float(got) / w - 1) * 100
            worst["smpi allreduce lr"] = max(worst.get("smpi allreduce lr", 0), abs(dev))
            print(f"{n:>9} {float(got):>12.6g} {w:>12.6g} {dev:>7.3f}")
        print("\nLargest |deviation| %: " + ", ".join(f"{k} {v:.3f}"
                                                      for k, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
