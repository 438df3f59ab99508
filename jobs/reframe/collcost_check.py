"""ReFrame check: a collcost sweep and fit, compared with a reference constants file.

Run from the collcost checkout (``reframe-hpc``, ``pip install -e '.[reframe]'``)::

    reframe -c jobs/reframe/collcost_check.py -r \\
        -S reference_constants=data/mycluster/constants.json \\
        -S python=$PWD/.venv/bin/python

What it does, in the stage directory of the test:

1. ``python -m mpi4py -m collectives.sweep SWEEP_ARGS --out sweep`` on ``num_tasks``
   ranks (2 by default), started by the partition's launcher (``srun``, ``mpirun``...);
   with a launcher that starts one process (ReFrame's ``local``) set ``mpiexec`` to a
   command that starts the ranks itself (``-S mpiexec='mpiexec -n 2'``).
2. ``python -m fits sweep --out constants.json`` (the fit; headline latency and
   bandwidth per topology) and ``jobs/reframe/perf_values.py`` (the numbers below).
3. ``python -m fits.compare REFERENCE constants.json --json compare.json`` when
   ``reference_constants`` is set.

Sanity: the fit wrote its constants, and the comparison ran (exit 0 or 1; with
``fail_on_regression`` (default) exit 0: no constant regressed past
``compare_threshold`` with disjoint intervals).

Performance variables: ``latency`` (µs, lower is better) and ``bandwidth`` (GB/s,
higher is better) of ``topology``'s headline, and ``regressions`` (count, no
reference).  References, settable per site with ``-S``: ``ref_latency_us`` and
``ref_bandwidth_GBps``; when unset, the reference constants file's headline values;
``tolerance`` the allowed fraction (latency up to ``ref × (1 + tolerance)``, bandwidth
down to ``ref × (1 − tolerance)``).  Without a reference value, the variable is only
reported.
"""
import json
import os
import shlex

import reframe as rfm
import reframe.utility.sanity as sn
from reframe.core.builtins import (performance_function, run_after, run_before,
                                   sanity_function, variable)

CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@rfm.simple_test
class CollcostSweepFitCheck(rfm.RunOnlyRegressionTest):
    descr = "collcost: sweep, fit, compare with a reference constants file"
    valid_systems = ["*"]
    valid_prog_environs = ["*"]
    tags = {"collcost", "network"}
    keep_files = ["constants.json", "perf.txt", "fit.txt", "compare.txt", "compare.json"]

    python = variable(str, value="python3")
    mpiexec = variable(str, value="")
    ranks = variable(int, value=2)
    sweep_args = variable(str, value="--collectives pingpong --sizes "
                                     "8,64,512,4096,262144,1M,4M,8M --target-ci 0.05 "
                                     "--time-budget 0.5")
    topology = variable(str, value="intra")
    bootstrap = variable(int, value=100)
    reference_constants = variable(str, value="")
    ref_latency_us = variable(float, type(None), value=None)
    ref_bandwidth_GBps = variable(float, type(None), value=None)
    tolerance = variable(float, value=0.5)
    compare_threshold = variable(float, value=0.5)
    fail_on_regression = variable(bool, value=True)

    @run_after("init")
    def set_command(self):
        self.num_tasks = 1 if self.mpiexec else self.ranks
        self.env_vars = {"PYTHONPATH": CHECKOUT + os.pathsep + "$PYTHONPATH"}
        sweep = (f"{self.python} -m mpi4py -m collectives.sweep {self.sweep_args} "
                 "--out sweep")
        if self.mpiexec:
            self.executable = f"{self.mpiexec} {sweep}"
        else:
            self.executable = sweep
        py = shlex.quote(self.python)
        self.postrun_cmds = [
            f"{py} -m fits sweep --out constants.json --bootstrap {self.bootstrap} "
            "> fit.txt 2>&1",
            f"{py} {shlex.quote(os.path.join(CHECKOUT, 'jobs', 'reframe', 'perf_values.py'))}"
            f" constants.json {shlex.quote(self.topology)} > perf.txt",
        ]
        if self.reference_constants:
            ref = shlex.quote(os.path.abspath(self.reference_constants))
            self.postrun_cmds.append(
                f"{py} -m fits.compare {ref} constants.json --threshold "
                f"{self.compare_threshold} --json compare.json > compare.txt 2>&1 "
                "&& code=0 || code=$?; echo \"compare_exit: $code\" >> compare.txt")

    @run_before("performance")
    def set_references(self):
        lat, bw = self.ref_latency_us, self.ref_bandwidth_GBps
        if self.reference_constants and (lat is None or bw is None):
            doc = json.loads(open(self.reference_constants, encoding="utf-8").read())
            head = (doc.get("topologies", {}).get(self.topology) or {}).get("headline") or {}
            if lat is None and (head.get("latency") or {}).get("value"):
                lat = head["latency"]["value"] * 1e6
            if bw is None and (head.get("bandwidth") or {}).get("value"):
                bw = head["bandwidth"]["value"] * 1e-9
        ref = {}
        if lat is not None:
            ref["latency"] = (lat, None, self.tolerance, "us")
        if bw is not None:
            ref["bandwidth"] = (bw, -self.tolerance, None, "GB/s")
        if ref:
            self.reference = {"*": ref}

    @sanity_function
    def validate(self):
        checks = [sn.assert_found(r"^latency_us: \S+", "perf.txt"),
                  sn.assert_found(r"^bandwidth_GBps: \S+", "perf.txt")]
        if self.reference_constants:
            code = sn.extractsingle(r"^compare_exit: (\d+)", "compare.txt", 1, int)
            checks.append(sn.assert_ne(code, 2, msg="fits.compare refused its inputs "
                                                    "(see compare.txt)"))
            if self.fail_on_regression:
                checks.append(sn.assert_eq(code, 0, msg="constants regressed against "
                                                        "the reference (compare.txt)"))
        return sn.all(checks)

    @performance_function("us")
    def latency(self):
        return sn.extractsingle(r"^latency_us: (\S+)", "perf.txt", 1, float)

    @performance_function("GB/s")
    def bandwidth(self):
        return sn.extractsingle(r"^bandwidth_GBps: (\S+)", "perf.txt", 1, float)

    @performance_function("count")
    def regressions(self):
        if not self.reference_constants:
            return 0
        return sn.extractsingle(r"^(\d+) regression\(s\)|^no regression", "compare.txt",
                                1, lambda s: int(s) if s else 0)
