"""MPI worker: ``collectives.check`` on a registry holding one deliberately wrong
all-reduce (``ring`` that drops the last rank's contribution to element 0).

Negative control for the check: it must exit 1 and name the failing case.
"""
import sys

import numpy as np

from collectives import check
from collectives.algorithms import allreduce


def wrong_ring(comm, sendbuf, recvbuf, op):
    if comm.Get_rank() == comm.Get_size() - 1 and sendbuf.size:
        sendbuf = np.array(sendbuf, copy=True)
        sendbuf[0] = 0
    allreduce.ring(comm, sendbuf, recvbuf, op)


if __name__ == "__main__":
    sys.exit(check.main(sys.argv[1:], algorithms={("allreduce", "wrong_ring"): wrong_ring}))
