"""Node detection and the sub-communicators of each topology."""
import json

import pytest

from collectives.topology import (Layout, check_ranks, default_ranks, layout_from_hosts,
                                  max_ranks, members, nodes_spanned, resolve_topologies)
from mpirun import mpirun

# two nodes with 3 and 2 ranks, interleaved placement
TWO = layout_from_hosts(["a", "b", "a", "b", "a"])


class TestLayout:
    def test_from_hosts(self):
        assert TWO.nodes == 2 and TWO.size == 5
        assert TWO.ranks_by_node == ((0, 2, 4), (1, 3))
        assert TWO.hosts == {"a": 3, "b": 2}
        assert TWO.ranks_per_node == [3, 2]
        assert layout_from_hosts(["x"] * 4).ranks_per_node == 4

    def test_same_host_name_in_two_shared_domains_is_two_nodes(self):
        lay = layout_from_hosts(["h", "h", "h", "h"], domains=[0, 0, 2, 2])
        assert lay.nodes == 2 and lay.names == ("h", "h#1")

    def test_shared_domain_with_two_host_names_is_two_nodes(self):
        lay = layout_from_hosts(["a", "b"], domains=[0, 0])
        assert lay.nodes == 2

    def test_bad(self):
        with pytest.raises(ValueError, match="at least one rank"):
            layout_from_hosts([])
        with pytest.raises(ValueError, match="domains has 1 entries"):
            layout_from_hosts(["a", "b"], domains=[0])
        with pytest.raises(ValueError, match="node indices"):
            Layout(node_of=(0, 2), names=("a", "b"))


class TestTopologies:
    def test_members(self):
        assert members(TWO, "intra", 2) == (0, 2)
        assert members(TWO, "inter", 2) == (0, 1)
        assert members(TWO, "world", 3) == (0, 1, 2)
        assert nodes_spanned(TWO, members(TWO, "world", 3)) == 2
        assert nodes_spanned(TWO, members(TWO, "intra", 3)) == 1

    def test_max_and_default_ranks(self):
        assert (max_ranks(TWO, "intra"), max_ranks(TWO, "inter"),
                max_ranks(TWO, "world")) == (3, 2, 5)
        assert default_ranks(TWO, "intra") == (2, 3)
        assert default_ranks(TWO, "world") == (2, 4, 5)
        assert default_ranks(layout_from_hosts(["a"] * 8), "intra") == (2, 4, 8)
        assert default_ranks(layout_from_hosts(["a"]), "intra") == (1,)

    def test_auto(self):
        assert resolve_topologies(TWO, "auto") == ("intra", "inter")
        one_node = layout_from_hosts(["a"] * 4)
        assert resolve_topologies(one_node, ["auto"]) == ("intra",)
        assert resolve_topologies(layout_from_hosts(["a", "b"]), "auto") == ("inter",)
        assert resolve_topologies(layout_from_hosts(["a"]), "auto") == ("intra",)
        assert resolve_topologies(one_node, ["world", "auto", "world"]) == ("world", "intra")

    def test_errors_name_the_problem(self):
        with pytest.raises(ValueError, match="unknown topology 'rack'"):
            resolve_topologies(TWO, ["rack"])
        with pytest.raises(ValueError, match="--ranks 4 is larger than the intra topology "
                                             "supports: node a holds 3"):
            check_ranks(TWO, "intra", [2, 4])
        with pytest.raises(ValueError, match="inter topology supports: the job spans 2"):
            check_ranks(TWO, "inter", [3])
        with pytest.raises(ValueError, match=">= 1"):
            check_ranks(TWO, "world", [0])
        assert check_ranks(TWO, "world", [4, 2, 2]) == (2, 4)


DETECT = r"""
import json
from collectives.mpi import MPI
from collectives.topology import detect, subcommunicator
w = MPI.COMM_WORLD
lay = detect(w)
out = {"layout": lay.to_dict(), "subs": {}}
for topo in ("intra", "inter", "world"):
    from collectives.topology import max_ranks
    for p in range(1, max_ranks(lay, topo) + 1):
        sub = subcommunicator(w, lay, topo, p)
        info = None if sub is None else (sub.Get_rank(), sub.Get_size())
        got = w.gather(info, root=0)
        if sub is not None:
            sub.Free()
        out["subs"][f"{topo}/{p}"] = got
if w.rank == 0:
    print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_detection_on_one_host(n):
    proc = mpirun(n, ["-c", DETECT], timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    lay = out["layout"]
    assert lay["world_size"] == n and lay["nodes"] == 1 and lay["ranks_per_node"] == n
    assert list(lay["hosts"].values()) == [n]
    assert out["subs"]["inter/1"] == [[0, 1]] + [None] * (n - 1)
    for topo in ("intra", "world"):
        for p in range(1, n + 1):
            got = out["subs"][f"{topo}/{p}"]
            assert got == [[r, p] for r in range(p)] + [None] * (n - p)
