"""The hand-written algorithms' caches (contexts, layouts, scratch) under reuse and Free."""
import pytest

from mpirun import mpirun


@pytest.mark.parametrize("p", [1, 3, 4])
def test_caches_survive_reuse_and_free(p):
    out = mpirun(p, ["tests/mpi_cache_check.py"], timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cache ok" in out.stdout
