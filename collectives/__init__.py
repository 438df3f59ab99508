"""collcost measurement: timed collectives, hand-written algorithms and the sweep.

Importing this package does not initialize MPI; modules that need it import
:mod:`collectives.mpi`, which configures mpi4py first.
"""
__version__ = "0.1.0"
