"""Exports (fits.predict.exports): each document is read back the way its tool reads it and
must reproduce collcost's own prediction from the topology constants.

The readers here restate each *external* tool's own arithmetic and loader checks
(Calculon's Network and LLM network-assignment checks, ASTRA-sim's analytical backends,
Alpa's all_reduce_cost, ColossalAI's profiler convention); the expected times come from
fits.predict.topology / collectives.costs.  The real planner files are in
../shared/planners (Calculon system files, ASTRA-sim network YAMLs).  SimGrid is checked
in the real SimGrid by tests/test_exports_simgrid.py.
"""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import predict_fixtures as fx
from collectives import costs
from fits.predict import exports, topology
from fits.predict import main

SIZES = [0, 1, 1000, 65535, 65536, 3 * 2 ** 20, 2 ** 26]
INTER_SEGS = [(0, 2e-6, 5e-10), (4096, 5e-6, 4.5e-10), (65536, 1.2e-5, 4e-10)]
PLANNERS = Path("/work/shared/planners")
for _up in Path(__file__).resolve().parents:
    if (_up / "shared" / "planners").is_dir():
        PLANNERS = _up / "shared" / "planners"
        break
need_planners = pytest.mark.skipif(not PLANNERS.is_dir(), reason="the real planner files "
                                   "(../shared/planners) are not in this checkout")


def consts(**kw):
    return fx.two_level(q=4, nodes=8, **kw)


def link(c, level):
    return topology.link(c, level)


def doc(c, target, **kw):
    return json.loads(exports.export(c, target, **kw))


# ---------------------------------------------------------------- topology constants

class TestTopologyConstants:
    def test_headline_wins_over_segments(self):
        c = fx.two_level(q=2, nodes=2, inter_segments=INTER_SEGS)
        fx.add_headline(c, "inter", latency=3e-6, bandwidth=2e9)
        lk = link(c, "inter")
        assert (lk.latency, lk.beta) == (3e-6, pytest.approx(5e-10))
        assert lk.source.startswith("headline")
        assert float(topology.p2p_time(lk, 1000)) == pytest.approx(3e-6 + 1000 / 2e9)

    def test_fallback_small_alpha_large_beta(self):
        lk = link(consts(inter_segments=INTER_SEGS), "inter")
        assert (lk.latency, lk.beta) == (2e-6, 4e-10)  # first α, last β
        assert "no headline" in lk.source

    def test_gamma_is_used_whatever_its_status_and_the_notes_say_so(self):
        c = fx.two_level(q=2, nodes=2)
        g = c["topologies"]["intra"]["gamma"]
        g.update(value=2e-11, status="not_identified", identifiable=False)
        lk = link(c, "intra")
        assert (lk.gamma, lk.gamma_status) == (2e-11, "not_identified")
        notes = exports.build(c, "calculon").notes
        assert any("intra" in n and "γ 20 ps/B (not_identified)" in n for n in notes)

    def test_unusable_headline_is_an_error(self):
        c = fx.two_level(q=2, nodes=2)
        fx.add_headline(c, "inter", latency=None, bandwidth=2e9, status="not_identified")
        with pytest.raises(ValueError, match="inter: the headline latency has no usable"):
            link(c, "inter")


# ---------------------------------------------------------------- Calculon

KNETOPS = {"p2p", "reduce_scatter", "all_gather", "all_reduce"}


def calculon_network(cfg):
    """Calculon's Network.__init__ / _parse_op checks (calculon-ai/calculon,
    calculon/network.py); returns (bw B/s, eff, size, latency, ops)."""
    assert set(cfg) == {"bandwidth", "efficiency", "size", "latency", "ops",
                        "must_be_filled", "processor_usage"}
    bw = cfg["bandwidth"] * 1e9
    assert bw > 0
    assert 0 < cfg["efficiency"] <= 1.0
    assert cfg["size"] >= 0
    ops = {}
    for op, (scalar, offset) in cfg["ops"].items():
        assert op in KNETOPS and scalar > 0.0
        if op == "p2p":
            assert offset is None
            offset = 0
        else:
            assert offset is not None
        ops[op] = (scalar, offset)
    assert set(ops) == KNETOPS
    assert 0.0 <= cfg["processor_usage"] < 1.0
    return bw, cfg["efficiency"], cfg["size"], cfg["latency"], ops


def calculon_time(cfg, op, n, p):
    """Calculon Network.time."""
    bw, eff, _, latency, ops = calculon_network(cfg)
    assert p == 2 if op == "p2p" else p >= 2
    scalar, offset = ops[op]
    size = n * scalar
    size += size / p * offset
    return latency + size / (bw * eff)


def calculon_assign(nets, **par):
    """Calculon Llm._check_network_assignments: {tensor,pipeline,data}_par(_net)."""
    used, size = [False] * len(nets), [1] * len(nets)
    for kind in ("tensor", "pipeline", "data"):
        n, net = par.get(f"{kind}_par", 1), par.get(f"{kind}_par_net", 0)
        assert net < len(nets)
        if n > 1:
            used[net] = True
            size[net] *= n
    for tier, (u, s) in enumerate(zip(used, size)):
        if u:
            if s > nets[tier]["size"]:
                raise RuntimeError(f"Network tier{tier} isn't big enough")
            if nets[tier]["must_be_filled"] and nets[tier]["size"] % s != 0:
                raise RuntimeError(f"Network tier{tier} isn't fully used")


EMULATED = Path(__file__).resolve().parent.parent / "data" / "example-emulated-2x2" / \
    "constants-2x2.json"


class TestCalculon:
    def test_size_counts_processors(self):
        assert [n["size"] for n in doc(consts(), "calculon")["networks"]] == [4, 32]
        c = json.loads(EMULATED.read_text())
        nets = doc(c, "calculon")["networks"]
        assert [n["size"] for n in nets] == [2, 4]
        calculon_assign(nets, data_par=4, data_par_net=1)        # was refused before
        calculon_assign(nets, tensor_par=2, data_par=2, data_par_net=1)
        with pytest.raises(RuntimeError, match="tier0 isn't big enough"):
            calculon_assign(nets, tensor_par=4)

    @need_planners
    @pytest.mark.parametrize("system", ["a100_80g.json", "h100_80g_nvl8.json"])
    def test_spliced_into_a_real_system_file(self, system):
        base_text = (PLANNERS / "calculon" / system).read_text()
        c = json.loads(EMULATED.read_text())
        out = json.loads(exports.build(c, "calculon", calculon_base=(base_text, system)).text)
        base = json.loads(base_text)
        for key in ("matrix", "vector", "mem1", "mem2", "processing_mode"):
            assert out[key] == base[key]
        assert len(out["networks"]) == 2
        for net in out["networks"]:
            calculon_network(net)
        assert out["processing_mode"] in ("roofline", "no_overlap")
        calculon_assign(out["networks"], tensor_par=2, data_par=2, data_par_net=1)

    def test_not_a_system_file(self):
        with pytest.raises(ValueError, match="x.json: not a Calculon system file"):
            exports.build(consts(), "calculon", calculon_base=('{"networks": []}', "x.json"))
        with pytest.raises(ValueError, match="x.json: not JSON"):
            exports.build(consts(), "calculon", calculon_base=("{", "x.json"))

    @pytest.mark.parametrize("latency", exports.CALCULON_LATENCIES)
    def test_times(self, latency):
        c = fx.two_level(q=4, nodes=8)
        fx.add_headline(c, "inter", latency=1.2e-5, bandwidth=2.2e9)
        nets = doc(c, "calculon", calculon_latency=latency)["networks"]
        for net, level in zip(nets, ("intra", "inter")):
            lk = link(c, level)
            P = net["size"]
            ar_alpha = float(costs.predict("allreduce", "ring", P, 0, lk.latency, 0, 0))
            lat = lk.latency if latency == "message" else ar_alpha
            assert net["latency"] == pytest.approx(lat, rel=1e-12)
            assert net["bandwidth"] == pytest.approx(lk.bandwidth / 1e9, rel=1e-12)
            for n in SIZES:
                assert calculon_time(net, "p2p", n, 2) == pytest.approx(
                    lat + n * lk.beta, rel=1e-11)
                for p in (2, 3, P):
                    for op, coll in (("reduce_scatter", "reduce_scatter"),
                                     ("all_gather", "allgather"), ("all_reduce", "allreduce")):
                        want = float(costs.predict(coll, "ring", p, n, 0.0, lk.beta, lk.gamma))
                        assert calculon_time(net, op, n, p) - lat == pytest.approx(
                            want, rel=1e-11, abs=1e-18)
            if latency == "allreduce":  # a full-tier all-reduce is exact
                n = 2 ** 20
                assert calculon_time(net, "all_reduce", n, P) == pytest.approx(float(
                    costs.predict("allreduce", "ring", P, n, lk.latency, lk.beta, lk.gamma)))
        assert net["ops"]["all_reduce"][1] == -1.0
        assert net["ops"]["all_gather"] == [1.0, -1.0]

    def test_non_calculon_form_is_refused(self):
        with pytest.raises(ValueError, match="Calculon's scalar"):
            exports.calculon_networks(consts(), algorithm="binomial")


# ---------------------------------------------------------------- ASTRA-sim

def astra_delay_s(y, dim, n, topo, backend):
    """One message to a neighbour in ASTRA-sim's analytical backends (astra-network-
    analytical): unaware ``hops·latency + n/bw``; aware: every link of the route (Switch:
    NPU->switch->NPU) serializes the chunk, ``sum(latency + n/bw)``."""
    bw_Bpns = y["bandwidth"][dim] * (1 << 30) / 1e9  # bw_GBps_to_Bpns
    hops = 2 if topo == "Switch" else 1
    if backend == "congestion_unaware":
        ns = hops * y["latency"][dim] + n / bw_Bpns
    else:
        ns = hops * (y["latency"][dim] + n / bw_Bpns)
    return ns * 1e-9


class TestAstra:
    @pytest.mark.parametrize("backend", exports.ASTRA_BACKENDS)
    @pytest.mark.parametrize("topo", exports.ASTRA_TOPOLOGIES)
    def test_read_back_reproduces_point_to_point(self, topo, backend):
        c = consts(inter_segments=INTER_SEGS)
        fx.add_headline(c, "inter", latency=1.1e-5, bandwidth=2.3e9)
        levels = ("intra", "inter")
        if backend == "congestion_aware":  # one dimension only (see below)
            del c["topologies"]["intra"]
            levels = ("inter",)
        y = exports.read_astra_yaml(exports.export(c, "astra", astra_topology=topo,
                                                   astra_backend=backend))
        assert list(y) == ["topology", "npus_count", "bandwidth", "latency"]
        assert y["topology"] == [topo] * len(levels)
        assert y["npus_count"] == [{"intra": 4, "inter": 8}[lv] for lv in levels]
        for i, level in enumerate(levels):
            lk = link(c, level)
            for n in SIZES[1:]:
                assert astra_delay_s(y, i, n, topo, backend) == pytest.approx(
                    float(topology.p2p_time(lk, n)), rel=1e-12)

    @need_planners
    @pytest.mark.parametrize("name", ["Ring_4npus.yml", "HGX-H100-validated.yml"])
    def test_same_keys_order_and_units_as_real_files(self, name):
        real = exports.read_astra_yaml((PLANNERS / "astra-sim" / name).read_text())
        # constants whose message cost is the real file's link: the export must give
        # back its numbers (GB/s with 2^30 B, ns per link)
        topo = real["topology"][0]
        hops = exports.ASTRA_HOPS[topo]
        bw_Bps = real["bandwidth"][0] * 2 ** 30
        c = fx.constants(intra=fx.topology(ranks_per_node=real["npus_count"][0], nodes=1))
        fx.add_headline(c, "intra", latency=real["latency"][0] * hops * 1e-9,
                        bandwidth=bw_Bps)
        y = exports.read_astra_yaml(exports.export(c, "astra", astra_topology=topo))
        assert list(y) == list(real)
        assert y["npus_count"] == real["npus_count"][:1]
        assert y["bandwidth"][0] == pytest.approx(real["bandwidth"][0], rel=1e-12)
        assert y["latency"][0] == pytest.approx(real["latency"][0], rel=1e-12)

    def test_latency_from_small_messages(self):
        c = json.loads(EMULATED.read_text())
        y = exports.read_astra_yaml(exports.export(c, "astra", astra_topology="Ring"))
        seg0 = c["topologies"]["inter"]["p2p"]["segments"][0]
        assert y["latency"][1] == pytest.approx(link(c, "inter").latency * 1e9)
        if "headline" not in c["topologies"]["inter"]:
            assert y["latency"][1] == pytest.approx(seg0["alpha"] * 1e9)
        assert y["latency"][1] > 1000  # µs-scale, not the 0 of the large-message fit

    def test_congestion_aware_takes_one_dimension(self):
        # astra-network-analytical, congestion_aware/topology/Helper.cpp
        # construct_topology: "if (dims_count != 1) ... only support 1-dim topology";
        # exit(-1).  A two-level export for it would not load.
        with pytest.raises(ValueError, match="congestion_aware.*one dimension.*intra, "
                                             "inter"):
            exports.astra_yaml(consts(), backend="congestion_aware")
        one = fx.constants(inter=fx.topology(ranks_per_node=1, nodes=4))
        out = exports.build(one, "astra", astra_backend="congestion_aware")
        assert exports.read_astra_yaml(out.text)["npus_count"] == [4]
        # the doubled Switch link bandwidth is right for one message, not for messages
        # that queue on one link: the notes say so
        assert any("contended traffic comes out up to 2× too fast" in n for n in out.notes)
        out = exports.build(one, "astra", astra_backend="congestion_aware",
                            astra_topology="Ring")
        assert not any("contended" in n for n in out.notes)

    def test_npu_count_fits_a_c_int(self):
        # the parser reads npus_count as int and MultiDimTopology multiplies them
        # (npus_count *= topology_size, int): the total must fit in 2^31 - 1
        y = exports.read_astra_yaml(exports.export(consts(), "astra", sizes={
            "intra": 2 ** 15, "inter": 2 ** 16 - 1}))
        assert y["npus_count"] == [2 ** 15, 2 ** 16 - 1]
        with pytest.raises(ValueError, match="2147483647"):
            exports.astra_yaml(consts(), sizes={"intra": 2 ** 15, "inter": 2 ** 16})

    def test_latency_beyond_a_double_in_ns_refused(self):
        c = consts()
        fx.add_headline(c, "inter", latency=1e300, bandwidth=1e9)
        with pytest.raises(ValueError, match="latency.*not a finite number"):
            exports.astra_yaml(c)

    def test_one_npu_dimension_refused(self):
        with pytest.raises(ValueError, match="one NPU.*intra has 1"):
            exports.astra_yaml(consts(), sizes={"intra": 1})

    def test_reader(self):
        text = "# c\ntopology: [ Ring, Switch ]  # tail\n\nnpus_count: [2, 4]\nlatency: [ 1.5 ]\n"
        assert exports.read_astra_yaml(text) == {"topology": ["Ring", "Switch"],
                                                 "npus_count": [2, 4], "latency": [1.5]}
        with pytest.raises(ValueError, match="line 1"):
            exports.read_astra_yaml("topology Ring\n")

    def test_unknown_topology_or_backend(self):
        with pytest.raises(ValueError, match="unknown ASTRA-sim topology"):
            exports.astra_yaml(consts(), topology="Torus")
        with pytest.raises(ValueError, match="unknown ASTRA-sim backend"):
            exports.astra_yaml(consts(), backend="garnet")


# ---------------------------------------------------------------- SimGrid (structure)

UNITS = {"Bps": 1.0, "s": 1.0}


def quantity(text):
    for unit in ("Bps", "s"):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * UNITS[unit]
    raise AssertionError(text)


class TestSimGrid:
    def files(self, c, **kw):
        out = exports.simgrid_files(c, **kw)
        root = ET.fromstring(out.text.split("\n", 2)[2])  # skip the prolog and DOCTYPE
        return out, root, root.find("cluster")

    def test_plain_platform_and_separate_smpi_options(self):
        c = consts()
        out, root, cl = self.files(c)
        props = {p.get("id"): p.get("value") for p in root.find("config")}
        assert not [k for k in props if k.startswith("smpi/")]
        assert props == {"network/model": "CM02", "network/crosstraffic": "0",
                         "network/TCP-gamma": "0"}
        opts = dict(line[len("--cfg="):].split(":", 1) for line in
                    out.extra["smpi"].split())
        assert opts["smpi/bw-factor"] == opts["smpi/lat-factor"] == "0:1"
        assert opts["smpi/os"] == opts["smpi/or"] == opts["smpi/ois"] == "0:0:0"
        assert out.extra["hostfile"].split() == [f"node-{i}:4" for i in range(8)]

    def test_links_carry_each_topology(self):
        c = consts(inter_segments=INTER_SEGS)
        fx.add_headline(c, "intra", latency=4e-7, bandwidth=3e10)
        _, _, cl = self.files(c)
        assert cl.get("radical") == "0-7" and cl.get("core") == "4"
        assert cl.get("bb_bw") is None  # no backbone: a route is two private links
        inter, intra = link(c, "inter"), link(c, "intra")
        for n in SIZES:
            route = 2 * quantity(cl.get("lat")) + n / quantity(cl.get("bw"))
            assert route == pytest.approx(float(topology.p2p_time(inter, n)), rel=1e-12)
            loop = quantity(cl.get("loopback_lat")) + n / quantity(cl.get("loopback_bw"))
            assert loop == pytest.approx(4e-7 + n / 3e10, rel=1e-12)

    def test_host_count_is_bounded(self):
        # the hostfile has a line per host: a node count from a damaged constants file
        # (or --nodes 10^9) must be refused, not written line by line for minutes
        hosts = exports.SIMGRID_MAX_HOSTS
        out = exports.simgrid_files(consts(), sizes={"inter": 1024})
        assert len(out.extra["hostfile"].splitlines()) == 1024
        with pytest.raises(ValueError, match=f"at most {hosts}"):
            exports.simgrid_files(consts(), sizes={"inter": hosts + 1})
        c = consts()
        c["topologies"]["inter"]["nodes"] = 10 ** 12
        with pytest.raises(ValueError, match=f"at most {hosts}"):
            exports.simgrid_files(c)

    def test_missing_topology_is_an_error(self):
        c = fx.constants(intra=fx.topology(ranks_per_node=2, nodes=1))
        _, _, cl = self.files(c)
        assert cl.get("radical") == "0-0" and cl.get("core") == "2"
        with pytest.raises(ValueError, match="no 'inter' topology.*inter size of 4"):
            exports.simgrid_files(c, sizes={"inter": 4})


# ---------------------------------------------------------------- Alpa / ColossalAI

def alpa_all_reduce_cost(mesh, num_bytes, dim):
    """Alpa LogicalDeviceMesh.all_reduce_cost without its fixed 0.01 tie-breaker."""
    k = mesh["mesh_shape"][dim]
    return mesh["mesh_alpha"][dim] + mesh["mesh_beta"][dim] * 2 * (k - 1) / k * num_bytes


def ring(c, level, k, n, algorithm="ring"):
    lk = link(c, level)
    return float(costs.predict("allreduce", algorithm, k, n, lk.latency, lk.beta, lk.gamma))


class TestAlpa:
    @pytest.mark.parametrize("unit,scale", [("us", 1e-6), ("s", 1.0)])
    @pytest.mark.parametrize("algorithm", ["ring", "rabenseifner", "recursive_doubling"])
    def test_read_back(self, unit, scale, algorithm):
        c = consts()
        mesh = doc(c, "alpa", time_unit=unit, algorithm=algorithm)
        assert mesh["mesh_shape"] == [8, 4] and mesh["mesh_dims"] == ["inter", "intra"]
        assert mesh["time_unit"] == unit
        for dim, level in enumerate(mesh["mesh_dims"]):
            k = mesh["mesh_shape"][dim]
            for n in SIZES:
                assert alpa_all_reduce_cost(mesh, n, dim) * scale == pytest.approx(
                    ring(c, level, k, n, algorithm), rel=1e-12, abs=1e-18)

    def test_bad_unit(self):
        with pytest.raises(ValueError, match="time unit"):
            exports.alpa_mesh(consts(), time_unit="h")


class TestColossalAI:
    def test_profiler_convention(self):
        c = consts()
        mesh = doc(c, "colossalai")
        assert mesh["mesh_shape"] == [8, 4]
        for dim, level in enumerate(mesh["mesh_dims"]):
            k = mesh["mesh_shape"][dim]
            # its latency probe: a tiny all-reduce, in seconds
            assert mesh["mesh_alpha"][dim] == pytest.approx(ring(c, level, k, 0))
            # its bandwidth probe: algbw = bytes / time of a large all-reduce
            n = 2 ** 40
            algbw = n / (ring(c, level, k, n) - ring(c, level, k, 0))
            assert mesh["mesh_beta"][dim] == pytest.approx(1e10 / algbw, rel=1e-12)
        # 1e10 x the seconds per byte, not the bare s/B of the old --time-unit s
        assert mesh["mesh_beta"][0] > 1.0

    def test_non_finite_value_refused(self):
        c = consts()
        fx.add_headline(c, "inter", latency=1e-5, bandwidth=1e-300)  # β = 1e300 s/B
        with pytest.raises(ValueError, match=r"mesh_beta\[0\].*not a finite number"):
            exports.colossalai_mesh(c)

    def test_one_device_dimension_refused(self):
        with pytest.raises(ValueError, match="inter has 1 device"):
            exports.colossalai_mesh(consts(), sizes={"inter": 1})


# ---------------------------------------------------------------- sizes

class TestSizes:
    def test_override_and_fallback(self):
        c = consts()
        assert [s for _, _, s in exports.levels(c, {"inter": 64})] == [4, 64]
        mesh = doc(c, "alpa", sizes={"intra": 8, "inter": 16})
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
        err = capsys.readouterr().err
        assert "dimension 0 = intra" in err and "latency" in err  # which model priced what
        assert main(["export", str(path), "--target", "calculon"]) == 0
        assert json.loads(capsys.readouterr().out)["networks"][0]["size"] == 4
        assert main(["export", str(path), "--target", "alpa", "--nodes", "32",
                     "--ranks-per-node", "2"]) == 0
        assert json.loads(capsys.readouterr().out)["mesh_shape"] == [32, 2]

    def test_simgrid_writes_three_files(self, tmp_path, capsys):
        from fits.constants import save
        path = save(consts(), tmp_path / "c.json")
        out = tmp_path / "p.xml"
        assert main(["export", str(path), "--target", "simgrid", "-o", str(out)]) == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "c.json", "p.xml", "p.xml.hostfile", "p.xml.smpi.cfg"]
        assert "smpirun $(cat" in capsys.readouterr().err
        assert main(["export", str(path), "--target", "simgrid"]) == 2
        assert "give --output" in capsys.readouterr().err

    def test_simgrid_failed_write_leaves_no_partial_set(self, tmp_path, capsys,
                                                         monkeypatch):
        """A write that fails (disk full) on the last of the three files: none of them
        is written or replaced, and the command says so in one line (no traceback)."""
        import errno
        import os
        from fits.constants import save
        path = save(consts(), tmp_path / "c.json")
        out = tmp_path / "p.xml"
        out.write_text("old platform\n")
        real_fsync = os.fsync

        def fsync(fd):
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                name = ""
            if "hostfile" in name:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        assert main(["export", str(path), "--target", "simgrid", "-o", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert "No space left on device" in err[-1] and "Traceback" not in "".join(err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "p.xml"]
        assert out.read_text() == "old platform\n"

    @need_planners
    def test_calculon_system_splice(self, tmp_path, capsys):
        from fits.constants import save
        path = save(consts(), tmp_path / "c.json")
        base = PLANNERS / "calculon" / "a100_80g.json"
        out = tmp_path / "sys.json"
        assert main(["export", str(path), "--target", "calculon", "--calculon-system",
                     str(base), "-o", str(out)]) == 0
        sysdoc = json.loads(out.read_text())
        assert sysdoc["matrix"] == json.loads(base.read_text())["matrix"]
        assert [n["size"] for n in sysdoc["networks"]] == [4, 32]
        assert main(["export", str(path), "--target", "astra", "--calculon-system",
                     str(base)]) == 2
        assert "--calculon-system applies to --target calculon" in capsys.readouterr().err
        binary = tmp_path / "binary.json"
        binary.write_bytes(b"\x00\xbc\xff calculon")
        assert main(["export", str(path), "--target", "calculon", "--calculon-system",
                     str(binary)]) == 2
        err = capsys.readouterr().err
        assert f"--calculon-system {binary}: not UTF-8 text" in err

    @pytest.mark.parametrize("argv,msg", [
        (["--target", "calculon", "--algorithm", "tree"], "unknown algorithm 'tree'"),
        (["--target", "astra", "--astra-backend", "congestion_aware"], "one dimension"),
        (["--target", "astra", "--nodes", "1000000000"], "2147483647"),
        (["--target", "simgrid", "--nodes", "1000000000"], "hosts"),
        (["--target", "astra", "--ranks-per-node", "1"], "one NPU"),
        (["--target", "colossalai", "--nodes", "1"], "inter has 1 device"),
        (["--target", "astra", "--astra-backend", "congestion_aware", "--nodes", "1"],
         "one NPU"),
    ])
    def test_errors_exit_2_and_write_nothing(self, tmp_path, capsys, argv, msg):
        from fits.constants import save
        path = save(consts(), tmp_path / "c.json")
        out = tmp_path / "x.out"
        assert main(["export", str(path)] + argv + ["-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]

    def test_missing_topology_exit_2(self, tmp_path, capsys):
        from fits.constants import save
        path = save(fx.constants(intra=fx.topology(ranks_per_node=2, nodes=1)),
                    tmp_path / "c.json")
        out = tmp_path / "p.xml"
        assert main(["export", str(path), "--target", "simgrid", "--nodes", "2", "-o",
                     str(out)]) == 2
        assert "no 'inter' topology" in capsys.readouterr().err
        assert not out.exists() and not Path(f"{out}.smpi.cfg").exists()

    def test_bad_files_exit_2(self, tmp_path, capsys):
        from fits.constants import save
        path = save(consts(), tmp_path / "c.json")
        assert main(["export", str(tmp_path / "none.json"), "--target", "alpa"]) == 2
        assert "none.json" in capsys.readouterr().err
        bad = tmp_path / "bad.json"
        bad.write_text('{"kind": "collcost-constants", "schema_version": 9}')
        assert main(["export", str(bad), "--target", "alpa"]) == 2
        assert "schema_version" in capsys.readouterr().err
        assert main(["export", str(path), "--target", "alpa", "-o", str(path)]) == 2
        assert "input" in capsys.readouterr().err
        binary = tmp_path / "binary.json"
        binary.write_bytes(b"\x00\xbc\xff collcost")
        assert main(["export", str(binary), "--target", "alpa"]) == 2
        err = capsys.readouterr().err
        assert "binary.json: not a constants file" in err and len(err.splitlines()) == 1
        with pytest.raises(SystemExit) as e:
            main(["export", str(path), "--target", "ns3"])
        assert e.value.code == 2


def test_exports_at_1024_nodes(tmp_path):
    """1024 nodes × 8 ranks: every target is written (bounded work) and consistent."""
    c = consts()
    sizes = {"intra": 8, "inter": 1024}
    nets = doc(c, "calculon", sizes=sizes)["networks"]
    assert [n["size"] for n in nets] == [8, 8192]
    y = exports.read_astra_yaml(exports.export(c, "astra", sizes=sizes))
    assert y["npus_count"] == [8, 1024]
    out = exports.simgrid_files(c, sizes=sizes)
    assert len(out.extra["hostfile"].splitlines()) == 1024
    assert 'radical="0-1023"' in out.text
    assert doc(c, "colossalai", sizes=sizes)["mesh_shape"] == [1024, 8]
