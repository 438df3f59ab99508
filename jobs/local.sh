#!/usr/bin/env bash
# Quick sweep on this machine: every collective, native algorithms, one node.
#
#   jobs/local.sh [RANKS] [extra sweep options...]     (RANKS defaults to 2)
#
# Writes data/<run id>/ (metadata.json, points.jsonl, points.csv) and prints a summary
# (microseconds, GB/s).  More ranks than cores work but time badly: device collectives
# are switched off then (MPIR_CVAR_DEVICE_COLLECTIVES=none), as tests/mpirun.py does.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks="${1:-2}"
shift || true
if [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
else
    py=python3
fi
mpiexec="$(dirname "$py")/mpiexec"
[[ -x "$mpiexec" ]] || mpiexec=mpiexec
cores="$(nproc)"
if (( ranks > cores )); then
    export MPIR_CVAR_DEVICE_COLLECTIVES="${MPIR_CVAR_DEVICE_COLLECTIVES:-none}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout -k 5 300 "$mpiexec" -n "$ranks" "$py" -m collectives.sweep --quick "$@"
