"""Print the values a ReFrame check reads from a constants file (one per line).

    python jobs/reframe/perf_values.py CONSTANTS TOPOLOGY

prints ``latency_us: V STATUS`` and ``bandwidth_GBps: V STATUS`` from the topology's
headline (``fits.constants.latency`` / ``bandwidth``), ``-`` for a missing value.
Exit 2 with a message when the file or the topology cannot be read.
"""
import sys


def main(argv):
    if len(argv) != 2:
        print("usage: perf_values.py CONSTANTS TOPOLOGY", file=sys.stderr)
        return 2
    from fits import constants
    try:
        doc = constants.load(argv[0])
        lat, bw = constants.latency(doc, argv[1]), constants.bandwidth(doc, argv[1])
    except (OSError, ValueError) as exc:
        print(f"perf_values.py: error: {exc}", file=sys.stderr)
        return 2
    for name, entry, factor in (("latency_us", lat, 1e6), ("bandwidth_GBps", bw, 1e-9)):
        value = None if entry is None else entry.get("value")
        status = "missing" if entry is None else entry.get("status")
        print(f"{name}: {'-' if value is None else value * factor} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
