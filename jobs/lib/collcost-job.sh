# collcost batch job body, shared by jobs/slurm/*.sbatch and jobs/pbs/*.pbs.
#
# The scheduler script sets NODES (nodes allocated), RANKS_PER_NODE (ranks per node),
# JOB_ID, and defines `launch NODES RANKS_PER_NODE COMMAND...` (start COMMAND on NODES
# nodes with RANKS_PER_NODE ranks each), then sources this file.  Everything else comes
# from environment variables (all optional):
#
#   COLLCOST_PYTHON       Python with collcost and mpi4py     (default: python3)
#   COLLCOST_OUT          output directory                    (default: data/<job id>)
#   COLLCOST_LAUNCHES     launches of the same sweep, merged  (default: 3)
#   COLLCOST_SWEEP_ARGS   extra sweep options                 (e.g. "--collectives allreduce --algorithms ring")
#   COLLCOST_FIT_ARGS     extra options of python -m fits     (default: none)
#   COLLCOST_WORLD        1: also time the all-reduce (every algorithm) over 1, 2, 4, ..
#                         whole nodes, to check hierarchical predictions (default: 1)
#
# Each launch runs the sweep on the whole allocation with --topology auto: the intra
# topology sweeps rank counts 2, 4, .. RANKS_PER_NODE on node 0, the inter topology
# node counts 2, 4, .. NODES with one rank per node (the sweep detects the layout with
# Split_type(COMM_TYPE_SHARED) and host names).  All launches use the same allocation
# because the fitter pools only launches of the same job shape.  Launches are merged
# (collectives.merge) and fitted (fits) into $COLLCOST_OUT/constants.json.  Sweeps run
# with --point-timeout, so a dead node ends the job instead of hanging it; every
# completed point stays on disk, and resubmitting with the same COLLCOST_OUT resumes
# the interrupted launch (--resume) and skips completed ones; the fit is redone
# (--overwrite replaces $COLLCOST_OUT/constants.json).

set -euo pipefail

: "${NODES:?the scheduler script must set NODES}"
: "${RANKS_PER_NODE:?the scheduler script must set RANKS_PER_NODE}"
PY=${COLLCOST_PYTHON:-python3}
OUT=${COLLCOST_OUT:-data/${JOB_ID:-job-$$}}
LAUNCHES=${COLLCOST_LAUNCHES:-3}
read -r -a SWEEP_ARGS <<< "${COLLCOST_SWEEP_ARGS:-}"
read -r -a FIT_ARGS <<< "${COLLCOST_FIT_ARGS:-}"
WORLD=${COLLCOST_WORLD:-1}

case $LAUNCHES in ''|*[!0-9]*|0) echo "collcost job: COLLCOST_LAUNCHES must be a whole number >= 1, got '$LAUNCHES'" >&2; exit 2 ;; esac
case $NODES in ''|*[!0-9]*|0) echo "collcost job: NODES must be a whole number >= 1, got '$NODES'" >&2; exit 2 ;; esac
case $RANKS_PER_NODE in ''|*[!0-9]*|0) echo "collcost job: RANKS_PER_NODE must be a whole number >= 1, got '$RANKS_PER_NODE'" >&2; exit 2 ;; esac

log() { echo "[collcost job $(date -u +%H:%M:%S)] $*" >&2; }

# sweep DIR OPTIONS...: one launch on the whole allocation into DIR; resumed if DIR
# holds an interrupted launch, skipped if DIR is complete.
sweep() {
  local dir=$1; shift
  if [ -s "$dir/points.csv" ]; then log "$dir complete, skipped"; return; fi
  if [ -s "$dir/metadata.json" ]; then
    log "resuming $dir"
    launch "$NODES" "$RANKS_PER_NODE" "$PY" -m mpi4py -m collectives.sweep --resume "$dir"
  else
    log "sweep $* -> $dir"
    launch "$NODES" "$RANKS_PER_NODE" "$PY" -m mpi4py -m collectives.sweep --out "$dir" "$@"
  fi
}

if [ "$((NODES * RANKS_PER_NODE))" -lt 2 ]; then
  echo "collcost job: one node with one rank has nothing to measure" >&2; exit 2
fi
mkdir -p "$OUT"
log "$NODES node(s) x $RANKS_PER_NODE rank(s); $LAUNCHES launch(es); output $OUT"
runs=()
for launch_no in $(seq 1 "$LAUNCHES"); do
  sweep "$OUT/launch-$launch_no" --topology auto ${SWEEP_ARGS[@]+"${SWEEP_ARGS[@]}"}
  runs+=("$OUT/launch-$launch_no")
done

fit_input=("${runs[@]}")
if [ "${#runs[@]}" -ge 2 ]; then
  [ -s "$OUT/merged/points.csv" ] || "$PY" -m collectives.merge "${runs[@]}" --out "$OUT/merged"
  fit_input=("$OUT/merged")
fi
log "fitting ${fit_input[*]}"
"$PY" -m fits "${fit_input[@]}" --out "$OUT/constants.json" --overwrite ${FIT_ARGS[@]+"${FIT_ARGS[@]}"}

# the all-reduce over 1, 2, 4, .. whole nodes, to compare with hierarchical predictions
if [ "$WORLD" = 1 ] && [ "$NODES" -ge 2 ] && [ "$RANKS_PER_NODE" -ge 2 ]; then
  world_ranks="" m=1
  while [ "$m" -lt "$NODES" ]; do world_ranks="$world_ranks${world_ranks:+,}$((m * RANKS_PER_NODE))"; m=$((m * 2)); done
  world_ranks="$world_ranks${world_ranks:+,}$((NODES * RANKS_PER_NODE))"
  sweep "$OUT/world" ${SWEEP_ARGS[@]+"${SWEEP_ARGS[@]}"} --topology world \
    --ranks "$world_ranks" --collectives allreduce --algorithms all
fi
log "done: $OUT/constants.json"
