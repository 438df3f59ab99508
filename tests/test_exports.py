"""Exports (fits.predict.exports): each document is read back the way its tool reads it and
must reproduce the model's times for several sizes.

The readers here restate each *external* tool's own arithmetic (Calculon's
Network.time, ASTRA-sim's BasicTopology delay, SimGrid's SMPI factor lookup, Alpa's
all_reduce_cost); the expected times come from fits.predict.hierarchy / collectives.costs.
"""
import json
import re
import xml.etree.ElementTree as ET

import pytest

import predict_fixtures as fx
from collectives import costs
from fits.predict import exports, hierarchy
from fits.predict import main

SIZES = [0, 1, 1000, 65535, 65536, 3 * 2 ** 20, 2 ** 26]
INTER_SEGS = [(0, 2e-6, 5e-10), (4096, 5e-6, 4.5e-10), (65536, 1.2e-5, 4e-10)]


def consts(**kw):
    return fx.two_level(q=4, nodes=8, **kw)


def model(c, level, collective, p, n, algorithm="ring"):
    return float(hierarchy.collective_time(c["topologies"][level], collective, algorithm,
                                           p, n))


# ---------------------------------------------------------------- Calculon

def calculon_time(net, op, n, p):
    """Calculon Network.time (calculon-ai/calculon, calculon/network.py)."""
    scalar, offset = net["ops"][op]
    size = n * scalar
    size += size / p * (offset or 0)
    return net["latency"] + size / (net["bandwidth"] * 1e9 * net["efficiency"])


class TestCalculon:
    KEYS = {"bandwidth", "efficiency", "size", "latency", "ops", "must_be_filled",
            "processor_usage"}

    def doc(self, c, **kw):
        return json.loads(exports.export(c, "calculon", **kw))

    def test_all_reduce_reproduces_the_model_at_the_network_size(self):
        c = consts(inter_algorithms={"allreduce": {"ring": fx.registry_entry(1e-5, 3e-10,
                                                                              None)}})
        nets = self.doc(c)["networks"]
        assert [n["size"] for n in nets] == [4, 8]
        for net, level in zip(nets, ("intra", "inter")):
            assert set(net) == self.KEYS
            assert set(net["ops"]) == {"p2p", "reduce_scatter", "all_gather", "all_reduce"}
            # ring: 2(p-1)/p nβ + (p-1)/p nγ = n (2 + γ/β)(1 - 1/p) β
            g = 2e-11 / 5e-11 if level == "intra" else 0.0  # inter: γ absorbed (null)
            assert net["ops"]["all_reduce"] == [pytest.approx(2.0 + g), -1.0]
            assert net["ops"]["p2p"][1] is None
            for n in SIZES:
                assert calculon_time(net, "all_reduce", n, net["size"]) == pytest.approx(
                    model(c, level, "allreduce", net["size"], n), rel=1e-11, abs=1e-18)

    def test_bandwidth_terms_of_every_op(self):
        c = consts()
        nets = self.doc(c)["networks"]
        for net, level in zip(nets, ("intra", "inter")):
            lvl = c["topologies"][level]
            for p in (2, 3, 4, 8):
                for op, coll in (("reduce_scatter", "reduce_scatter"),
                                 ("all_gather", "allgather"), ("all_reduce", "allreduce")):
                    n = 2 ** 22
                    per_byte = calculon_time(net, op, n, p) - net["latency"]
                    a, b, g = hierarchy.level_constants(lvl, coll, "ring")
                    want = float(costs.predict(coll, "ring", p, n, 0.0, b, g))
                    assert per_byte == pytest.approx(want, rel=1e-11)
            n = 12345
            assert calculon_time(net, "p2p", n, 2) - net["latency"] == pytest.approx(
                n * lvl["p2p"]["beta"], rel=1e-11)

    def test_units(self):
        net = self.doc(consts())["networks"][1]
        assert net["bandwidth"] == pytest.approx(1 / 4e-10 / 1e9)  # GB/s, 1e9 B
        assert net["latency"] == pytest.approx(2 * 7 * 8e-6)      # s, ring a(8) α

    def test_non_calculon_form_is_refused(self):
        with pytest.raises(ValueError, match="Calculon's scalar"):
            exports.calculon_networks(consts(), algorithm="binomial")


# ---------------------------------------------------------------- ASTRA-sim

class TestAstra:
    def test_read_back_reproduces_point_to_point(self):
        c = consts()
        for topo, hops in exports.ASTRA_HOPS.items():
            y = exports.read_astra_yaml(exports.export(c, "astra", astra_topology=topo))
            assert y["topology"] == [topo, topo]
            assert y["npus_count"] == [4, 8]
            for i, level in enumerate(("intra", "inter")):
                p2p = c["topologies"][level]["p2p"]
                bw_Bpns = y["bandwidth"][i] * 2 ** 30 / 1e9  # ASTRA-sim's conversion
                for n in SIZES[1:]:
                    delay_ns = hops * y["latency"][i] + n / bw_Bpns
                    assert delay_ns * 1e-9 == pytest.approx(
                        p2p["alpha"] + n * p2p["beta"], rel=1e-12)

    def test_reader(self):
        text = "# c\ntopology: [ Ring, Switch ]  # tail\n\nnpus_count: [2, 4]\nlatency: [ 1.5 ]\n"
        assert exports.read_astra_yaml(text) == {"topology": ["Ring", "Switch"],
                                                 "npus_count": [2, 4], "latency": [1.5]}
        with pytest.raises(ValueError, match="line 1"):
            exports.read_astra_yaml("topology Ring\n")

    def test_unknown_topology(self):
        with pytest.raises(ValueError, match="unknown ASTRA-sim topology"):
            exports.astra_yaml(consts(), topology="Torus")


# ---------------------------------------------------------------- SimGrid / SMPI

UNITS = {"Bps": 1.0, "kBps": 1e3, "MBps": 1e6, "GBps": 1e9, "s": 1.0, "ms": 1e-3,
         "us": 1e-6, "ns": 1e-9}


def quantity(text):
    m = re.fullmatch(r"([0-9.eE+-]+)([A-Za-z]+)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def smpi_factor(spec, size):
    """SimGrid NetworkSmpiModel::get_*_factor: last factor whose bound is < size."""
    entries = sorted((int(b), float(f)) for b, f in
                     (item.split(":") for item in spec.split(";")))
    current = 1.0
    for bound, factor in entries:
        if size <= bound:
            return current
        current = factor
    return current


class TestSimGrid:
    def read(self, text):
        root = ET.fromstring(text.split("\n", 2)[2])  # skip the prolog and DOCTYPE
        props = {p.get("id"): p.get("value") for p in root.find("config")}
        return root, props, root.find("cluster")

    def test_piecewise_inter_node_times(self):
        c = consts(inter_segments=INTER_SEGS)
        root, props, cl = self.read(exports.export(c, "simgrid"))
        assert root.get("version") == "4.1" and props["network/model"] == "SMPI"
        assert props["smpi/os"] == props["smpi/or"] == props["smpi/ois"] == "0:0:0"
        assert cl.get("radical") == "0-7" and cl.get("core") == "4"
        lat, bw = quantity(cl.get("lat")), quantity(cl.get("bw"))
        assert cl.get("bb_bw") is None  # no backbone: a route is two private links
        for n in SIZES + [4095, 4096, 4097]:
            route = 2 * lat * smpi_factor(props["smpi/lat-factor"], n) \
                + n / (bw * smpi_factor(props["smpi/bw-factor"], n))
            seg = [s for s in INTER_SEGS if s[0] <= n][-1]
            assert route == pytest.approx(seg[1] + n * seg[2], rel=1e-12)

    def test_loopback_carries_intra_constants(self):
        c = consts()
        _, props, cl = self.read(exports.simgrid_xml(c))
        p2p = c["topologies"]["intra"]["p2p"]
        for n in (0, 100, 2 ** 20):
            t = quantity(cl.get("loopback_lat")) * smpi_factor(props["smpi/lat-factor"], n) \
                + n / (quantity(cl.get("loopback_bw")) * smpi_factor(props["smpi/bw-factor"], n))
            assert t == pytest.approx(p2p["alpha"] + n * p2p["beta"], rel=1e-12)

    def test_only_intra_level(self):
        c = fx.constants(intra=fx.topology(ranks_per_node=2, nodes=1,
                                           p2p_segments=[(0, 1e-6, 1e-10),
                                                         (1024, 2e-6, 5e-11)]))
        _, props, cl = self.read(exports.simgrid_xml(c))
        assert cl.get("radical") == "0-0"
        assert props["smpi/lat-factor"] == "0:1;1023:2.0"
        assert props["smpi/bw-factor"] == "0:1;1023:2.0"

    def test_zero_alpha_reference_refused(self):
        with pytest.raises(ValueError, match="first point-to-point segment"):
            exports.smpi_factors([(0, 0.0, 1e-10), (100, 1e-6, 1e-10)])


# ---------------------------------------------------------------- Alpa / ColossalAI

def alpa_all_reduce_cost(mesh, num_bytes, dim):
    """Alpa LogicalDeviceMesh.all_reduce_cost without its fixed 0.01 tie-breaker."""
    k = mesh["mesh_shape"][dim]
    return mesh["mesh_alpha"][dim] + mesh["mesh_beta"][dim] * 2 * (k - 1) / k * num_bytes


class TestAlpa:
    @pytest.mark.parametrize("unit,scale", [("us", 1e-6), ("s", 1.0)])
    @pytest.mark.parametrize("algorithm", ["ring", "rabenseifner", "recursive_doubling"])
    def test_read_back(self, unit, scale, algorithm):
        c = consts()
        mesh = json.loads(exports.export(c, "alpa", time_unit=unit, algorithm=algorithm))
        assert mesh["mesh_shape"] == [8, 4] and mesh["mesh_dims"] == ["inter", "intra"]
        assert mesh["time_unit"] == unit
        for dim, level in enumerate(mesh["mesh_dims"]):
            k = mesh["mesh_shape"][dim]
            for n in SIZES:
                assert alpa_all_reduce_cost(mesh, n, dim) * scale == pytest.approx(
                    model(c, level, "allreduce", k, n, algorithm), rel=1e-12, abs=1e-18)

    def test_bad_unit(self):
        with pytest.raises(ValueError, match="time unit"):
            exports.alpa_mesh(consts(), time_unit="h")


# ---------------------------------------------------------------- sizes

class TestSizes:
    def test_override_and_fallback(self):
        c = consts()
        assert [s for _, _, s in exports.levels(c, {"inter": 64})] == [4, 64]
        mesh = exports.alpa_mesh(c, sizes={"intra": 8, "inter": 16})
        assert mesh["mesh_shape"] == [16, 8]
        # nodes missing or 1: the largest rank count fitted on the level
        c = fx.constants(inter=fx.topology(ranks_per_node=1, nodes=1, algorithms={
            "allreduce": {"ring": fx.registry_entry(1e-5, 1e-9, None, ranks=(2, 3, 6))}}))
        assert exports.levels(c)[0][2] == 6
        with pytest.raises(ValueError, match="intra and inter only"):
            exports.levels(c, {"world": 3})


# ---------------------------------------------------------------- CLI

class TestExportCli:
    def test_writes_file_atomically(self, tmp_path, capsys):
        from fits.constants import save
        path = save(consts(), tmp_path / "c.json")
        out = tmp_path / "sub" / "net.yaml"
        assert main(["export", str(path), "--target", "astra", "-o", str(out)]) == 0
        assert exports.read_astra_yaml(out.read_text())["npus_count"] == [4, 8]
        assert [p.name for p in out.parent.iterdir()] == ["net.yaml"]
        assert main(["export", str(path), "--target", "calculon"]) == 0
        assert json.loads(capsys.readouterr().out)["networks"][0]["size"] == 4
        assert main(["export", str(path), "--target", "alpa", "--nodes", "32",
                     "--ranks-per-node", "2"]) == 0
        assert json.loads(capsys.readouterr().out)["mesh_shape"] == [32, 2]

    def test_errors_exit_2_and_write_nothing(self, tmp_path, capsys):
        from fits.constants import save
        path = save(consts(), tmp_path / "c.json")
        out = tmp_path / "x.json"
        assert main(["export", str(path), "--target", "calculon", "--algorithm", "tree",
                     "-o", str(out)]) == 2
        assert "unknown algorithm 'tree'" in capsys.readouterr().err
        assert not out.exists()
        assert main(["export", str(tmp_path / "none.json"), "--target", "alpa"]) == 2
        assert "none.json" in capsys.readouterr().err
        bad = tmp_path / "bad.json"
        bad.write_text('{"kind": "collcost-constants", "schema_version": 9}')
        assert main(["export", str(bad), "--target", "alpa"]) == 2
        assert "schema_version" in capsys.readouterr().err
        with pytest.raises(SystemExit) as e:
            main(["export", str(path), "--target", "ns3"])
        assert e.value.code == 2
