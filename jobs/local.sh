#!/usr/bin/env bash
# The main job on this machine: a quick sweep, then its fit.
#
#   jobs/local.sh [RANKS] [extra sweep options...]     (RANKS defaults to 2)
#
# 1. mpiexec -n RANKS python -m collectives.sweep --quick ...  -> data/local-<UTC time>/
#    (metadata.json, points.jsonl, points.csv; a table in µs and GB/s on stdout)
# 2. python -m fits that run -> constants.json (α s, β s/B, γ s/B) and a summary table,
#    plus plots/ when matplotlib is installed.
# Set COLLCOST_OUT to choose the run directory.  More ranks than cores work but time
# badly (correctness only): device collectives are switched off then
# (MPIR_CVAR_DEVICE_COLLECTIVES=none) and waiting ranks yield the core.
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
if (( ranks > $(nproc) )); then
    export MPIR_CVAR_DEVICE_COLLECTIVES="${MPIR_CVAR_DEVICE_COLLECTIVES:-none}"
    export MPIR_CVAR_ENABLE_HEAVY_YIELD="${MPIR_CVAR_ENABLE_HEAVY_YIELD:-1}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out="${COLLCOST_OUT:-data/local-$(date -u +%Y%m%dT%H%M%SZ)}"

timeout -k 5 300 "$mpiexec" -n "$ranks" "$py" -m mpi4py -m collectives.sweep --quick --out "$out" "$@"

plots=()
"$py" -c "import matplotlib" 2>/dev/null && plots=(--plots "$out/plots")
"$py" -m fits "$out" --out "$out/constants.json" "${plots[@]}" --bootstrap 100
echo "run: $out   constants: $out/constants.json"
