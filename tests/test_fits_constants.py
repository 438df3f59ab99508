"""fits.constants: schema validation (jsonschema and the built-in checker), atomic I/O."""
import copy
import json

import pandas as pd
import pytest

from fits import constants, synthetic
from fits.fit import FitOptions, fit_points


@pytest.fixture(scope="module")
def valid():
    rows = synthetic.synthetic_points(
        synthetic.Truth(), [("pingpong", "native"), ("allreduce", "ring"),
                            ("bcast", "native"), ("reduce_local", "native")],
        ranks=(2, 3), sizes=(0,) + tuple(2 ** k for k in range(0, 24, 3)), seed=0)
    return fit_points(pd.DataFrame(rows), FitOptions(bootstrap=10)).constants


def _broken(valid):
    cases = []
    for mutate, needle in [
        (lambda c: c["topologies"]["intra"]["algorithms"]["allreduce"]["ring"]
         .__setitem__("beta", -1.0), "beta"),
        (lambda c: c["topologies"]["intra"]["p2p"].pop("alpha"), "alpha"),
        (lambda c: c["topologies"]["intra"]["p2p"].__setitem__("alpha_ci", [1.0]), "alpha_ci"),
        (lambda c: c["topologies"].__setitem__("moon", {}), "moon"),
        (lambda c: c["topologies"]["intra"]["algorithms"]["bcast"]["native"]
         ["per_ranks"]["2"].pop("beta"), "beta"),
        (lambda c: c["provenance"]["options"].__setitem__("loss", "l0"), "l0"),
    ]:
        bad = copy.deepcopy(valid)
        mutate(bad)
        cases.append((bad, needle))
    return cases


@pytest.mark.parametrize("use_jsonschema", [True, False])
def test_both_validators_agree(valid, monkeypatch, use_jsonschema):
    if not use_jsonschema:
        monkeypatch.setattr(constants, "_jsonschema", lambda: None)
        assert constants.validator_name() == "built-in"
    else:
        assert constants.validator_name() == "jsonschema"
    constants.validate(valid)
    for bad, needle in _broken(valid):
        with pytest.raises(constants.ConstantsError, match=needle):
            constants.validate(bad)


def test_roundtrip(valid, tmp_path):
    path = constants.save(valid, tmp_path / "c.json")
    assert constants.load(path) == json.loads(json.dumps(valid))


def test_invalid_object_writes_nothing(valid, tmp_path):
    target = tmp_path / "c.json"
    constants.save(valid, target)
    before = target.read_bytes()
    bad = copy.deepcopy(valid)
    bad["topologies"]["intra"]["p2p"]["beta"] = float("nan")
    with pytest.raises(constants.ConstantsError):
        constants.save(bad, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temp file left


def test_unknown_schema_version_on_read(valid, tmp_path):
    obj = copy.deepcopy(valid)
    obj["schema_version"] = 2
    path = tmp_path / "c.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(constants.ConstantsError, match="unknown schema_version 2"):
        constants.load(path)


def test_not_json_or_not_constants(tmp_path):
    (tmp_path / "a.json").write_text("{oops")
    with pytest.raises(constants.ConstantsError, match="not valid JSON"):
        constants.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"kind": "collcost-run", "schema_version": 1}')
    with pytest.raises(constants.ConstantsError, match="not a collcost constants"):
        constants.load(tmp_path / "b.json")
    with pytest.raises(constants.ConstantsError, match="cannot read"):
        constants.load(tmp_path / "missing.json")
