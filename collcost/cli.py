"""``collcost COMMAND [ARGS...]``: one command line for every job of collcost.

Each command is a thin entry into the ``main(argv)`` of the module that does the job;
the same module runs as ``python -m MODULE`` (the documented form under ``mpiexec``:
``mpiexec -n P python -m mpi4py -m collectives.sweep ...``).  Commands are registered
by module name in :data:`COMMANDS` and imported only when run, so ``collcost --help``
neither imports MPI nor fails when an optional module is absent: a command whose
module is not installed is left out of the list, and running it says so (exit 2).

``collcost COMMAND --help`` is that command's own help; ``collcost help COMMAND`` is
the same.  Exit status: the command's own (0 done, 2 bad usage, ...); 2 for an unknown
or unavailable command.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
import textwrap
from dataclasses import dataclass

__all__ = ["Command", "COMMANDS", "GROUPS", "available", "main", "format_help"]

PROG = "collcost"


@dataclass(frozen=True)
class Command:
    """One subcommand: ``module.main(argv)`` does the work."""

    name: str
    module: str
    summary: str  # one line for collcost --help
    group: str

    @property
    def runs(self) -> str:
        """What ``python -m`` runs: the module, or its package for a ``__main__``."""
        return self.module[:-len(".__main__")] if self.module.endswith(".__main__") \
            else self.module


#: Headings of the command list, in order.
GROUPS = ("measure (run under mpiexec -n P)", "inspect measurements", "fit and analyse",
          "predict", "tools")

COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("sweep", "collectives.sweep",
            "time collectives over sizes, rank counts and topologies", GROUPS[0]),
    Command("links", "collectives.links",
            "time point-to-point links between nodes, groups or ranks", GROUPS[0]),
    Command("check", "collectives.check",
            "check the hand-written algorithms against the MPI library's own", GROUPS[0]),
    Command("gpu", "collectives.gpu",
            "is the MPI library CUDA-aware, and which GPU each rank gets", GROUPS[0]),
    Command("summary", "collectives.summary",
            "a run's summary: table, OSU text or nccl-tests JSON layout", GROUPS[1]),
    Command("merge", "collectives.merge",
            "merge launches of one sweep into one run directory", GROUPS[1]),
    Command("fit", "fits.__main__",
            "fit alpha, beta, gamma from run directories (RUN/constants.json)", GROUPS[2]),
    Command("fit-links", "fits.links",
            "latency and bandwidth per link, suspect nodes and links, tiers", GROUPS[2]),
    Command("compare", "fits.compare",
            "compare two runs or constants files; flag regressions", GROUPS[2]),
    Command("report", "fits.report",
            "one self-contained HTML report of runs or constants files", GROUPS[2]),
    Command("predict", "fits.predict",
            "scaling laws, rubric, training-step prediction, exports", GROUPS[3]),
    Command("emulate", "collectives.emulate",
            "run an MPI command on emulated hosts joined by slow links (root)", GROUPS[4]),
)}


def available(command: Command) -> bool:
    """True when ``command``'s module can be imported here (found, not imported)."""
    try:
        return importlib.util.find_spec(command.module) is not None
    except (ImportError, ValueError):
        return False


def _version() -> str:
    from collcost import __version__
    return __version__


def format_help() -> str:
    """``collcost --help``: one line per available command, grouped, <= 100 columns."""
    width = max(len(c.name) for c in COMMANDS.values())
    mwidth = max(len(c.runs) for c in COMMANDS.values())
    lines = [f"usage: {PROG} COMMAND [ARGS...]", "",
             *textwrap.wrap(
                 "Measure what MPI collectives really cost, fit latency, bandwidth and "
                 "reduction constants (alpha, beta, gamma), and predict the scaling of "
                 "data-parallel training. Each command runs the module named after it, "
                 "which also runs as 'python -m MODULE' (under mpiexec, measure with "
                 "'mpiexec -n P python -m mpi4py -m collectives.sweep ...').", 99)]
    missing = []
    for group in GROUPS:
        cmds = [c for c in COMMANDS.values() if c.group == group]
        shown = [c for c in cmds if available(c)]
        missing += [c for c in cmds if c not in shown]
        if not shown:
            continue
        lines += ["", f"{group}:"]
        for c in shown:
            lines.append(f"  {c.name:<{width}}  {c.runs:<{mwidth}}  {c.summary}")
    lines += ["", f"Run '{PROG} COMMAND --help' for a command's options; "
                  f"'{PROG} --version' prints the version."]
    if missing:
        lines += textwrap.wrap("Not in this installation: " + ", ".join(
            f"{c.name} ({c.module})" for c in missing) + ".", 99)
    return "\n".join(lines) + "\n"


def _unknown(name: str) -> int:
    close = difflib.get_close_matches(name, list(COMMANDS), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    print(f"{PROG}: error: unknown command {name!r}{hint}; '{PROG} --help' lists them",
          file=sys.stderr)
    return 2


def _run(command: Command, argv: list) -> int:
    if not available(command):
        print(f"{PROG}: error: command {command.name!r} is not available in this "
              f"installation (module {command.module} not found)", file=sys.stderr)
        return 2
    module = importlib.import_module(command.module)
    entry = module.main
    kwargs = {}
    try:  # commands that accept it print 'collcost NAME' in their usage lines
        if "prog" in inspect.signature(entry).parameters:
            kwargs["prog"] = f"{PROG} {command.name}"
    except (TypeError, ValueError):
        pass
    try:
        status = entry(argv, **kwargs)
    except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
        status = exc.code
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (outputs are atomic)
        print(f"{PROG} {command.name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        from collectives.files import drop_stdout
        drop_stdout()
        return 141
    if status is None:
        return 0
    if isinstance(status, int):
        return status
    print(status, file=sys.stderr)  # SystemExit("message")
    return 1


def main(argv=None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(format_help())
        return 0
    first, rest = argv[0], argv[1:]
    if first == "--version":
        print(f"{PROG} {_version()}")
        return 0
    if first == "help":
        if not rest:
            sys.stdout.write(format_help())
            return 0
        if rest[0] not in COMMANDS:
            return _unknown(rest[0])
        return _run(COMMANDS[rest[0]], ["--help"])
    if first.startswith("-"):
        print(f"{PROG}: error: unknown option {first!r}; the command comes first "
              f"({PROG} COMMAND [ARGS...]; '{PROG} --help' lists them)", file=sys.stderr)
        return 2
    if first not in COMMANDS:
        return _unknown(first)
    return _run(COMMANDS[first], rest)


if __name__ == "__main__":
    sys.exit(main())
