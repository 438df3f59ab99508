"""An emulated cluster on one machine: network namespaces as hosts.

Each "host" is a network namespace with its own host name (``unshare --uts``) and one
``eth0`` veth link to a bridge.  The bridge lives in a separate "switch" namespace, so
nothing touches the machine's own network and several clusters can exist at once
without address or name collisions.  Every link is rate-limited with ``tc tbf`` at both
ends (host -> switch and switch -> host), so each direction of a link carries at most
``rate``.  ``mpiexec`` (MPICH Hydra) runs in the switch namespace and starts one proxy
per host through an ssh-style launcher script (``-launcher ssh -launcher-exec``) that
enters the host's namespace with ``ip netns exec`` and sets its host name.

Transports (verified with the MPICH 5.0.2 wheel, device ``ch4:ucx``): ranks on the same
emulated host talk through MPICH's own shared memory (Hydra gives them the same node
id, so ``Split_type(COMM_TYPE_SHARED)`` groups exactly the ranks of one namespace);
ranks on different hosts use the netmod, and ``UCX_TLS=tcp`` forces UCX onto TCP over
the veth links.  Without it UCX finds the other namespaces' processes through shared
memory and bypasses the links entirely (4 MiB at ~1.1 GB/s instead of the 25 MB/s of a
200 Mbit/s link).

What α means here: the kernel has no ``netem`` qdisc, so no latency is injected.  The
fitted inter-node α is the cost of the kernel's TCP/IP path through two veth pairs and
a bridge, plus UCX's TCP transport, Python's call overhead and, with more ranks than cores, the
scheduler -- 40 to 250 microseconds for the ping-pong on this shared 2-core machine,
the order of kernel TCP over real Ethernet, but not a property of any real wire.
The fitted inter-node β is ``1 / goodput``: tbf charges every frame's Ethernet/IP/TCP
headers to the rate (1448 payload bytes per 1514-byte frame), so expect β about 5%
above the wire's ``8 / rate`` seconds per byte (measured here: ping-pong β 1.06-1.07 x
8/rate at 200 Mbit/s, ``benchmarks/bench_emulated_cluster.py``).  Messages smaller than
the tbf bucket (``burst``, 16 KiB by default) leave at memory speed.

Limits: all hosts share the machine's cores, so with more ranks than cores the timings
of small messages are dominated by scheduling (MPICH's ranks spin while they wait);
rates above a few hundred Mbit/s become CPU-bound on a small machine.

Needs root (namespaces, veths, qdiscs) and the ``ip``, ``tc`` and ``unshare`` tools.

Heterogeneous networks (issue 12: find slow nodes, slow links, switch tiers):
``host_rates={1: "20mbit"}`` gives host 1's link (both directions) its own rate
(``{1: ("20mbit", "40mbit")}``: 20 Mbit/s out, 40 in);
``link_rates={(0, 2): "10mbit"}`` slows the traffic between hosts 0 and 2 only -- each
end's egress gets an htb classifier (its classes far above any rate, so htb itself never
shapes) whose u32 filter on the partner's address sends that traffic through a tbf of
the link's rate, everything else through the host's tbf; ``switches=2`` (or one switch
index per host, ``[0, 0, 1, 1]``) puts the hosts on separate bridges, each joined to a
core bridge by a trunk veth rate-limited (tbf, both directions) at ``trunk_rate``, so
traffic between switches crosses two trunks and is held to the trunk rate (shared by
all pairs crossing at once).  :meth:`EmulatedCluster.link_rate` says what each directed
pair should get.  (The kernel has neither ``netem`` nor the ``prio``/``flower``
schedulers; htb + u32 + tbf is what it offers.)

Python API::

    with EmulatedCluster(hosts=2, ranks_per_host=2, rate="500mbit") as cluster:
        result = cluster.run([sys.executable, "prog.py"], timeout=60)
        cluster.link_down(1)          # fault injection
        cluster.kill_rank(1)          # SIGKILL one MPI process on host 1

Command line::

    python -m collectives.emulate --hosts 2 --ranks-per-host 2 --rate 200mbit -- \\
        python -m collectives.sweep --topology auto --out data/emu
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EmulatedCluster", "EmulationUnavailable", "RunResult", "parse_rate", "check_available",
    "transport_env", "cleanup_stale", "main",
]

#: Prefix of every namespace this module creates: ``ccemu-<owner pid>-<random>-<role>``.
PREFIX = "ccemu"
#: Addresses: host i is SUBNET.(i+1), the switch (where mpiexec runs) is SUBNET.254.
SUBNET = "10.77.0"
SWITCH_ADDRESS = f"{SUBNET}.254"
#: Most hosts one cluster can have (addresses .1 .. .250).
MAX_HOSTS = 250
#: With several switches, each switch's bridge has a trunk to this core bridge.
CORE_BRIDGE = "core"
#: Most per-link rates one host can have (htb classes on its egress).
_MAX_LINK_CLASSES = 64

#: What forces inter-host traffic onto the veth links (see the module docstring).
#: Intra-host pairs keep MPICH's shared memory.
TRANSPORT_ENV = {"UCX_TLS": "tcp", "UCX_NET_DEVICES": "eth0"}
#: MPICH's shared-memory collectives spin without yielding; with more ranks than cores
#: they cost milliseconds per call (measurement.md).
OVERSUBSCRIBE_ENV = {"MPIR_CVAR_DEVICE_COLLECTIVES": "none"}

#: The ssh-style launcher Hydra calls: ``WRAPPER [ssh options] HOST COMMAND...``.  HOST is
#: the namespace name; the command runs inside it under a private UTS namespace whose
#: host name is HOST.  ssh joins its arguments and runs them with a shell; so do we.
#: Every step ``exec``s, so Hydra's signals reach the proxy itself.
LAUNCHER_SCRIPT = """#!/bin/sh
# collcost emulated-cluster launcher (generated by collectives/emulate.py).
# Hydra calls it like ssh: WRAPPER [-x] [-o opt] HOST COMMAND...
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-l|-i|-F) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then echo "emulate launcher: usage: $0 [ssh options] HOST COMMAND..." >&2; exit 255; fi
host=$1; shift
if ! [ -e "/run/netns/$host" ]; then echo "emulate launcher: no emulated host '$host'" >&2; exit 255; fi
exec ip netns exec "$host" unshare --uts sh -c 'hostname "$0" && exec sh -c "$*"' "$host" "$@"
"""

_RATE_UNITS = {  # tc's units: *bit are bits/s, *bps are BYTES/s (tc-bfifo(8) conventions)
    "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "kibit": 2 ** 10, "mibit": 2 ** 20, "gibit": 2 ** 30, "tibit": 2 ** 40,
    "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
    "kibps": 8 * 2 ** 10, "mibps": 8 * 2 ** 20, "gibps": 8 * 2 ** 30, "tibps": 8 * 2 ** 40,
}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 2 ** 20, "mb": 2 ** 20,
               "mib": 2 ** 20}


class EmulationUnavailable(RuntimeError):
    """Raised when this machine cannot host an emulated cluster (not root, no tools)."""


def parse_rate(rate) -> float:
    """Link rate in bits per second from a tc-style string.

    ``"200mbit"`` is 200e6 bit/s; as in ``tc``, ``bit`` units count bits and ``bps``
    units count bytes (``"25mbps"`` is also 200e6 bit/s); ``kibit``-style units are
    binary.  A plain number is bits per second.

    >>> parse_rate("200mbit")
    200000000.0
    >>> parse_rate("1.5gbit")
    1500000000.0
    """
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        value = float(rate)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*", str(rate).lower())
        if not m or (m.group(2) and m.group(2) not in _RATE_UNITS):
            raise ValueError(f"rate: cannot parse {rate!r}; expected a number and a tc unit "
                             f"such as 200mbit, 1gbit, 500kbit, 25mbps")
        value = float(m.group(1)) * _RATE_UNITS.get(m.group(2) or "bit")
    if not value > 0:
        raise ValueError(f"rate: must be positive, got {rate!r}")
    return value


def parse_size(size) -> int:
    """Bytes from ``"64kb"``, ``"1m"``, ``65536`` (binary units, as tc's burst)."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        m = re.fullmatch(r"\s*([0-9]+)\s*([a-z]*)\s*", str(size).lower())
        if not m or m.group(2) not in _SIZE_UNITS:
            raise ValueError(f"burst: cannot parse {size!r}; expected bytes such as 65536, 64kb, 1mb")
        value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if value < 2048:
        raise ValueError(f"burst: must be at least 2048 bytes (one frame), got {size!r}")
    return value


#: Default tbf bucket.  A message that fits in the bucket leaves at memory speed, so a
#: big bucket makes every size below it look latency-bound (64 KiB and 250 KB buckets
#: put a kink at that size into the fitted curve); a real wire has no bucket.  16 KiB
#: rate-limits everything above a few frames; tbf splits TCP's 64 KiB GSO super-frames
#: into MTU frames to fit it, so each frame's headers are charged as on a real link.
DEFAULT_BURST = 16 * 1024


def _switch_layout(switches, hosts: int) -> list:
    """Switch index of every host from ``switches``: None (one switch), a number k
    (hosts cut into k consecutive groups as equal as possible) or one index per host
    (each switch from 0 up used at least once)."""
    if switches is None:
        return [0] * hosts
    if isinstance(switches, int) and not isinstance(switches, bool):
        if not 1 <= switches <= hosts:
            raise ValueError(f"switches: expected 1..{hosts} (one host per switch at "
                             f"least), got {switches}")
        return [i * switches // hosts for i in range(hosts)]
    layout = list(switches)
    if len(layout) != hosts or any(isinstance(k, bool) or not isinstance(k, int) or k < 0
                                   for k in layout):
        raise ValueError(f"switches: expected {hosts} switch indices (one per host), got "
                         f"{switches!r}")
    if sorted(set(layout)) != list(range(max(layout) + 1)):
        raise ValueError(f"switches: indices must use every switch 0..{max(layout)}, got "
                         f"{switches!r}")
    return layout


def check_available() -> None:
    """Raise :class:`EmulationUnavailable` naming what is missing (root, ip, tc, unshare, netns)."""
    if os.geteuid() != 0:
        raise EmulationUnavailable("emulated clusters need root (network namespaces, veth "
                                   "links and tc qdiscs); run as root or in a privileged container")
    missing = [tool for tool in ("ip", "tc", "unshare") if shutil.which(tool) is None]
    if missing:
        raise EmulationUnavailable(f"emulated clusters need {', '.join(missing)} on PATH "
                                   "(packages iproute2 and util-linux)")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise EmulationUnavailable("`ip netns` is unavailable here: "
                                   f"{probe.stderr.strip() or 'exit status ' + str(probe.returncode)}")


def transport_env(total_ranks: int, cores: int | None = None) -> dict:
    """Environment for the ranks: TCP between hosts, spin-free collectives when oversubscribed."""
    env = dict(TRANSPORT_ENV)
    if total_ranks > (cores or os.cpu_count() or 1):
        env.update(OVERSUBSCRIBE_ENV)
    return env


def _sh(args, check=True, **kw) -> subprocess.CompletedProcess:
    """Run a setup command; raise with its stderr on failure."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {shlex.join(map(str, args))}: "
                           f"{p.stderr.strip()}")
    return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _our_namespaces() -> list[str]:
    p = _sh(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX + "-")]


def _kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process left in namespace ``ns`` (all were started by this module)."""
    p = _sh(["ip", "netns", "pids", ns], check=False)
    for pid in p.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _delete_namespace(ns: str) -> None:
    _kill_namespace_processes(ns)
    _sh(["ip", "netns", "del", ns], check=False)


def cleanup_stale(tag: str | None = None) -> list[str]:
    """Delete emulated namespaces whose owner process is gone (or all of cluster ``tag``).

    Namespaces are named ``ccemu-<owner pid>-<random>-<role>``; without ``tag`` only
    those whose owner pid no longer exists are removed, so clusters of other running
    tests or jobs are never touched.  Returns the names deleted.
    """
    removed = []
    for ns in _our_namespaces():
        parts = ns.split("-")
        if len(parts) < 4:
            continue
        this_tag = "-".join(parts[:3])
        if tag is not None:
            if this_tag != tag:
                continue
        elif not parts[1].isdigit() or _pid_alive(int(parts[1])):
            continue
        _delete_namespace(ns)
        removed.append(ns)
    return removed


@dataclass(frozen=True)
class RunResult:
    """Outcome of :meth:`EmulatedCluster.run`: the command, its status and a diagnosis."""

    command: list
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    diagnosis: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class EmulatedCluster:
    """``hosts`` namespaces on a bridge, each link rate-limited at ``rate``; a context manager.

    Parameters
    ----------
    hosts : int
        Number of emulated hosts (1..250).
    ranks_per_host : int
        MPI ranks started on each host by :meth:`mpiexec_command` / :meth:`run`.
    rate : str or float
        Per-direction link rate, tc style (``"200mbit"``) or bits per second.
    burst : str or int, optional
        tbf bucket size in bytes; default :data:`DEFAULT_BURST`.
    keep : bool
        Leave the namespaces in place on exit (remove later with ``--teardown TAG``).

    Host ``i`` is namespace ``hosts_ns[i]`` (also its host name) at ``addresses[i]``.
    Teardown (kill leftover processes, delete namespaces) runs on leaving the ``with``
    block, on exceptions, on SIGINT and on SIGTERM.
    """

    def __init__(self, hosts: int, ranks_per_host: int = 1, rate="200mbit", burst=None,
                 keep: bool = False, host_rates=None, link_rates=None, switches=None,
                 trunk_rate=None):
        if not isinstance(hosts, int) or isinstance(hosts, bool) or not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"hosts: expected a whole number in 1..{MAX_HOSTS}, got {hosts!r}")
        if not isinstance(ranks_per_host, int) or isinstance(ranks_per_host, bool) or ranks_per_host < 1:
            raise ValueError(f"ranks_per_host: expected a whole number >= 1, got {ranks_per_host!r}")
        self.hosts = hosts
        self.ranks_per_host = ranks_per_host
        self.rate_bps = parse_rate(rate)
        self.burst = parse_size(burst) if burst is not None else DEFAULT_BURST
        self.keep = keep
        self.tag = f"{PREFIX}-{os.getpid()}-{os.urandom(3).hex()}"
        self.switch_ns = f"{self.tag}-sw"
        self.hosts_ns = [f"{self.tag}-h{i}" for i in range(hosts)]
        self.addresses = [f"{SUBNET}.{i + 1}" for i in range(hosts)]
        self.switch_of = _switch_layout(switches, hosts)
        self.switches = max(self.switch_of) + 1
        self.trunk_bps = None
        if self.switches > 1:
            self.trunk_bps = parse_rate(trunk_rate if trunk_rate is not None else rate)
        elif trunk_rate is not None:
            raise ValueError("trunk_rate: only meaningful with 2 or more switches")
        self.host_bps = [self.rate_bps] * hosts     # what each host sends at most
        self.host_in_bps = [self.rate_bps] * hosts  # what each host receives at most
        for host, r in dict(host_rates or {}).items():
            i = self.host_index(host)
            if isinstance(r, (tuple, list)):  # (out, in): an asymmetric link
                if len(r) != 2:
                    raise ValueError(f"host_rates: host {host!r}: expected a rate or "
                                     f"(out, in), got {r!r}")
                self.host_bps[i], self.host_in_bps[i] = parse_rate(r[0]), parse_rate(r[1])
            else:
                self.host_bps[i] = self.host_in_bps[i] = parse_rate(r)
        self.link_bps = {}
        for key, r in dict(link_rates or {}).items():
            if not (isinstance(key, (tuple, list)) and len(key) == 2):
                raise ValueError(f"link_rates: keys are (host, host) pairs, got {key!r}")
            i, j = self.host_index(key[0]), self.host_index(key[1])
            if i == j:
                raise ValueError(f"link_rates: {key!r} joins a host to itself")
            self.link_bps[(min(i, j), max(i, j))] = parse_rate(r)
        for i in range(hosts):
            partners = sum(1 for pair in self.link_bps if i in pair)
            if partners > _MAX_LINK_CLASSES:
                raise ValueError(f"link_rates: host {i} has {partners} per-link rates; at "
                                 f"most {_MAX_LINK_CLASSES} per host")
        self.workdir: Path | None = None
        self.launcher: Path | None = None
        self._created = False
        self._old_handlers = {}
        self._procs: list[subprocess.Popen] = []

    # -- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> "EmulatedCluster":
        self._install_signal_handlers()
        try:
            self.create()
        except BaseException:
            self.teardown()
            self._restore_signal_handlers()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if not self.keep:
                self.teardown()
        finally:
            self._restore_signal_handlers()

    def create(self) -> None:
        """Build the switch namespace, the hosts, their links and rate limits."""
        check_available()
        cleanup_stale()
        self._created = True
        self.workdir = Path(tempfile.mkdtemp(prefix=self.tag + "-"))
        self.launcher = self.workdir / "ssh"
        self.launcher.write_text(LAUNCHER_SCRIPT)
        self.launcher.chmod(0o755)
        sw = self.switch_ns
        _sh(["ip", "netns", "add", sw])
        _sh(["ip", "-n", sw, "link", "set", "lo", "up"])
        bridges = [self.bridge(k) for k in range(self.switches)]
        if self.switches > 1:
            bridges.append(CORE_BRIDGE)
        for br in bridges:
            _sh(["ip", "-n", sw, "link", "add", br, "type", "bridge"])
            _sh(["ip", "-n", sw, "link", "set", br, "up"])
        # mpiexec's address: on the only bridge, or on the core every trunk reaches
        _sh(["ip", "-n", sw, "addr", "add", f"{SWITCH_ADDRESS}/24", "dev", bridges[-1]])
        for k in range(self.switches if self.switches > 1 else 0):
            leaf, core = self.trunk_ports(k)
            _sh(["ip", "-n", sw, "link", "add", leaf, "type", "veth", "peer", "name", core])
            _sh(["ip", "-n", sw, "link", "set", leaf, "master", self.bridge(k)])
            _sh(["ip", "-n", sw, "link", "set", core, "master", CORE_BRIDGE])
            for dev in (leaf, core):
                _sh(["ip", "-n", sw, "link", "set", dev, "up"])
                self._tbf(sw, dev, self.trunk_bps)
        for i, (ns, addr) in enumerate(zip(self.hosts_ns, self.addresses)):
            port = self.switch_port(i)
            _sh(["ip", "netns", "add", ns])
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            _sh(["ip", "link", "add", "eth0", "netns", ns, "type", "veth",
                 "peer", "name", port, "netns", sw])
            _sh(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0"])
            _sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _sh(["ip", "-n", sw, "link", "set", port, "master",
                 self.bridge(self.switch_of[i])])
            _sh(["ip", "-n", sw, "link", "set", port, "up"])
            self._limit_host(i)
            self._tbf(sw, port, self.host_in_bps[i])

    def _tbf(self, ns: str, dev: str, bps: float, parent: str = "root",
             handle: str | None = None) -> None:
        where = ["root"] if parent == "root" else ["parent", parent]
        _sh(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, *where,
             *(["handle", handle] if handle else []), "tbf", "rate", f"{int(bps)}bit",
             "burst", str(self.burst), "latency", "100ms"])

    def link_rate(self, i: int, j: int) -> float:
        """Bits per second host ``i`` sends to host ``j`` at most (the slowest of its
        egress, the pair's rate, the trunk between their switches, j's ingress)."""
        i, j = self.host_index(i), self.host_index(j)
        rates = [self.host_bps[i], self.host_in_bps[j]]
        if (min(i, j), max(i, j)) in self.link_bps:
            rates.append(self.link_bps[(min(i, j), max(i, j))])
        if self.switch_of[i] != self.switch_of[j]:
            rates.append(self.trunk_bps)
        return min(rates)

    def _limit_host(self, i: int) -> None:
        """Host ``i``'s egress: tbf at its rate; with per-link rates, an htb classifier
        (classes far above any rate, so it never shapes) sends the traffic to each such
        partner (u32 filter on its address) through a tbf of the link's rate and the
        rest through a tbf of the host's rate."""
        ns = self.hosts_ns[i]
        special = sorted((j if a == i else a, r) for (a, j), r in self.link_bps.items()
                         if i in (a, j))
        if not special:
            self._tbf(ns, "eth0", self.host_bps[i])
            return
        tc = ["ip", "netns", "exec", ns, "tc"]
        _sh(tc + ["qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb",
                  "default", "1", "r2q", "100000"])
        for k, (j, bps) in enumerate([(None, self.host_bps[i])] + special, start=1):
            _sh(tc + ["class", "add", "dev", "eth0", "parent", "1:", "classid", f"1:{k}",
                      "htb", "rate", "10gbit", "ceil", "10gbit"])
            self._tbf(ns, "eth0", min(bps, self.host_bps[i]), parent=f"1:{k}",
                      handle=f"{10 + k}:")
            if j is not None:
                _sh(tc + ["filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip",
                          "prio", "1", "u32", "match", "ip", "dst",
                          f"{self.addresses[j]}/32", "flowid", f"1:{k}"])

    def set_rates(self, host_rates=None, link_rates=None) -> None:
        """Change rates of the running cluster (a NIC renegotiating, a cable going bad,
        a repair): ``host_rates`` and ``link_rates`` as in the constructor, merged into
        the current ones (a link rate of None removes it); the qdiscs of the hosts
        concerned are rebuilt.  Takes effect for new packets at once."""
        if not self._created:
            raise RuntimeError("cluster not created: use `with EmulatedCluster(...) as c:`")
        touched = set()
        for host, r in dict(host_rates or {}).items():
            i = self.host_index(host)
            out, inn = (r if isinstance(r, (tuple, list)) else (r, r))
            self.host_bps[i], self.host_in_bps[i] = parse_rate(out), parse_rate(inn)
            touched.add(i)
            self._tbf(self.switch_ns, self.switch_port(i), self.host_in_bps[i])
        for key, r in dict(link_rates or {}).items():
            i, j = sorted((self.host_index(key[0]), self.host_index(key[1])))
            if i == j:
                raise ValueError(f"link_rates: {key!r} joins a host to itself")
            if r is None:
                self.link_bps.pop((i, j), None)
            else:
                self.link_bps[(i, j)] = parse_rate(r)
            touched |= {i, j}
        for i in sorted(touched):
            _sh(["ip", "netns", "exec", self.hosts_ns[i], "tc", "qdisc", "del", "dev",
                 "eth0", "root"], check=False)
            self._limit_host(i)

    def describe(self) -> str:
        """The emulated network in words: switches, trunk, hosts and their rates."""
        out = [f"{self.hosts} host(s) on {self.switches} switch(es)"
               + (f" joined by trunks of {self.trunk_bps / 1e6:g} Mbit/s each way "
                  "through a core bridge" if self.switches > 1 else "")]
        for i in range(self.hosts):
            out.append(f"  host {i} {self.hosts_ns[i]} ({self.addresses[i]}) switch "
                       f"{self.switch_of[i]}: " + (
                           f"{self.host_bps[i] / 1e6:g} Mbit/s each way"
                           if self.host_bps[i] == self.host_in_bps[i] else
                           f"{self.host_bps[i] / 1e6:g} Mbit/s out, "
                           f"{self.host_in_bps[i] / 1e6:g} Mbit/s in"))
        for (i, j), bps in sorted(self.link_bps.items()):
            out.append(f"  link {i}-{j}: {bps / 1e6:g} Mbit/s each way")
        return "\n".join(out)

    def teardown(self) -> None:
        """Stop running launches, kill leftover processes, delete every namespace."""
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._created:
            for ns in self.hosts_ns + [self.switch_ns]:
                _delete_namespace(ns)
            self._created = False
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            self.teardown()
            raise SystemExit(128 + signum) if signum != signal.SIGINT else KeyboardInterrupt()

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signal_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers = {}

    # -- naming --------------------------------------------------------------------
    @staticmethod
    def switch_port(i: int) -> str:
        """Name of host ``i``'s port on the bridge (in the switch namespace)."""
        return f"p{i}"

    @staticmethod
    def bridge(k: int) -> str:
        """Name of switch ``k``'s bridge (in the switch namespace)."""
        return f"br{k}"

    @staticmethod
    def trunk_ports(k: int) -> tuple:
        """Switch ``k``'s trunk: (its end on the switch's bridge, its end on the core)."""
        return f"t{k}", f"c{k}"

    def host_index(self, host) -> int:
        """Index of ``host`` given as an index, a namespace/host name or an address."""
        if isinstance(host, int) and not isinstance(host, bool) and 0 <= host < self.hosts:
            return host
        for names in (self.hosts_ns, self.addresses):
            if host in names:
                return names.index(host)
        raise ValueError(f"host: {host!r} is not one of this cluster's hosts "
                         f"(0..{self.hosts - 1}, {', '.join(self.hosts_ns)})")

    # -- running -------------------------------------------------------------------
    def mpiexec_command(self, command, ranks_per_host: int | None = None,
                        hosts=None, env: dict | None = None) -> list[str]:
        """The ``mpiexec`` command line (run it inside :attr:`switch_ns`).

        ``hosts`` selects a subset (indices or names; default all); ``env`` adds or
        overrides ``-genv`` variables.
        """
        if not command:
            raise ValueError("command: empty; give the program to run on every rank")
        k = self.ranks_per_host if ranks_per_host is None else ranks_per_host
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"ranks_per_host: expected a whole number >= 1, got {k!r}")
        chosen = list(range(self.hosts)) if hosts is None else [self.host_index(h) for h in hosts]
        genv = dict(transport_env(len(chosen) * k))
        genv.update(env or {})
        cmd = [_mpiexec(), "-launcher", "ssh", "-launcher-exec", str(self.launcher),
               "-localhost", SWITCH_ADDRESS,
               "-hosts", ",".join(self.hosts_ns[i] for i in chosen),
               "-ppn", str(k), "-n", str(k * len(chosen))]
        for key, value in genv.items():
            cmd += ["-genv", key, str(value)]
        return cmd + [str(c) for c in command]

    def run(self, command, timeout: float = 600, ranks_per_host: int | None = None,
            hosts=None, env: dict | None = None, capture: bool = True,
            exit_grace: float = 15) -> RunResult:
        """Run ``command`` on every rank under ``timeout -k 5``; diagnose a failure.

        Returns a :class:`RunResult`; when the launch failed or timed out its
        ``diagnosis`` names links that are down and the host whose process died first.
        One launch at a time per cluster: when it ends, every process left in the hosts'
        namespaces (ranks cut off from a killed mpiexec) is killed.

        When mpiexec is still running ``exit_grace`` seconds after every rank has ended
        (Hydra waits forever for a proxy it cannot reach, e.g. behind a link that is
        down, even after MPI_Abort), the launch is killed and the diagnosis says so.
        ``capture=False`` passes the output through.
        """
        if not exit_grace > 0:
            raise ValueError(f"exit_grace: must be positive seconds, got {exit_grace!r}")
        if not self._created:
            raise RuntimeError("cluster not created: use `with EmulatedCluster(...) as c:`")
        if not timeout > 0:
            raise ValueError(f"timeout: must be positive seconds, got {timeout!r}")
        cmd = ["timeout", "-k", "5", str(max(1, round(timeout))),
               "ip", "netns", "exec", self.switch_ns] + \
            self.mpiexec_command(command, ranks_per_host, hosts, env)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._procs.append(proc)
        chosen = list(range(self.hosts)) if hosts is None else [self.host_index(h) for h in hosts]
        k = self.ranks_per_host if ranks_per_host is None else ranks_per_host
        watch = _RankWatch(self, chosen, k, proc)
        tee = None
        if not capture:  # pass stderr through as it comes, keeping a copy to diagnose
            kept: list[str] = []
            tee = threading.Thread(target=_tee, args=(proc.stderr, sys.stderr, kept), daemon=True)
            tee.start()
        stdout = stderr = None
        stranded = False  # killed because mpiexec outlived all its ranks by exit_grace
        try:
            while True:
                try:
                    if capture:
                        stdout, stderr = proc.communicate(timeout=0.5)
                    else:
                        proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    if (watch.all_ended is not None and not stranded
                            and now - watch.all_ended > exit_grace):
                        stranded = True
                        os.killpg(proc.pid, signal.SIGKILL)
                    elif now > started + timeout + 30:
                        os.killpg(proc.pid, signal.SIGKILL)
        finally:
            self._procs.remove(proc)
        if tee is not None:
            tee.join(timeout=10)
            stderr = "".join(kept)
        first_deaths = watch.stop()
        for i in chosen:  # ranks or proxies cut off from mpiexec may outlive it
            _kill_namespace_processes(self.hosts_ns[i])
        timed_out = not stranded and proc.returncode in (124, 137, -9)
        if timed_out and watch.when >= started + timeout - 0.5:
            first_deaths = []  # those were ended by the timeout itself
        diagnosis = "" if proc.returncode == 0 else \
            self.diagnose(stderr or "", timed_out, timeout, first_deaths, chosen)
        if stranded:
            diagnosis += (f"; mpiexec was still running {exit_grace:g} s after every rank had "
                          "ended (it could not reach every host to clean up) and was killed")
        return RunResult(cmd, proc.returncode, stdout or "", stderr or "", timed_out, diagnosis)

    def diagnose(self, stderr: str = "", timed_out: bool = False, timeout: float | None = None,
                 first_deaths=(), hosts=None) -> str:
        """A sentence naming what failed: links down, the process that died first, the timeout.

        ``first_deaths`` are ``(host index, pid)`` of the MPI processes seen to end first
        while the job was still running (from :class:`_RankWatch`); Hydra's own
        "BAD TERMINATION ... RUNNING AT host" and MPICH's "Abort(c) on node i (rank r"
        reports are used as well (``hosts``: the host indices of the launch, in order).
        """
        hosts = list(range(self.hosts)) if hosts is None else list(hosts)
        lines = []
        for i in self.links_down():
            lines.append(f"host {self.hosts_ns[i]} ({self.addresses[i]}) lost its network link")
        if first_deaths:
            lines.append("first process to end: " + ", ".join(
                f"pid {pid} on host {self.hosts_ns[i]}" for i, pid in first_deaths))
        for m in re.finditer(r"PID (\d+) RUNNING AT (\S+)\s*\n=\s*(EXIT CODE: \d+)", stderr):
            lines.append(f"mpiexec reports pid {m.group(1)} on host {m.group(2)} ended "
                         f"badly ({m.group(3).lower()})")
        for m in re.finditer(r"Abort\((-?\d+)\) on node (\d+) \(rank (\d+)", stderr):
            node = int(m.group(2))
            where = self.hosts_ns[hosts[node]] if node < len(hosts) else f"node {node}"
            lines.append(f"rank {m.group(3)} on host {where} called MPI_Abort({m.group(1)})")
        if timed_out:
            lines.append(f"the launch ran past its {timeout:g} s limit and was killed")
        return "; ".join(lines)

    # -- inspection and fault injection ----------------------------------------------
    def link_down(self, host) -> None:
        """Take host's link down (its port on the bridge): the host drops off the network."""
        _sh(["ip", "-n", self.switch_ns, "link", "set", self.switch_port(self.host_index(host)), "down"])

    def link_up(self, host) -> None:
        """Bring host's link back up, forgetting neighbours that failed to answer meanwhile.

        (A FAILED ARP entry would otherwise make the next connection attempt fail at
        once with "No route to host".)
        """
        _sh(["ip", "-n", self.switch_ns, "link", "set", self.switch_port(self.host_index(host)), "up"])
        for ns in self.hosts_ns + [self.switch_ns]:
            _sh(["ip", "-n", ns, "neigh", "flush", "all"], check=False)

    def links_down(self) -> list[int]:
        """Indices of hosts whose bridge port is administratively down."""
        if not self._created:
            return []
        p = _sh(["ip", "-n", self.switch_ns, "-o", "link", "show"], check=False)
        down = []
        for i in range(self.hosts):
            m = re.search(rf"^\d+: {re.escape(self.switch_port(i))}@\S+ <([^>]*)>", p.stdout, re.M)
            if m and "UP" not in m.group(1).split(","):
                down.append(i)
        return down

    def link_bytes(self, host) -> dict:
        """Bytes sent and received by host's ``eth0`` so far: ``{"tx": .., "rx": ..}``."""
        ns = self.hosts_ns[self.host_index(host)]
        p = _sh(["ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/statistics/tx_bytes",
                 "/sys/class/net/eth0/statistics/rx_bytes"])
        tx, rx = p.stdout.split()
        return {"tx": int(tx), "rx": int(rx)}

    def pids(self, host) -> list[int]:
        """Process ids running in host's namespace."""
        p = _sh(["ip", "netns", "pids", self.hosts_ns[self.host_index(host)]], check=False)
        return [int(x) for x in p.stdout.split()]

    def rank_pids(self, host, match: str = "python") -> list[int]:
        """Pids in host's namespace whose command line contains ``match`` (not Hydra's proxy)."""
        found = []
        for pid in self.pids(host):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if match in cmdline and "hydra_pmi_proxy" not in cmdline:
                found.append(pid)
        return found

    def kill_rank(self, host, sig: int = signal.SIGKILL, match: str = "python") -> int:
        """Send ``sig`` to one MPI process on ``host``; return its pid."""
        pids = self.rank_pids(host, match)
        if not pids:
            raise RuntimeError(f"no process matching {match!r} on host {self.hosts_ns[self.host_index(host)]}")
        os.kill(pids[-1], sig)
        return pids[-1]


class _RankWatch:
    """Notice which MPI process of a launch ends first, and when all have ended.

    A thread finds the ranks' pids in each host namespace once they have started, opens
    a pidfd on each and blocks in ``select`` (no polling while the job runs).  The
    processes reported in the first wake-up, before mpiexec itself has ended, are the
    first deaths (``first``, at ``when``); ``all_ended`` is when the last one ended.
    """

    def __init__(self, cluster: "EmulatedCluster", hosts: list, ranks_per_host: int, proc):
        self.cluster, self.hosts, self.k, self.proc = cluster, hosts, ranks_per_host, proc
        self.first: list = []
        self.when = time.monotonic()
        self.all_ended: float | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        if hasattr(os, "pidfd_open"):
            self._thread.start()

    def _watch(self) -> None:
        import select
        fds, seen = {}, set()
        try:
            # until every host has its ranks: a pidfd on each process as soon as it is
            # seen, so a rank that dies while others are still starting (or while the
            # scans of a loaded machine are slow) is still the first death
            while self.proc.poll() is None:
                gone = []
                for i in self.hosts:
                    for pid in self.cluster.rank_pids(i, match=""):
                        if pid in seen:
                            continue
                        seen.add(pid)
                        try:
                            fds[os.pidfd_open(pid)] = (i, pid)
                        except OSError:  # listed, then gone at once
                            gone.append((i, pid))
                ended = select.select(list(fds), [], [], 0)[0] if fds else []
                gone += [fds[fd] for fd in ended]
                if gone and not self.first and self.proc.poll() is None:
                    self.first, self.when = sorted(gone), time.monotonic()
                counts = {i: 0 for i in self.hosts}
                for i, _ in fds.values():
                    counts[i] += 1
                if all(n >= self.k for n in counts.values()):
                    break
                if select.select([self._stop_r], [], [], 0.2)[0]:
                    return
            else:
                return
            live = set(fds)
            while live:
                ready = select.select(sorted(live) + [self._stop_r], [], [])[0]
                if self._stop_r in ready:
                    return
                if not self.first and self.proc.poll() is None:
                    self.first, self.when = sorted(fds[fd] for fd in ready), time.monotonic()
                live -= set(ready)
            self.all_ended = time.monotonic()
        finally:
            for fd in fds:
                os.close(fd)

    def stop(self) -> list:
        """End the watch; return ``[(host index, pid), ...]`` that ended first (maybe empty)."""
        os.write(self._stop_w, b"x")
        if self._thread.is_alive() or self._thread.ident:
            self._thread.join(timeout=5)
        os.close(self._stop_r)
        os.close(self._stop_w)
        return self.first


def _tee(src, dst, kept: list) -> None:
    """Copy lines from ``src`` to ``dst`` as they arrive, appending each to ``kept``."""
    for line in src:
        kept.append(line)
        dst.write(line)
        dst.flush()


def _mpiexec() -> str:
    here = Path(sys.executable).with_name("mpiexec")
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if not found:
        raise EmulationUnavailable("mpiexec not found: pip install 'collcost[mpich]'")
    return found


# -- command line -------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m collectives.emulate",
        description="Run an MPI command across N emulated hosts (network namespaces joined "
                    "by a bridge, each link rate-limited with tc tbf), then tear them down. "
                    "Needs root. Inter-host MPI traffic is forced onto the links "
                    "(UCX_TLS=tcp); ranks on one host share memory.",
        epilog="Example: python -m collectives.emulate --hosts 2 --ranks-per-host 2 "
               "--rate 200mbit -- python -m collectives.sweep --topology auto --out data/emu")
    p.add_argument("--hosts", type=int, default=2, help="number of emulated hosts (default 2)")
    p.add_argument("--ranks-per-host", type=int, default=1,
                   help="MPI ranks started on each host (default 1)")
    p.add_argument("--rate", default="200mbit",
                   help="per-direction link rate in tc units: 200mbit, 1gbit, 25mbps (bytes/s) "
                        "(default 200mbit)")
    p.add_argument("--host-rate", action="append", default=[], metavar="HOST=RATE",
                   help="rate of one host's link (HOST: index from 0), both directions, "
                        "or OUT/IN for what it sends / receives; repeatable; e.g. "
                        "1=100mbit makes host 1 a slow node, 1=100mbit/1gbit a slow sender")
    p.add_argument("--link-rate", action="append", default=[], metavar="A-B=RATE",
                   help="rate between hosts A and B only, both directions (tc htb class "
                        "with a u32 filter on the partner's address at each end); "
                        "repeatable; e.g. 0-2=50mbit makes one slow cable")
    p.add_argument("--switches", default=None, metavar="K|LIST",
                   help="switches: K (hosts cut into K consecutive groups) or one switch "
                        "index per host (0,0,1,1); each switch is a bridge with a trunk to a "
                        "core bridge (default: 1, every host on one bridge)")
    p.add_argument("--trunk-rate", default=None, metavar="RATE",
                   help="rate of each switch's trunk to the core, both directions: traffic "
                        "between switches crosses two trunks (default: --rate)")
    p.add_argument("--burst", default=None,
                   help="tbf bucket in bytes (16384, 16kb); messages smaller than the bucket are not "
                        "rate-limited (default 16 KiB)")
    p.add_argument("--timeout", type=float, default=3600,
                   help="seconds after which the launch is killed (default 3600)")
    p.add_argument("--exit-grace", type=float, default=15,
                   help="seconds mpiexec may keep running after all ranks have ended before "
                        "the launch is killed (Hydra can hang on an unreachable host) "
                        "(default 15)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra variable for every rank (repeatable)")
    p.add_argument("--keep", action="store_true",
                   help="leave the namespaces in place afterwards (remove with --teardown TAG)")
    p.add_argument("--teardown", metavar="TAG", nargs="?", const="stale",
                   help="delete the namespaces of cluster TAG (printed by --keep), or with no "
                        "TAG those whose owner process is gone, then exit")
    p.add_argument("--dry-run", action="store_true",
                   help="print the mpiexec command that would run, without root or namespaces")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="after --: the program every rank runs")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.teardown:
        try:
            check_available()
        except EmulationUnavailable as e:
            parser.exit(2, f"emulate: error: {e}\n")
        removed = cleanup_stale(None if args.teardown == "stale" else args.teardown)
        print(f"emulate: removed {len(removed)} namespace(s)", file=sys.stderr)
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: put the program after --")
    env = {}
    for item in args.env:
        if "=" not in item or not item.split("=", 1)[0]:
            parser.error(f"--env: expected NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        env[key] = value
    for name in ("timeout", "exit_grace"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')}: must be positive, got {getattr(args, name)}")
    try:
        layout = _parse_layout_options(args)
        cluster = EmulatedCluster(args.hosts, args.ranks_per_host, args.rate, args.burst,
                                  keep=args.keep, **layout)
    except ValueError as e:
        parser.error(str(e))
    if args.dry_run:
        print(cluster.describe(), file=sys.stderr)
        cluster.launcher = Path("<launcher>")
        print(shlex.join(["ip", "netns", "exec", cluster.switch_ns]
                         + cluster.mpiexec_command(command, env=env)))
        return 0
    try:
        check_available()
    except EmulationUnavailable as e:
        parser.exit(2, f"emulate: error: {e}\n")
    try:
        with cluster:
            result = _run_cli(cluster, args, command, env)
    except KeyboardInterrupt:
        print("emulate: interrupted; the emulated hosts were torn down", file=sys.stderr)
        return 130
    except SystemExit as e:
        print("emulate: terminated; the emulated hosts were torn down", file=sys.stderr)
        raise e
    return result.returncode if result.returncode >= 0 else 128 - result.returncode


def _host_arg(text: str, option: str):
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"{option}: host {text!r} is not a host index (0, 1, ...)")
    return int(text)


def _parse_layout_options(args) -> dict:
    """``--host-rate``, ``--link-rate``, ``--switches``, ``--trunk-rate`` as
    :class:`EmulatedCluster` keyword arguments (ValueError naming the option)."""
    host_rates, link_rates = {}, {}
    for item in args.host_rate:
        if "=" not in item:
            raise ValueError(f"--host-rate: expected HOST=RATE, got {item!r}")
        host, rate = item.split("=", 1)
        host_rates[_host_arg(host, "--host-rate")] = \
            tuple(rate.split("/", 1)) if "/" in rate else rate
    for item in args.link_rate:
        if "=" not in item or "-" not in item.split("=", 1)[0]:
            raise ValueError(f"--link-rate: expected A-B=RATE, got {item!r}")
        pair, rate = item.split("=", 1)
        a, b = pair.split("-", 1)
        link_rates[(_host_arg(a, "--link-rate"), _host_arg(b, "--link-rate"))] = rate
    switches = args.switches
    if switches is not None:
        parts = [x.strip() for x in switches.split(",")]
        if not all(x.isdigit() for x in parts):
            raise ValueError(f"--switches: expected K or a comma list of switch indices, "
                             f"got {switches!r}")
        switches = int(parts[0]) if len(parts) == 1 else [int(x) for x in parts]
    flat = [r for v in host_rates.values() for r in (v if isinstance(v, tuple) else (v,))]
    for name, value in (("--host-rate", flat), ("--link-rate", link_rates.values())):
        for rate in value:
            try:
                parse_rate(rate)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    return {"host_rates": host_rates, "link_rates": link_rates, "switches": switches,
            "trunk_rate": args.trunk_rate}


def _run_cli(cluster: EmulatedCluster, args, command, env) -> RunResult:
    """The CLI's launch: announce, run with output passed through, explain a failure."""
    print(f"emulate: {args.hosts} host(s) x {args.ranks_per_host} rank(s), links "
          f"{cluster.rate_bps / 1e6:g} Mbit/s each way, cluster {cluster.tag}",
          file=sys.stderr, flush=True)
    if cluster.switches > 1 or cluster.link_bps or \
            len(set(cluster.host_bps + cluster.host_in_bps)) > 1:
        print("emulate: " + cluster.describe(), file=sys.stderr, flush=True)
    result = cluster.run(command, timeout=args.timeout, env=env, capture=False,
                         exit_grace=args.exit_grace)
    if result.returncode != 0:
        print(f"emulate: the command failed (exit status {result.returncode})"
              + (f": {result.diagnosis}" if result.diagnosis else ""), file=sys.stderr)
    if args.keep:
        print(f"emulate: kept cluster {cluster.tag}; remove it with "
              f"python -m collectives.emulate --teardown {cluster.tag}", file=sys.stderr)
    return result


if __name__ == "__main__":
    sys.exit(main())
