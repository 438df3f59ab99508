"""The joint fit's design matrix (fits.joint.design) restates, column by column,
collectives.costs.predict_steps; this pins the two together so that a change of the
formula in costs.py cannot leave the fit pricing something else."""
import numpy as np
import pandas as pd

from fits import joint, synthetic

ENTRIES = [("pingpong", "native"), ("reduce_local", "native"), ("allreduce", "ring"),
           ("allreduce", "recursive_doubling"), ("allreduce", "rabenseifner"),
           ("bcast", "binomial"), ("reduce_scatter", "recursive_halving"),
           ("allgather", "ring")]


def test_design_prices_like_predict_steps():
    truth = synthetic.Truth(segments=((0, 5e-6, 1e-9), (65536, 2e-5, 5e-10)))
    sizes = (0,) + tuple(2 ** k for k in range(3, 23))
    rows = synthetic.synthetic_points(truth, ENTRIES, ranks=(2, 3, 4, 7), sizes=sizes,
                                      seed=2, repetitions=5, noise=0.03)
    frame = pd.DataFrame(rows)
    fit = joint.fit_joint(frame, None, p2p_breakpoints=(65536,),
                          gamma_breakpoints=(65536,))
    # every column in play, whatever the fit found: software costs, contention
    theta = fit.theta.copy()
    names = fit.names
    for name, value in (("python_step_s", 1e-6), ("python_call_s", 2e-6),
                        ("kernel_call_s", 3e-6), ("python_byte_s", 1e-11),
                        ("contention_s_per_B", 2e-11)):
        theta[names.index(name)] = value
    entry = dict(fit.entry)
    entry["software"] = {"python": {"step_s": {"value": 1e-6}, "call_s": {"value": 2e-6},
                                    "byte_s": {"value": 1e-11}},
                         "kernel": {"call_s": {"value": 3e-6}}}
    entry["contention"] = {"value": 2e-11}
    assert len(fit.regimes) >= 1 and len(fit.gamma_breakpoints) == 1
    X = joint.design(frame, fit.regimes, fit.gamma_breakpoints, entry["regime_key"])
    by_design = X @ theta
    for (c, a), g in frame.groupby(["collective", "algorithm"]):
        if c == "pingpong":  # its largest regime's burst credit is a nuisance column
            continue
        priced = joint.predict(entry, c, a, g["ranks"].to_numpy(), g["bytes"].to_numpy(),
                               implementation=joint._impl(c, a))
        np.testing.assert_allclose(by_design[g.index], priced, rtol=1e-12, err_msg=(c, a))
