"""MPI worker: ``collectives.check`` with the fake device arrays of :mod:`fakecuda`.

Usage: ``mpiexec -n P python tests/mpi_device_check.py [--without-sync] CHECK-OPTIONS``.
``--without-sync`` turns the algorithms' stream synchronizations into no-ops (a
negative control: the check must then fail).  Rank 0 prints the number of
synchronizations.  Exit status: that of the check.
"""
import sys

import fakecuda

from collectives import arrays, check
from collectives.algorithms import allgather, allreduce, bcast, reduce_scatter, reductions


def main(argv):
    if argv and argv[0] == "--without-sync":
        argv = argv[1:]
        for module in (allgather, allreduce, bcast, reduce_scatter, reductions):
            module.synchronize = lambda buf: None
    check.BUFFERS["fakecuda"] = fakecuda.asarray
    status = check.main(["--buffer", "fakecuda"] + argv)
    from collectives.mpi import MPI
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(f"synchronizations: {fakecuda.STREAM.synchronizations}", flush=True)
    assert arrays.array_module(fakecuda.empty(1, "f8")) is fakecuda
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
