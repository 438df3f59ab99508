"""Where the ranks are: node detection and the sub-communicators the sweep measures on.

Topologies (the ``topology`` column of the results, ``docs/formats.md``):

``intra``
    the first ``p`` ranks of one node (the node of world rank 0);
``inter``
    one rank per node: the lowest world rank (the node leader) of each of the first
    ``p`` nodes;
``world``
    world ranks ``0 .. p-1``, wherever they are;
``auto``
    (a request, not a topology) ``intra`` when the first node holds at least 2 ranks,
    plus ``inter`` when there are at least 2 nodes; ``intra`` alone for a single rank.

Nodes are told apart by ``Split_type(COMM_TYPE_SHARED)`` *and* the host name
(``MPI.Get_processor_name``): two ranks share a node when they share both.  Nodes are
numbered by their lowest world rank, so world rank 0 is always on node 0 and is rank 0 of
every sub-communicator built here (the rank that writes results).

:func:`detect` and :func:`subcommunicator` are collective over the communicator given;
:func:`max_ranks`, :func:`default_ranks`, :func:`resolve_topologies` and
:func:`check_ranks` are pure functions of a :class:`Layout`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TOPOLOGIES", "REQUESTS", "Layout", "layout_from_hosts", "detect",
           "resolve_topologies", "max_ranks", "default_ranks", "check_ranks", "members",
           "nodes_spanned", "subcommunicator"]

#: Topologies a point can have.
TOPOLOGIES = ("intra", "inter", "world")
#: Values ``--topology`` accepts.
REQUESTS = TOPOLOGIES + ("auto",)


@dataclass(frozen=True)
class Layout:
    """Placement of the ranks of one communicator.

    ``node_of[r]`` is the node index of rank ``r``; ``names[i]`` the host name of node
    ``i`` (suffixed ``#k`` when a host name shows up as several shared-memory domains).
    """

    node_of: tuple
    names: tuple

    def __post_init__(self):
        if not self.node_of:
            raise ValueError("a layout needs at least one rank")
        if sorted(set(self.node_of)) != list(range(len(self.names))):
            raise ValueError(f"node_of must use node indices 0..{len(self.names) - 1}, "
                             f"got {sorted(set(self.node_of))}")

    @property
    def size(self) -> int:
        """Number of ranks."""
        return len(self.node_of)

    @property
    def nodes(self) -> int:
        """Number of nodes."""
        return len(self.names)

    @property
    def ranks_by_node(self) -> tuple:
        """World ranks of each node, ascending."""
        return tuple(tuple(r for r, n in enumerate(self.node_of) if n == i)
                     for i in range(self.nodes))

    @property
    def hosts(self) -> dict:
        """Host name -> number of ranks on it (node order)."""
        return {name: len(ranks) for name, ranks in zip(self.names, self.ranks_by_node)}

    @property
    def ranks_per_node(self):
        """Ranks per node: an int when every node holds the same number, else a list."""
        counts = [len(r) for r in self.ranks_by_node]
        return counts[0] if len(set(counts)) == 1 else counts

    def to_dict(self) -> dict:
        """The metadata fields ``world_size``, ``hosts``, ``nodes``, ``ranks_per_node``."""
        return {"world_size": self.size, "hosts": self.hosts, "nodes": self.nodes,
                "ranks_per_node": self.ranks_per_node}


def layout_from_hosts(hosts, domains=None) -> Layout:
    """Build a :class:`Layout` from each rank's host name (and shared-memory domain id).

    ``hosts[r]`` is rank ``r``'s host name; ``domains[r]`` (optional) any hashable that
    ranks sharing memory have in common (the world rank of the leader of their
    ``COMM_TYPE_SHARED`` communicator).  Pure function; :func:`detect` feeds it.
    """
    hosts = list(hosts)
    if not hosts:
        raise ValueError("hosts must name at least one rank")
    domains = [None] * len(hosts) if domains is None else list(domains)
    if len(domains) != len(hosts):
        raise ValueError(f"domains has {len(domains)} entries for {len(hosts)} hosts")
    index, node_of, names, seen = {}, [], [], {}
    for host, dom in zip(hosts, domains):
        key = (host, dom)
        if key not in index:
            index[key] = len(names)
            k = seen.get(host, 0)
            seen[host] = k + 1
            names.append(host if k == 0 else f"{host}#{k}")
        node_of.append(index[key])
    return Layout(node_of=tuple(node_of), names=tuple(names))


def detect(comm) -> Layout:
    """Detect the layout of ``comm`` (collective: every rank must call it)."""
    from .mpi import MPI
    shared = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        leader = shared.bcast(comm.Get_rank(), root=0)
    finally:
        shared.Free()
    pairs = comm.allgather((MPI.Get_processor_name(), leader))
    return layout_from_hosts([h for h, _ in pairs], [d for _, d in pairs])


def resolve_topologies(layout: Layout, requested) -> tuple:
    """Expand ``auto`` and validate: the tuple of topologies to measure, in order."""
    if isinstance(requested, str):
        requested = [requested]
    out = []
    for name in requested:
        if name not in REQUESTS:
            raise ValueError(f"unknown topology {name!r}; expected one of "
                             f"{', '.join(REQUESTS)}")
        if name == "auto":
            names = []
            if len(layout.ranks_by_node[0]) >= 2:
                names.append("intra")
            if layout.nodes >= 2:
                names.append("inter")
            names = names or ["intra"]
        else:
            names = [name]
        out += [n for n in names if n not in out]
    if not out:
        raise ValueError("no topology requested")
    return tuple(out)


def max_ranks(layout: Layout, topology: str) -> int:
    """The largest sub-communicator ``topology`` supports on ``layout``."""
    if topology == "intra":
        return len(layout.ranks_by_node[0])
    if topology == "inter":
        return layout.nodes
    if topology == "world":
        return layout.size
    raise ValueError(f"unknown topology {topology!r}; expected one of "
                     f"{', '.join(TOPOLOGIES)}")


def default_ranks(layout: Layout, topology: str) -> tuple:
    """Powers of two from 2 up to P, plus P (P = :func:`max_ranks`); ``(1,)`` if P = 1."""
    top = max_ranks(layout, topology)
    if top == 1:
        return (1,)
    ranks, p = [], 2
    while p <= top:
        ranks.append(p)
        p *= 2
    if ranks[-1] != top:
        ranks.append(top)
    return tuple(ranks)


def check_ranks(layout: Layout, topology: str, ranks) -> tuple:
    """Validate rank counts for ``topology``; return them sorted and deduplicated."""
    top = max_ranks(layout, topology)
    out = sorted(set(int(p) for p in ranks))
    bad = [p for p in out if p < 1]
    if bad:
        raise ValueError(f"--ranks must be >= 1, got {bad[0]}")
    big = [p for p in out if p > top]
    if big:
        where = {"intra": f"node {layout.names[0]} holds {top} rank(s)",
                 "inter": f"the job spans {top} node(s)",
                 "world": f"the job has {top} rank(s)"}[topology]
        raise ValueError(f"--ranks {big[0]} is larger than the {topology} topology "
                         f"supports: {where}")
    return tuple(out)


def members(layout: Layout, topology: str, p: int) -> tuple:
    """World ranks of the ``p``-rank sub-communicator of ``topology`` (ascending)."""
    check_ranks(layout, topology, [p])
    if topology == "intra":
        return layout.ranks_by_node[0][:p]
    if topology == "inter":
        return tuple(ranks[0] for ranks in layout.ranks_by_node[:p])
    return tuple(range(p))


def nodes_spanned(layout: Layout, ranks) -> int:
    """Number of distinct nodes the world ranks ``ranks`` live on."""
    return len({layout.node_of[r] for r in ranks})


def subcommunicator(comm, layout: Layout, topology: str, p: int):
    """Collective over ``comm``: the sub-communicator for this rank, or None if outside.

    Members keep their world order, so world rank 0 is rank 0 of every sub-communicator.
    The caller frees the communicator it gets.
    """
    from .mpi import MPI
    ranks = members(layout, topology, p)
    mine = comm.Get_rank() in ranks
    sub = comm.Split(0 if mine else MPI.UNDEFINED, key=comm.Get_rank())
    if not mine:
        return None
    return sub
