#!/usr/bin/env bash
# The main job on this machine: the whole pipeline in about a minute.
#
#   jobs/local.sh [RANKS] [extra sweep options...]     (RANKS defaults to 2)
#
# 1. measure: mpiexec -n RANKS python -m collectives.sweep --quick --algorithms all
#    (every hand-written algorithm and the MPI library's own) -> data/local-<UTC time>/
#    (metadata.json, points.jsonl, points.csv; a table in µs and GB/s on stdout).
#    Extra options are passed to the sweep (a later --algorithms wins).
# 2. fit: python -m fits RUN -> RUN/constants.json (α s, β s/B, γ s/B, headline latency
#    and bandwidth per topology) and a summary table, plus RUN/plots/ (matplotlib).
# 3. predict: python -m fits.predict step --constants RUN/constants.json: a sample
#    data-parallel training step (100 MB of gradients, 50 ms of compute per step) on
#    1..RANKS workers of this machine.
# 4. report: python -m fits.report RUN --out RUN/report.html: one self-contained HTML
#    page (headline constants, summary table, fit plots).  Its path is the last line
#    printed (alone on it).
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
start=$SECONDS

echo "== 1/4 measure: $ranks ranks, quick sweep with every algorithm -> $out" >&2
timeout -k 5 300 "$mpiexec" -n "$ranks" "$py" -m mpi4py -m collectives.sweep --quick \
    --algorithms all --out "$out" "$@"

echo "== 2/4 fit -> $out/constants.json" >&2
plots=()
"$py" -c "import matplotlib" 2>/dev/null && plots=(--plots "$out/plots")
"$py" -m fits "$out" --out "$out/constants.json" "${plots[@]}" --bootstrap 100

echo "== 3/4 predict: a sample training step from $out/constants.json" >&2
workers=1
for ((k = 2; k <= ranks; k *= 2)); do workers+=",$k"; done
(( ranks > 1 && (ranks & (ranks - 1)) != 0 )) && workers+=",$ranks"
"$py" -m fits.predict step --constants "$out/constants.json" --grad-bytes 1e8 \
    --compute-s 0.05 --workers "$workers"

report=()
if (( ${#plots[@]} )); then
    echo "== 4/4 report -> $out/report.html" >&2
    "$py" -m fits.report "$out" --out "$out/report.html" >/dev/null
    report=("$out/report.html")
else
    echo "== 4/4 report skipped: matplotlib is not installed (pip install 'collcost[plot]')" >&2
fi
echo "run: $out   constants: $out/constants.json   ($((SECONDS - start)) s)"
(( ${#report[@]} )) && echo "${report[0]}"
exit 0
