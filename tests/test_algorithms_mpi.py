"""Every hand-written algorithm against the native MPI collective under ``mpiexec``.

One launch per rank count p = 1..6 runs ``python -m collectives.check --ranks p``:
every algorithm x dtype (float32, float64, int32, int64) x op (sum, max, min) x element
count (0, 1, p-1, p+1, 97) x broadcast root (first and last), all-reduce also in place,
plus one 8 MiB
case per algorithm (above the eager threshold).  The device path runs with the fake
``__cuda_array_interface__`` arrays of :mod:`fakecuda`; negative controls show that the
check catches a wrong algorithm and a missing stream synchronization.
"""
import re

import pytest

from collectives.algorithms import ALGORITHMS
from mpirun import mpirun

#: Oversubscribed MPICH ranks spin; yielding makes p = 6 on 2 cores ~4x faster.
ENV = {"MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"}
ROW = re.compile(r"^\s*(\d+) (\w+)\s+(\w+)\s+(\d+)\s+(\d+)\s+\S+\s+(\d+)$", re.M)


def table(stdout):
    return {(int(m[1]), m[2], m[3]): (int(m[4]), int(m[5]), int(m[6]))
            for m in ROW.finditer(stdout)}


@pytest.mark.parametrize("p", range(1, 7))
def test_every_algorithm_matches_native(p):
    out = mpirun(p, ["-m", "collectives.check", "--ranks", p, "--roots", "0,last"],
                 timeout=150, env=ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = table(out.stdout)
    assert {(c, a) for (_, c, a) in rows} == set(ALGORITHMS)
    for (ranks, coll, alg), (cases, failed, biggest) in rows.items():
        assert ranks == p and failed == 0
        assert biggest * 4 >= 8 << 20, f"{coll}/{alg}: no 8 MiB case"
        assert cases >= 4 * 4, f"{coll}/{alg}: only {cases} cases"
    assert re.search(r"all \d+ cases match the native MPI result", out.stdout)


def test_device_path_with_fake_cuda_arrays():
    out = mpirun(3, ["tests/mpi_device_check.py", "--large", "1MiB", "--roots", "0,last"],
                 timeout=120, env=ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cases match the native MPI result" in out.stdout
    assert int(re.search(r"synchronizations: (\d+)", out.stdout)[1]) > 0


def test_missing_synchronization_is_caught():
    """Negative control: without the syncs, queued kernels have not run when MPI reads."""
    out = mpirun(3, ["tests/mpi_device_check.py", "--without-sync", "--large", "0",
                     "--dtypes", "int32", "--roots", "0"], timeout=120, env=ENV)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL " in out.stderr


def test_check_names_a_wrong_algorithm():
    out = mpirun(3, ["tests/mpi_broken_check.py", "--large", "0", "--dtypes", "int32",
                     "--ops", "sum"], timeout=60, env=ENV)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"FAIL allreduce/wrong_ring p=3 int32 sum count=1\b.*rank 0: wrong "
                     r"result", out.stderr), out.stderr


@pytest.mark.parametrize("args,message", [
    (["--dtypes", "float16"], "unknown dtype float16"),
    (["--ranks", "3"], "only 1 were launched"),
    (["--counts", "p*2"], "cannot read 'p\\*2'"),
    (["--large", "lots"], "--large must be a size"),
    (["--collectives", "bcast", "--algorithms", "ring"], "no algorithm"),
])
def test_usage_errors_exit_2(args, message):
    out = mpirun(1, ["-m", "collectives.check"] + args, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert re.search(message, out.stderr), out.stderr
    assert out.stdout == ""
