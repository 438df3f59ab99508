"""The bootstrap's memory is bounded: replicates x points is checked before anything
is allocated, and each point's repetition resampling is drawn in chunks (same numbers
as one draw, so a seed keeps its intervals)."""
import numpy as np
import pandas as pd
import pytest

from fits import bootstrap, synthetic
from fits.fit import FitError, FitOptions, fit_points


class _Spy:
    """A Generator that records the size of every integers() draw."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.sizes = []

    def integers(self, low, high, size):
        self.sizes.append(size)
        return self.rng.integers(low, high, size=size)

    def __getattr__(self, name):
        return getattr(self.rng, name)


def test_a_million_points_times_200_replicates_is_refused_before_allocating():
    m = 10 ** 6
    samples = [np.empty(0)] * m  # no per-point arrays: the check comes first
    with pytest.raises(ValueError, match=r"--bootstrap 200 with 1000000 points.*"
                                         r"--bootstrap 50 or fewer"):
        bootstrap.replicate_points(samples, np.ones(m), np.zeros(m), 200,
                                   np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"--bootstrap 10000"):
        bootstrap.check_size(10000, 10 ** 5)
    bootstrap.check_size(50, m)  # at the limit: allowed


def test_fit_points_names_bootstrap(monkeypatch):
    rows = synthetic.synthetic_points(synthetic.Truth(), [("pingpong", "native")],
                                      sizes=(8, 1024, 65536), seed=1)
    monkeypatch.setattr(bootstrap, "MAX_CELLS", 10 * len(rows))
    with pytest.raises(FitError, match=r"--bootstrap 11 .*--bootstrap 10 or fewer"):
        fit_points(pd.DataFrame(rows), FitOptions(bootstrap=11))


def test_repetitions_resampled_in_chunks_with_the_same_numbers(monkeypatch):
    k, B = 21, 200
    samples = [np.random.default_rng(2).random(k), np.empty(0),
               np.random.default_rng(3).random(5)]
    medians, launches = np.ones(3), np.zeros(3)
    whole = bootstrap.replicate_points(samples, medians, launches, B,
                                       np.random.default_rng(9), points=True)
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 50)  # 2 replicates of 21 at a time
    spy = _Spy(9)
    chunked = bootstrap.replicate_points(samples, medians, launches, B, spy, points=True)
    assert max(a * b for a, b in spy.sizes) <= 50
    assert len(spy.sizes) > 100  # the chunked path was taken
    np.testing.assert_array_equal(chunked.times, whole.times)
    np.testing.assert_array_equal(chunked.weights, whole.weights)


def test_cli_refuses_with_exit_2_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from fits.__main__ import main
    rows = synthetic.synthetic_points(synthetic.Truth(), [("pingpong", "native")],
                                      sizes=(8, 1024, 65536), seed=1)
    run = synthetic.write_run(tmp_path / "run", rows)
    monkeypatch.setattr(bootstrap, "MAX_CELLS", 100 * len(rows))
    out = tmp_path / "c.json"
    assert main([str(run), "--out", str(out), "--bootstrap", "101", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "--bootstrap 101" in err and "--bootstrap 100 or fewer" in err
    assert not out.exists()
