"""The emulated cluster (collectives/emulate.py): namespaces as hosts, for real.

Tests that build namespaces need root and ``ip netns``; they skip with the reason
:func:`collectives.emulate.check_available` gives where those are missing.  Every MPI
launch runs under a timeout.  Links run at 500 Mbit/s so multi-MiB messages stay fast.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from collectives import emulate
from collectives.emulate import EmulatedCluster, parse_rate, parse_size

ROOT = Path(__file__).resolve().parents[1]
RATE = "500mbit"
ENV = {"PYTHONPATH": str(ROOT)}

try:
    emulate.check_available()
    UNAVAILABLE = None
except emulate.EmulationUnavailable as exc:
    UNAVAILABLE = str(exc)

needs_netns = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")

# Each rank reports its host name, processor name and shared-memory domain; rank 0
# prints them with the layout collectives.topology detects.
HOSTCHECK = """
import json, socket
from collectives.mpi import MPI
from collectives import topology
comm = MPI.COMM_WORLD
shared = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
row = (socket.gethostname(), MPI.Get_processor_name(), shared.size, shared.bcast(comm.rank))
rows = comm.gather(row)
layout = topology.detect(comm)
if comm.rank == 0:
    print(json.dumps({"rows": rows, "hosts": layout.hosts, "nodes": layout.nodes,
                      "ranks_per_node": layout.ranks_per_node}))
"""

# Ping-pong between rank 0 and rank PEER; best half round trip per size.
PINGPONG = """
import json, sys
import numpy as np
from collectives.mpi import MPI
comm = MPI.COMM_WORLD
peer, sizes = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",")]
best = {}
for n in sizes:
    buf = np.full(n, 7, np.uint8)
    times = []
    for _ in range(3):
        comm.Barrier()
        t = MPI.Wtime()
        if comm.rank == 0:
            comm.Send(buf, peer); comm.Recv(buf, peer)
        elif comm.rank == peer:
            comm.Recv(buf, 0); buf[:] = 7; comm.Send(buf, 0)
        times.append((MPI.Wtime() - t) / 2)
    assert (buf == 7).all()
    best[n] = min(times)
if comm.rank == 0:
    print(json.dumps(best))
"""

# Barriers for a while: a job that is still running when a fault is injected.
SLOW = """
import time
from collectives.mpi import MPI
for _ in range(300):
    MPI.COMM_WORLD.Barrier()
    time.sleep(0.05)
"""


@pytest.fixture
def program(tmp_path):
    def write(text, name="prog.py"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return [sys.executable, str(path)]
    return write


def our_namespaces(tag):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(tag)]


def cli(*args, timeout=60, **kw):
    env = dict(os.environ, **ENV)
    return subprocess.run(["timeout", "-k", "5", str(timeout), sys.executable, "-m",
                           "collectives.emulate", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, **kw)


# -- pure parts ------------------------------------------------------------------------
class TestParseRate:
    @pytest.mark.parametrize("text, bps", [("200mbit", 200e6), ("1gbit", 1e9), ("500kbit", 5e5),
                                           ("25mbps", 200e6), ("1mibit", 2 ** 20), ("1e6", 1e6),
                                           (3e8, 3e8), ("1.5Gbit", 1.5e9)])
    def test_units(self, text, bps):
        assert parse_rate(text) == pytest.approx(bps)

    @pytest.mark.parametrize("bad", ["fast", "200 mbits", "-5mbit", "0", "", True])
    def test_rejects(self, bad):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)


class TestParseSize:
    def test_units(self):
        assert parse_size("64kb") == 65536 and parse_size(4096) == 4096 and parse_size("1m") == 2 ** 20

    @pytest.mark.parametrize("bad", ["big", "10", 100, "1gb"])
    def test_rejects(self, bad):
        with pytest.raises(ValueError, match="burst"):
            parse_size(bad)


class TestClusterArguments:
    @pytest.mark.parametrize("kw, word", [({"hosts": 0}, "hosts"), ({"hosts": 251}, "hosts"),
                                          ({"hosts": 2.0}, "hosts"),
                                          ({"hosts": 2, "ranks_per_host": 0}, "ranks_per_host"),
                                          ({"hosts": 2, "rate": "x"}, "rate")])
    def test_rejects(self, kw, word):
        with pytest.raises(ValueError, match=word):
            EmulatedCluster(**kw)

    def test_unique_names_and_command(self):
        a, b = EmulatedCluster(3, 2), EmulatedCluster(3, 2)
        assert a.tag != b.tag and not set(a.hosts_ns) & set(b.hosts_ns)
        a.launcher = Path("/x/ssh")
        cmd = a.mpiexec_command(["prog"], hosts=[0, a.hosts_ns[2]])
        text = " ".join(cmd)
        assert f"-hosts {a.hosts_ns[0]},{a.hosts_ns[2]} -ppn 2 -n 4" in text
        assert "-genv UCX_TLS tcp" in text and "-launcher-exec /x/ssh" in text
        assert cmd[-1] == "prog"
        with pytest.raises(ValueError, match="host"):
            a.mpiexec_command(["prog"], hosts=["nowhere"])
        with pytest.raises(ValueError, match="command"):
            a.mpiexec_command([])


class TestHeterogeneousLayout:
    def test_rates_and_switches(self):
        c = EmulatedCluster(4, 1, "40mbit", host_rates={1: "20mbit"},
                            link_rates={(2, 0): "10mbit"}, switches=2, trunk_rate="30mbit")
        assert c.switch_of == [0, 0, 1, 1] and c.switches == 2
        assert c.host_bps == [40e6, 20e6, 40e6, 40e6] and c.link_bps == {(0, 2): 10e6}
        assert c.link_rate(0, 2) == c.link_rate(2, 0) == 10e6  # the pair's own rate
        assert c.link_rate(0, 1) == 20e6  # host 1's rate
        assert c.link_rate(0, 3) == 30e6  # across the trunk
        assert c.link_rate(2, 3) == 40e6
        text = c.describe()
        assert "2 switch(es)" in text and "link 0-2: 10 Mbit/s" in text
        assert EmulatedCluster(5, switches=[1, 0, 1, 0, 0]).switch_of == [1, 0, 1, 0, 0]
        d = EmulatedCluster(3, 1, "40mbit", host_rates={1: ("20mbit", "30mbit")})
        assert d.link_rate(1, 0) == 20e6 and d.link_rate(0, 1) == 30e6
        assert "20 Mbit/s out, 30 Mbit/s in" in d.describe()
        assert EmulatedCluster(2).switches == 1 and EmulatedCluster(2).trunk_bps is None
        with pytest.raises(RuntimeError, match="not created"):
            EmulatedCluster(2).set_rates(host_rates={0: "1mbit"})

    @pytest.mark.parametrize("kw, word", [
        ({"switches": 5}, "switches: expected 1..4"),
        ({"switches": [0, 2, 2, 0]}, "must use every switch"),
        ({"switches": [0, 1]}, "expected 4 switch indices"),
        ({"trunk_rate": "1mbit"}, "trunk_rate: only meaningful"),
        ({"host_rates": {7: "1mbit"}}, "host: 7 is not one of"),
        ({"host_rates": {0: "fast"}}, "rate: cannot parse"),
        ({"link_rates": {(1, 1): "1mbit"}}, "joins a host to itself"),
        ({"link_rates": {1: "1mbit"}}, "keys are"),
        ({"host_rates": {1: ("1mbit",)}}, "expected a rate or"),
    ])
    def test_rejects(self, kw, word):
        with pytest.raises(ValueError, match=word.replace("(", r"\(")):
            EmulatedCluster(4, **kw)

    def test_command_line(self):
        p = cli("--dry-run", "--hosts", "4", "--rate", "40mbit", "--host-rate", "3=9mbit/7mbit",
                "--host-rate", "1=20mbit",
                "--link-rate", "0-2=10mbit", "--switches", "0,0,1,1", "--trunk-rate",
                "20mbit", "--", "python", "x.py")
        assert p.returncode == 0, p.stderr
        assert "host 1" in p.stderr and "20 Mbit/s" in p.stderr
        assert "link 0-2: 10 Mbit/s" in p.stderr and "2 switch(es)" in p.stderr
        assert "9 Mbit/s out, 7 Mbit/s in" in p.stderr
        for args, word in ((["--host-rate", "x=1mbit"], "--host-rate: host 'x'"),
                           (["--link-rate", "0=1mbit"], "--link-rate: expected A-B=RATE"),
                           (["--link-rate", "0-1=slow"], "--link-rate: rate: cannot parse"),
                           (["--switches", "a,b"], "--switches: expected K"),
                           (["--switches", "9"], "switches: expected 1..4")):
            p = cli("--dry-run", "--hosts", "4", *args, "--", "true")
            assert p.returncode == 2 and word in p.stderr, (args, p.stderr)


class TestCommandLine:
    @pytest.mark.parametrize("args, word", [(["--hosts", "2"], "no command"),
                                            (["--rate", "fast", "--", "true"], "rate"),
                                            (["--hosts", "0", "--", "true"], "hosts"),
                                            (["--env", "NOEQUALS", "--", "true"], "--env"),
                                            (["--timeout", "0", "--", "true"], "--timeout")])
    def test_usage_errors_exit_2(self, args, word):
        p = cli(*args)
        assert p.returncode == 2, p.stderr
        assert word in p.stderr

    def test_help_mentions_every_option(self):
        p = cli("--help")
        assert p.returncode == 0
        for opt in ("--hosts", "--ranks-per-host", "--rate", "--burst", "--timeout", "--env",
                    "--keep", "--teardown", "--dry-run", "--host-rate", "--link-rate",
                    "--switches", "--trunk-rate"):
            assert opt in p.stdout

    def test_dry_run(self):
        p = cli("--dry-run", "--hosts", "3", "--ranks-per-host", "2", "--env", "A=1", "--",
                "python", "x.py")
        assert p.returncode == 0, p.stderr
        assert "-ppn 2 -n 6" in p.stdout and "-genv A 1" in p.stdout
        assert p.stdout.strip().endswith("python x.py")

    @pytest.mark.skipif(shutil.which("setpriv") is None or not Path("/usr/bin/python3").exists()
                        or os.geteuid() != 0,
                        reason="needs root, setpriv and /usr/bin/python3 to run as another user")
    def test_not_root_exit_2(self):
        as_nobody = ["timeout", "30", "setpriv", "--reuid=65534", "--regid=65534",
                     "--clear-groups", "env", f"PYTHONPATH={ROOT}", "/usr/bin/python3"]
        probe = subprocess.run(as_nobody + ["-c", "import collectives.emulate"],
                               capture_output=True, text=True, cwd="/")
        if probe.returncode != 0:
            pytest.skip(f"user nobody cannot import collectives.emulate from {ROOT} "
                        f"with /usr/bin/python3: {probe.stderr.strip()[-200:]}")
        p = subprocess.run(as_nobody + ["-m", "collectives.emulate", "--hosts", "2", "--", "true"],
                           capture_output=True, text=True, cwd="/")
        assert p.returncode == 2, p.stderr
        assert "need root" in p.stderr


# -- real namespaces ------------------------------------------------------------------------
@needs_netns
class TestEmulatedHosts:
    @pytest.mark.parametrize("hosts, k", [(1, 1), (3, 2)])
    def test_host_names_and_shared_memory(self, program, hosts, k):
        with EmulatedCluster(hosts, k, RATE) as c:
            r = c.run(program(HOSTCHECK), timeout=60, env=ENV)
            assert r.ok, r.stderr + r.diagnosis
            out = json.loads(r.stdout)
        names = [row[0] for row in out["rows"]]
        assert names == [c.hosts_ns[rank // k] for rank in range(hosts * k)]
        assert [row[1] for row in out["rows"]] == names  # MPI_Get_processor_name agrees
        assert [row[2] for row in out["rows"]] == [k] * (hosts * k)  # Split_type per host
        assert out["hosts"] == {ns: k for ns in c.hosts_ns}
        assert out["nodes"] == hosts and out["ranks_per_node"] == k

    def test_inter_host_traffic_crosses_the_rate_limited_link(self, program):
        sizes = "0,8,2097152"  # 2 MiB at 100 Mbit/s: 168 ms each way, far from CPU-bound
        with EmulatedCluster(2, 2, "100mbit") as c:
            before = c.link_bytes(1)
            inter = c.run(program(PINGPONG) + ["2", sizes], timeout=60, env=ENV)
            middle = c.link_bytes(1)
            intra = c.run(program(PINGPONG) + ["1", sizes], timeout=60, env=ENV)
            after = c.link_bytes(1)
            assert inter.ok and intra.ok, inter.stderr + intra.stderr
        t_inter = json.loads(inter.stdout)["2097152"]
        t_intra = json.loads(intra.stdout)["2097152"]
        goodput = 2097152 * 8 / t_inter / c.rate_bps
        assert 0.8 < goodput < 1.1, f"2 MiB across the link at {goodput:.2f} x the rate"
        # 3 repetitions x 2 MiB each way went over host 1's link; none did for intra pairs
        assert middle["tx"] - before["tx"] >= 3 * 2097152
        assert after["tx"] - middle["tx"] < 1_000_000
        assert t_intra < t_inter / 5

    def test_teardown_after_use_and_after_errors(self):
        with EmulatedCluster(2, 1, RATE) as c:
            assert sorted(our_namespaces(c.tag)) == sorted(c.hosts_ns + [c.switch_ns])
        assert our_namespaces(c.tag) == []
        with pytest.raises(RuntimeError, match="boom"):
            with EmulatedCluster(2, 1, RATE) as d:
                raise RuntimeError("boom")
        assert our_namespaces(d.tag) == []

    def test_two_clusters_at_once(self, program):
        with EmulatedCluster(2, 1, RATE) as a, EmulatedCluster(2, 1, RATE) as b:
            ra = a.run(program(HOSTCHECK), timeout=60, env=ENV)
            rb = b.run(program(HOSTCHECK), timeout=60, env=ENV)
        assert ra.ok and rb.ok, ra.stderr + rb.stderr
        assert json.loads(ra.stdout)["hosts"] == {ns: 1 for ns in a.hosts_ns}
        assert json.loads(rb.stdout)["hosts"] == {ns: 1 for ns in b.hosts_ns}

    def test_stale_namespaces_of_dead_owners_are_removed(self):
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = f"{emulate.PREFIX}-{dead.pid}-abcdef-h0"
        subprocess.run(["ip", "netns", "add", stale], check=True)
        try:
            with EmulatedCluster(1, 1, RATE) as c:  # creating a cluster cleans up
                assert stale not in our_namespaces(emulate.PREFIX)
                assert emulate.cleanup_stale() == []  # the live cluster is left alone
                assert our_namespaces(c.tag)
        finally:
            subprocess.run(["ip", "netns", "del", stale], capture_output=True)

    def test_killed_rank_ends_the_job_and_is_named(self, program):
        with EmulatedCluster(2, 2, RATE) as c:
            killer = threading.Timer(2, c.kill_rank, args=(1,))
            killer.start()
            start = time.monotonic()
            r = c.run(program(SLOW), timeout=30, env=ENV)
            took = time.monotonic() - start
            killer.join()
        assert not r.ok and not r.timed_out
        assert took < 10, f"the job took {took:.1f} s to end after a rank was killed"
        assert f"on host {c.hosts_ns[1]}" in r.diagnosis, r.diagnosis


@needs_netns
class TestCommandLineClusters:
    def test_runs_and_tears_down(self, program):
        p = cli("--hosts", "2", "--ranks-per-host", "2", "--rate", RATE, "--",
                *program(HOSTCHECK))
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert out["nodes"] == 2 and out["ranks_per_node"] == 2
        tag = "-".join(next(iter(out["hosts"])).split("-")[:3])
        assert our_namespaces(tag) == []

    def test_failure_status_and_message(self, program):
        fail = program("""
            import time
            from collectives.mpi import MPI
            time.sleep(1)
            if MPI.COMM_WORLD.rank == 1:
                MPI.COMM_WORLD.Abort(3)
            MPI.COMM_WORLD.Barrier()
            """)
        p = cli("--hosts", "2", "--timeout", "30", "--", *fail)
        assert p.returncode == 3
        tag = p.stderr.split("cluster ")[1].split()[0]
        assert "emulate: the command failed (exit status 3)" in p.stderr
        # Hydra forwards the aborting rank's own report over the (emulated) network and
        # sometimes tears the job down before it arrives (about 1 launch in 3 here); the
        # diagnosis must name the rank whenever MPICH's report reached mpiexec.
        if "application called MPI_Abort" in p.stderr:
            assert f"rank 1 on host {tag}-h1 called MPI_Abort(3)" in p.stderr

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
    def test_signal_tears_down(self, program, sig):
        env = dict(os.environ, **ENV)
        proc = subprocess.Popen([sys.executable, "-m", "collectives.emulate", "--hosts", "2",
                                 "--", *program(SLOW)], stderr=subprocess.PIPE, text=True,
                                env=env, cwd=ROOT)
        try:
            line = proc.stderr.readline()  # "emulate: ... cluster TAG" once the hosts exist
            tag = line.split("cluster ")[-1].strip()
            assert tag.startswith(emulate.PREFIX) and our_namespaces(tag)
            time.sleep(1)
            proc.send_signal(sig)
            rest = proc.communicate(timeout=20)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0 and "torn down" in rest
        assert our_namespaces(tag) == []


# -- the sweep on emulated hosts: layout detection, faults, resume --------------------------
SWEEP = [sys.executable, "-m", "mpi4py", "-m", "collectives.sweep"]
FAULT_SIZES = "8,1K,32K,256K,1M,2M"


def points_on_disk(run: Path) -> list:
    f = run / "points.jsonl"
    return f.read_text().splitlines() if f.exists() else []


@needs_netns
class TestSweepOnEmulatedHosts:
    def test_detects_hosts_and_measures_intra_and_inter(self, tmp_path):
        run = tmp_path / "run"
        with EmulatedCluster(2, 2, RATE) as c:
            r = c.run(SWEEP + ["--collectives", "pingpong", "--sizes", "8,1M",
                               "--time-budget", "0.05", "--min-reps", "3", "--out", str(run)],
                      timeout=90, env=ENV)
        assert r.ok, r.stderr[-2000:] + r.diagnosis
        meta = json.loads((run / "metadata.json").read_text())
        assert meta["hosts"] == {ns: 2 for ns in c.hosts_ns}
        assert meta["nodes"] == 2 and meta["ranks_per_node"] == 2
        pts = {(p["topology"], p["bytes"]): p for p in map(json.loads, points_on_disk(run))}
        assert set(pts) == {("intra", 8), ("intra", 2 ** 20), ("inter", 8), ("inter", 2 ** 20)}
        assert pts[("inter", 2 ** 20)]["nodes"] == 2 and pts[("intra", 2 ** 20)]["nodes"] == 1
        wire = 2 ** 20 * 8 / c.rate_bps
        assert pts[("inter", 2 ** 20)]["min_s"] > 0.8 * wire  # crossed the link
        assert pts[("intra", 2 ** 20)]["median_s"] < 0.5 * wire  # shared memory

    @pytest.mark.parametrize("fault", ["link_down", "kill_rank"])
    def test_fault_mid_sweep_then_resume(self, tmp_path, fault):
        run = tmp_path / "run"
        cmd = SWEEP + ["--collectives", "pingpong", "--topology", "inter", "--sizes", FAULT_SIZES,
                       "--time-budget", "0.05", "--point-timeout", "3", "--seed", "5",
                       "--out", str(run)]
        with EmulatedCluster(2, 1, RATE) as c:
            before = []

            def inject():  # once two points are on disk
                deadline = time.monotonic() + 60
                while len(points_on_disk(run)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                before.extend(points_on_disk(run))
                getattr(c, fault)(1)

            injector = threading.Thread(target=inject, daemon=True)
            injector.start()
            start = time.monotonic()
            r = c.run(cmd, timeout=60, env=ENV, exit_grace=3)
            took = time.monotonic() - start
            injector.join(5)
            assert not r.ok and len(before) >= 2
            kept = points_on_disk(run)
            assert kept[:len(before)] == before  # completed points stay on disk
            assert c.pids(0) == [] and c.pids(1) == []  # nothing left behind
            if fault == "link_down":
                assert "exceeded --point-timeout" in r.stderr  # the sweep names the point
                assert f"host {c.hosts_ns[1]} ({c.addresses[1]}) lost its network link" in r.diagnosis
                assert took < 40
                assert c.links_down() == [1]
                c.link_up(1)
                assert c.links_down() == []
            else:
                assert f"on host {c.hosts_ns[1]}" in r.diagnosis
                assert took < 20
            again = c.run(SWEEP + ["--resume", str(run)], timeout=60, env=ENV)
        assert again.ok, again.stderr[-2000:] + again.diagnosis
        done = points_on_disk(run)
        assert done[:len(kept)] == kept
        assert sorted(json.loads(p)["bytes"] for p in done) == \
            [8, 1024, 32768, 262144, 1048576, 2097152]
