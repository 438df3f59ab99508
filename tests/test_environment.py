"""The environment record: tuning variables (recorded in ``env``, compared by merge,
resume and the fitter) apart from launcher bookkeeping (``launcher_env``, never
compared), for MPICH, Open MPI and Intel MPI.  The launcher environments below were
dumped from rank 0 of 2-rank launches of the PyPI wheels (MPICH 5.0.2, Open MPI
5.0.11, Intel MPI 2021.18) on this project's machine."""
import pytest

from collectives import metadata as md
from collectives.results import RunWriter, merge_runs, metadata_differences, read_run
from test_results import make_point, meta

MPICH_LAUNCH = {"MPI_LOCALNRANKS": "2", "MPI_LOCALRANKID": "0", "PMI_FD": "9",
                "PMI_HOSTNAME": "vm", "PMI_RANK": "0", "PMI_SIZE": "2"}

OPENMPI_LAUNCH = {
    "OMPI_ARGV": "/tmp/envdump.py", "OMPI_COMMAND": "/venv/bin/python",
    "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
    "OMPI_COMM_WORLD_NODE_RANK": "0", "OMPI_COMM_WORLD_RANK": "0",
    "OMPI_COMM_WORLD_SIZE": "2", "OMPI_FILE_LOCATION": "/tmp/ompi.9163/1/0",
    "OMPI_LIBDIR_LOC": "/venv/lib",
    "OMPI_MCA_PREFIXES": "mca,opal,ompi,atomic,memheap,scoll,spml,sshmem,bml,coll",
    "OMPI_MCA_cpu_type": "x86_64", "OMPI_MCA_initial_wdir": "/tmp",
    "OMPI_MCA_num_procs": "2", "OMPI_NUM_APP_CTX": "1", "OMPI_TOOL_NAME": "mpiexec",
    "OMPI_UNIVERSE_SIZE": "2", "OMPI_VERSION": "5.0.11", "OMPI_WORLD_LOCAL_SIZE": "2",
    "OMPI_WORLD_SIZE": "2", "OPAL_PREFIX": "/venv", "OPAL_USER_PARAMS_GIVEN": "1",
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "PMIX_BFROP_BUFFER_TYPE": "PMIX_BFROP_BUFFER_NON_DESC",
    "PMIX_GDS_MODULE": "shmem2,hash", "PMIX_HOSTNAME": "vm",
    "PMIX_NAMESPACE": "prterun-vm-9163@1", "PMIX_RANK": "0",
    "PMIX_SERVER_URI41": "prterun-vm-9163@0.0;tcp4://127.0.0.1:34785",
    "PMIX_VERSION": "5.0.11rc1", "PRTE_LAUNCHED": "1", "PRTE_SHARED_FS": "FALSE",
    # Open MPI 4 (ORTE): a random key per launch
    "OMPI_MCA_orte_precondition_transports": "6bd6f2a1e2a3b1f1-2ce4e3a5c0e0d8d1",
    "OMPI_MCA_ess_base_jobid": "1234", "OMPI_MCA_pmix": "^s1,s2,cray,isolated",
}

INTEL_LAUNCH = {
    "FI_PROVIDER_PATH": "/venv/lib", "HYDRA_BSTRAP_LAUNCHER": "ssh",
    "HYDRA_BSTRAP_UPSTREAM_FD": "7", "HYDRA_LAUNCH_TYPE": "2",
    "I_MPI_BIND_WIN_ALLOCATE": "localalloc", "I_MPI_HYDRA_TOPOLIB": "ipl2",
    "I_MPI_HYDRA_UUID": "69240000-556c-ac3b-9261-06008509712e",
    "I_MPI_INFO_BRAND": "AMD EPYC", "I_MPI_INFO_CACHE1": "0,1", "I_MPI_INFO_NC": "2",
    "I_MPI_INTERNAL_MEM_POLICY": "default", "I_MPI_PIN_INFO": "0",
    "I_MPI_PIN_MAPPING": "2:0 0,1 1", "I_MPI_RETURN_WIN_MEM_NUMA": "-1,0",
    "I_MPI_JOB_TIMEOUT": "60", "MPI_LOCALNRANKS": "2", "MPI_LOCALRANKID": "0",
    "PMI_FD": "9", "PMI_RANK": "0", "PMI_SIZE": "2",
}

#: What a user sets to change the measurement, per library (and the layers below).
TUNING = {
    "mpich": {"MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM": "ring",
              "MPIR_CVAR_DEVICE_COLLECTIVES": "none", "MPICH_GPU_SUPPORT_ENABLED": "1"},
    "openmpi": {"OMPI_MCA_coll_tuned_use_dynamic_rules": "1",
                "OMPI_MCA_coll_tuned_allreduce_algorithm": "4",
                "OMPI_MCA_btl": "self,vader", "OMPI_MCA_pml": "ucx",
                "OMPI_MCA_mpi_yield_when_idle": "1"},
    "impi": {"I_MPI_ADJUST_ALLREDUCE": "8", "I_MPI_PIN_DOMAIN": "core",
             "I_MPI_FABRICS": "shm:ofi", "FI_PROVIDER": "tcp"},
    "transport": {"UCX_TLS": "tcp", "UCX_NET_DEVICES": "eth0", "NCCL_ALGO": "Ring",
                  "UCC_TLS": "ucp", "HCOLL_ENABLE_MCAST": "0", "MV2_USE_CUDA": "1"},
}
ALL_TUNING = {k: v for d in TUNING.values() for k, v in d.items()}
ALL_LAUNCH = {**MPICH_LAUNCH, **OPENMPI_LAUNCH, **INTEL_LAUNCH}
UNRELATED = {"HOME": "/root", "PATH": "/bin", "SLURM_JOB_ID": "7", "MPI4PY_RC_X": "1"}


@pytest.mark.parametrize("name", sorted(ALL_TUNING))
def test_tuning_variables_are_tuning(name):
    assert md.env_kind(name) == "tuning"


@pytest.mark.parametrize("name", sorted(ALL_LAUNCH) + ["CUDA_VISIBLE_DEVICES"])
def test_launcher_bookkeeping_is_not_tuning(name):
    assert md.env_kind(name) == "launcher"


@pytest.mark.parametrize("name", sorted(UNRELATED))
def test_other_variables_are_not_recorded(name):
    assert md.env_kind(name) is None


def test_split_keeps_every_recorded_variable_once():
    env = {**ALL_TUNING, **ALL_LAUNCH, **UNRELATED, "CUDA_VISIBLE_DEVICES": "0,1"}
    tuning, launcher = md.split_environment(env)
    assert tuning == dict(sorted(ALL_TUNING.items()))
    assert launcher == dict(sorted({**ALL_LAUNCH, "CUDA_VISIBLE_DEVICES": "0,1"}.items()))
    assert list(tuning) == sorted(tuning) and list(launcher) == sorted(launcher)
    assert md.mpi_environment(env) == tuning
    assert md.launcher_environment(env) == launcher


@pytest.mark.parametrize("launch", [MPICH_LAUNCH, OPENMPI_LAUNCH, INTEL_LAUNCH],
                         ids=["mpich", "openmpi", "impi"])
def test_two_launches_differ_only_in_bookkeeping(launch):
    """Two launches of the same sweep: other random ids, working directories, ranks'
    files.  Their tuning is the same; the bookkeeping differs and is not compared."""
    second = {k: v + "-other" for k, v in launch.items()}
    a = {"env": {**ALL_TUNING, **launch}}          # an old record (noise inside env)
    b = {"env": md.mpi_environment({**ALL_TUNING, **second}),
         "launcher_env": md.launcher_environment(second)}
    assert md.environment_differences(a, b) == []
    assert md.tuning_environment(a) == md.tuning_environment(b) == dict(
        sorted(ALL_TUNING.items()))


def test_every_differing_tuning_variable_is_named():
    a = {"env": {"OMPI_MCA_coll_tuned_allreduce_algorithm": "4", "UCX_TLS": "tcp",
                 "I_MPI_HYDRA_UUID": "1"}}
    b = {"env": {"OMPI_MCA_coll_tuned_allreduce_algorithm": "3", "NCCL_ALGO": "Ring",
                 "I_MPI_HYDRA_UUID": "2"}}
    out = md.environment_differences(a, b, names=("the run", "this launch"))
    assert out == [
        "tuning variables differ: NCCL_ALGO is unset in the run, 'Ring' in this launch",
        "tuning variables differ: OMPI_MCA_coll_tuned_allreduce_algorithm is '4' in "
        "the run, '3' in this launch",
        "tuning variables differ: UCX_TLS is 'tcp' in the run, unset in this launch"]


def test_environment_dicts_and_null_records():
    assert md.tuning_environment({"UCX_TLS": "tcp", "PMI_RANK": "0"}) == {"UCX_TLS": "tcp"}
    assert md.tuning_environment({"env": None}) == {}
    assert md.tuning_environment({}) == {}


def test_metadata_differences_names_the_variable_not_the_whole_record():
    a = meta(env={"MPIR_CVAR_DEVICE_COLLECTIVES": "none", "PMI_FD": "9"})
    b = meta(env={"MPIR_CVAR_DEVICE_COLLECTIVES": "all", "PMI_FD": "10"})
    problems = metadata_differences([("a", a), ("b", b)])
    assert problems == ["tuning variables differ: MPIR_CVAR_DEVICE_COLLECTIVES is "
                        "'none' in a, 'all' in b"]


@pytest.mark.parametrize("launch", [MPICH_LAUNCH, OPENMPI_LAUNCH, INTEL_LAUNCH],
                         ids=["mpich", "openmpi", "impi"])
def test_merge_and_fit_read_accept_launches_differing_in_bookkeeping(tmp_path, launch):
    from fits.fit import read_runs
    tuning = TUNING["openmpi"] if launch is OPENMPI_LAUNCH else TUNING["mpich"]
    for name, suffix in (("a", ""), ("b", "-2")):
        env = {**tuning, **{k: v + suffix for k, v in launch.items()}}
        w = RunWriter.create(tmp_path / name, meta(env=md.mpi_environment(env),
                                                   launcher_env=md.launcher_environment(env)))
        for s in (8, 1 << 20):
            w.append(make_point(s))
        w.finish()
    run = merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert len(run.points) == 4 and len(run.launches) == 2
    points, _, provenance = read_runs([tmp_path / "a", tmp_path / "b"])
    assert len(points) == 4 and len(provenance) == 2
    # a real tuning difference is still refused, by both
    w = RunWriter.create(tmp_path / "c", meta(env={**md.mpi_environment(tuning),
                                                    "UCX_TLS": "shm"}))
    w.append(make_point(8))
    w.finish()
    with pytest.raises(ValueError, match="tuning variables differ: UCX_TLS"):
        merge_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "m2")
    assert not (tmp_path / "m2").exists()
    from fits.fit import FitError
    with pytest.raises(FitError, match="UCX_TLS"):
        read_runs([tmp_path / "a", tmp_path / "c"])
    assert read_run(tmp_path / "a").metadata["launcher_env"]


class FakeMPI:
    def __init__(self, text, version=(3, 1)):
        self.text, self.version = text, version

    def Get_library_version(self):
        return self.text

    def Get_version(self):
        return self.version


@pytest.mark.parametrize("text, library, version", [
    ("MPICH Version:      5.0.2\nMPICH Release date: x\n", "MPICH", "MPICH Version:"),
    ("Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11, "
     "repo rev: v5.0.11rc1, Sep 16, 2026\x00", "Open MPI", "Open MPI v5.0.11"),
    ("Intel(R) MPI Library 2021.18.1 for Linux* OS\n", "Intel(R) MPI",
     "Intel(R) MPI Library 2021.18.1"),
])
def test_library_record(text, library, version):
    rec = md.mpi_library(FakeMPI(text))
    assert rec["library"] == library
    assert rec["version"].startswith(version)
    assert "\x00" not in rec["version"] and rec["version"] == rec["version"].strip()
    assert rec["standard"] == "3.1"


def test_fit_refuses_runs_of_different_measurement_options(tmp_path):
    """The fitter pools runs only under the rules merge applies: same tuning and the
    same measurement options (the stopping rule too), as merge does."""
    from fits.fit import FitError, read_runs
    from test_results import write_run
    write_run(tmp_path / "a", [8, 1 << 20])
    write_run(tmp_path / "b", [8, 1 << 20],
              options={"dtype": "float32", "op": "sum", "sync": "barrier",
                       "buffer": "numpy", "target_ci": 0.2, "max_reps": 5})
    with pytest.raises(FitError, match="target_ci"):
        read_runs([tmp_path / "a", tmp_path / "b"])
    write_run(tmp_path / "c", [8])
    points, _, provenance = read_runs([tmp_path / "a", tmp_path / "c"])
    assert len(points) == 3 and len(provenance) == 2
