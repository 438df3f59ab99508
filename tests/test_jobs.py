"""Cluster job scripts (jobs/slurm, jobs/pbs, jobs/lib): syntax, directives, commands.

The scripts run here with fake ``srun``/``mpiexec``/``python`` that record their
arguments, so the commands a real cluster would run are checked one by one; one test
runs the Slurm script for real on an emulated 2-node cluster (fake ``srun`` ->
``collectives.emulate``): real sweeps, merge and fit.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collectives import emulate

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "jobs" / "slurm" / "collcost.sbatch"
PBS = ROOT / "jobs" / "pbs" / "collcost.pbs"
LIB = ROOT / "jobs" / "lib" / "collcost-job.sh"
SCRIPTS = [SBATCH, PBS, LIB, ROOT / "jobs" / "emulate"]

# Records its name and arguments as one JSON line in $FAKE_LOG; as a launcher (srun,
# mpiexec) it then runs the command after its options; as python it creates what the
# real program would write, so the job's skip/resume logic sees real files.
FAKE = r'''#!PYTHON
import json, os, sys
from pathlib import Path
name, args = Path(sys.argv[0]).name, sys.argv[1:]
entry = {"tool": name, "args": args}
if name == "mpiexec" and "-f" in args:
    entry["hosts"] = Path(args[args.index("-f") + 1]).read_text().split()
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\n")
if name in ("srun", "mpiexec"):
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1 if (name == "srun" or "=" in args[i]) else 2
    if name == "srun" and os.environ.get("FAKE_SRUN_FAIL") == "1":
        sys.exit(1)
    os.execvp(args[i], args[i:])
def after(flag):
    return Path(args[args.index(flag) + 1]) if flag in args else None
if "collectives.sweep" in args:
    out = after("--out") or after("--resume")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.json").write_text("{}")
    (out / "points.csv").write_text("x\n")
elif "collectives.merge" in args:
    after("--out").mkdir(parents=True)
    (after("--out") / "points.csv").write_text("x\n")
elif "fits" in args:
    after("--out").write_text("{}")
'''


@pytest.fixture
def fakes(tmp_path):
    """A bin directory of fake tools and the log they write."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("srun", "mpiexec", "python3"):
        (bindir / tool).write_text(FAKE.replace("PYTHON", sys.executable, 1))
        (bindir / tool).chmod(0o755)
    return bindir, tmp_path / "calls.jsonl"


def run_job(script, fakes, tmp_path, env, timeout=60):
    bindir, log = fakes
    full = {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
            "COLLCOST_DIR": str(ROOT), "COLLCOST_PYTHON": str(bindir / "python3"),
            "COLLCOST_OUT": str(tmp_path / "out"), "HOME": str(tmp_path)}
    full.update(env)
    p = subprocess.run(["timeout", str(timeout), "bash", str(script)], capture_output=True,
                       text=True, env=full, cwd=tmp_path)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return p, calls


def module_of(call):
    """The Python module a python3 call runs (after -m mpi4py when present)."""
    args = call["args"]
    mods = [args[i + 1] for i, a in enumerate(args) if a == "-m"]
    return mods[-1] if mods else None


def directives(script, prefix):
    return [line[len(prefix):].strip() for line in script.read_text().splitlines()
            if line.startswith(prefix)]


class TestSyntax:
    @pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
    def test_bash_parses(self, script):
        p = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr

    @pytest.mark.parametrize("script", [SBATCH, PBS, ROOT / "jobs" / "emulate"], ids=lambda p: p.name)
    def test_executable(self, script):
        assert os.access(script, os.X_OK)

    def test_sbatch_directives(self):
        opts = dict(d.lstrip("-").split("=", 1) if "=" in d else (d.lstrip("-"), True)
                    for d in directives(SBATCH, "#SBATCH"))
        assert int(opts["nodes"]) >= 2 and int(opts["ntasks-per-node"]) >= 2
        assert re.fullmatch(r"\d+:\d\d:\d\d", opts["time"]) and opts["exclusive"] is True
        assert set(opts) <= {"job-name", "nodes", "ntasks-per-node", "exclusive", "time", "output"}

    def test_pbs_directives(self):
        lines = directives(PBS, "#PBS")
        res = {}
        for d in lines:
            if d.startswith("-l select="):  # chunk: select=N:res=v:res=v
                res.update(item.split("=", 1) for item in d[3:].split(":"))
            elif d.startswith("-l "):
                res.update([d[3:].split("=", 1)])
        assert int(res["select"]) >= 2 and int(res["mpiprocs"]) >= 2
        assert res["ncpus"] == res["mpiprocs"]
        assert re.fullmatch(r"\d+:\d\d:\d\d", res["walltime"])
        assert "-N collcost" in lines and "-j oe" in lines


class TestSlurmCommands:
    ENV = {"SLURM_JOB_NUM_NODES": "4", "SLURM_NTASKS_PER_NODE": "8(x4)", "SLURM_JOB_ID": "77",
           "COLLCOST_LAUNCHES": "2", "COLLCOST_SWEEP_ARGS": "--collectives allreduce --quick"}

    def test_launches_merge_fit_world(self, fakes, tmp_path):
        p, calls = run_job(SBATCH, fakes, tmp_path, self.ENV)
        assert p.returncode == 0, p.stderr
        out = tmp_path / "out"
        sruns = [c for c in calls if c["tool"] == "srun"]
        assert len(sruns) == 3
        for c in sruns:
            assert c["args"][:4] == ["--nodes=4", "--ntasks=32", "--ntasks-per-node=8",
                                     "--kill-on-bad-exit=1"]
        sweeps = [c["args"][c["args"].index("collectives.sweep") + 1:] for c in sruns]
        assert sweeps[0] == ["--out", f"{out}/launch-1", "--topology", "auto",
                             "--collectives", "allreduce", "--quick"]
        assert sweeps[1][:2] == ["--out", f"{out}/launch-2"]
        # the world check: 1, 2 and 4 whole nodes; its options win over the user's
        assert sweeps[2] == ["--out", f"{out}/world", "--collectives", "allreduce", "--quick",
                             "--topology", "world", "--ranks", "8,16,32", "--collectives",
                             "allreduce", "--algorithms", "all"]
        assert all("-m" in c["args"] and "mpi4py" in c["args"] for c in sruns)
        pys = [c for c in calls if c["tool"] == "python3" and module_of(c) != "collectives.sweep"]
        assert [module_of(c) for c in pys] == ["collectives.merge", "fits"]
        assert pys[0]["args"][2:] == [f"{out}/launch-1", f"{out}/launch-2", "--out", f"{out}/merged"]
        assert pys[1]["args"][2:] == [f"{out}/merged", "--out", f"{out}/constants.json",
                                      "--overwrite"]
        # order: sweeps, merge, fit, then the world check
        order = [module_of(c) if c["tool"] == "python3" else "srun" for c in calls]
        assert order.index("fits") < len(order) - 2 and order[-1] == "collectives.sweep"

    def test_resubmission_resumes_and_skips(self, fakes, tmp_path):
        out = tmp_path / "out"
        (out / "launch-1").mkdir(parents=True)
        (out / "launch-1" / "metadata.json").write_text("{}")
        (out / "launch-1" / "points.csv").write_text("x\n")  # complete
        (out / "launch-2").mkdir()
        (out / "launch-2" / "metadata.json").write_text("{}")  # interrupted
        p, calls = run_job(SBATCH, fakes, tmp_path, dict(self.ENV, COLLCOST_WORLD="0"))
        assert p.returncode == 0, p.stderr
        sweeps = [c["args"] for c in calls if c["tool"] == "python3"
                  and module_of(c) == "collectives.sweep"]
        assert len(sweeps) == 1 and sweeps[0][-2:] == ["--resume", f"{out}/launch-2"]
        assert "launch-1 complete, skipped" in p.stderr

    def test_failed_step_stops_the_job(self, fakes, tmp_path):
        p, calls = run_job(SBATCH, fakes, tmp_path, dict(self.ENV, FAKE_SRUN_FAIL="1"))
        assert p.returncode != 0
        assert not any(module_of(c) == "fits" for c in calls if c["tool"] == "python3")

    @pytest.mark.parametrize("env, word", [({"COLLCOST_LAUNCHES": "0"}, "COLLCOST_LAUNCHES"),
                                           ({"COLLCOST_LAUNCHES": "x"}, "COLLCOST_LAUNCHES"),
                                           ({"SLURM_JOB_NUM_NODES": "1",
                                             "SLURM_NTASKS_PER_NODE": "1"}, "nothing to measure")])
    def test_bad_settings_exit_2(self, fakes, tmp_path, env, word):
        p, calls = run_job(SBATCH, fakes, tmp_path, dict(self.ENV, **env))
        assert p.returncode == 2 and word in p.stderr
        assert calls == []

    def test_outside_an_allocation(self, fakes, tmp_path):
        p, _ = run_job(SBATCH, fakes, tmp_path, {})
        assert p.returncode != 0 and "not inside a Slurm allocation" in p.stderr


class TestPbsCommands:
    def test_hostfile_ranks_and_steps(self, fakes, tmp_path):
        nodefile = tmp_path / "nodefile"
        nodefile.write_text("".join(f"node{i}\n" * 4 for i in range(3)))
        p, calls = run_job(PBS, fakes, tmp_path, {"PBS_NODEFILE": str(nodefile),
                                                  "PBS_JOBID": "12.server",
                                                  "COLLCOST_LAUNCHES": "1"})
        assert p.returncode == 0, p.stderr
        runs = [c for c in calls if c["tool"] == "mpiexec"]
        assert len(runs) == 2
        for c in runs:
            assert c["args"][2:6] == ["-n", "12", "-ppn", "4"]
            assert c["hosts"] == ["node0", "node1", "node2"]
        out = tmp_path / "out"
        assert f"{out}/launch-1" in runs[0]["args"] and "auto" in runs[0]["args"]
        assert "4,8,12" in runs[1]["args"]  # world: 1, 2 and all 3 nodes
        fits_calls = [c for c in calls if c["tool"] == "python3" and module_of(c) == "fits"]
        assert fits_calls[0]["args"][2:] == [f"{out}/launch-1", "--out", f"{out}/constants.json",
                                              "--overwrite"]
        assert not any(module_of(c) == "collectives.merge" for c in calls if c["tool"] == "python3")

    def test_outside_a_job(self, fakes, tmp_path):
        p, _ = run_job(PBS, fakes, tmp_path, {})
        assert p.returncode != 0 and "not inside a PBS job" in p.stderr


try:
    emulate.check_available()
    UNAVAILABLE = None
except emulate.EmulationUnavailable as exc:
    UNAVAILABLE = str(exc)

# srun stand-in that starts the step on an emulated cluster: --nodes hosts, and
# --ntasks-per-node ranks on each.
EMULATED_SRUN = """#!/bin/sh
nodes=1; ppn=1
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes=*) nodes=${1#--nodes=} ;;
    --ntasks-per-node=*) ppn=${1#--ntasks-per-node=} ;;
    --*) ;;
    *) break ;;
  esac
  shift
done
exec "%s" -m collectives.emulate --hosts "$nodes" --ranks-per-host "$ppn" --rate 500mbit \\
  --timeout 120 -- "$@"
"""


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")
def test_slurm_job_on_an_emulated_cluster(tmp_path):
    """The real job: 2 launches on 2 emulated nodes x 2 ranks, merged and fitted."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(EMULATED_SRUN % sys.executable)
    (bindir / "srun").chmod(0o755)
    out = tmp_path / "out"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", PYTHONPATH=str(ROOT),
               SLURM_JOB_NUM_NODES="2", SLURM_NTASKS_PER_NODE="2", SLURM_JOB_ID="1",
               COLLCOST_DIR=str(ROOT), COLLCOST_PYTHON=sys.executable, COLLCOST_OUT=str(out),
               COLLCOST_LAUNCHES="2", COLLCOST_WORLD="0", COLLCOST_FIT_ARGS="--bootstrap 0",
               COLLCOST_SWEEP_ARGS="--collectives pingpong --sizes 8,256K "
                                   "--time-budget 0.02 --min-reps 3 --point-timeout 30")
    p = subprocess.run(["timeout", "400", "bash", str(SBATCH)], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    consts = json.loads((out / "constants.json").read_text())
    assert set(consts["topologies"]) == {"intra", "inter"}
    assert consts["topologies"]["inter"]["nodes"] == 2
    meta = json.loads((out / "merged" / "metadata.json").read_text())
    assert meta["nodes"] == 2 and meta["ranks_per_node"] == 2
    assert len(meta["launches"]) == 2
