"""``python -m collectives``: what to run instead (the package has several commands)."""
import sys


def main(argv=None) -> int:
    from collcost.cli import COMMANDS, available
    mine = [c for c in COMMANDS.values() if c.module.startswith("collectives.")
            and available(c)]
    width = max(len(c.module) for c in mine)
    print("collectives is collcost's measuring package; it has several commands, each a "
          "module:")
    for c in mine:
        print(f"  python -m {c.module:<{width}}  {c.summary}")
    print("Under mpiexec: mpiexec -n P python -m mpi4py -m collectives.sweep ...\n"
          "All of collcost's commands (measure, fit, predict) in one list: collcost --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
