#!/usr/bin/env bash
# The CPU-scale reproduction behind docs/REPRODUCTION.md: every sweep, then every figure.
#
#   bash examples/reproduce_cpu.sh [OUT] [WORKERS]     (defaults: ./repro, 2)
#
# Each sweep skips finished runs and resumes interrupted ones, so re-running the script after an
# interruption picks up where it stopped. It prints each sweep's wall-clock time and the total.
set -euo pipefail

OUT=${1:-repro}
WORKERS=${2:-2}
SWEEPS="$OUT/sweeps"
FIGURES="$OUT/figures"
# The transition sweeps: 3000 Adam steps, or until ICL accuracy reaches 0.95.
BUDGET=(--set steps=3000 --set stop_icl_acc=0.95)
START=$SECONDS

sweep() {  # sweep NAME ARGS...: one timed `icl-mech sweep` into $SWEEPS/NAME
    local name=$1 began=$SECONDS
    shift
    icl-mech sweep "$@" --out "$SWEEPS/$name" --workers "$WORKERS" --quiet
    echo "sweep $name: $((SECONDS - began)) s"
}

# Claims 1 and 4: the transition in K at N = 20, and t_ICL across seeds (more seeds near K*
# and above it, where the long tail and the bimodal split show).
sweep transition_n20 --grid K=256,512,...,4096 --grid seed=0..7 "${BUDGET[@]}"
sweep transition_n20 --grid K=2048,4096 --grid seed=8..31 "${BUDGET[@]}"
# Claim 3: the MLP alone memorizing K items (attention frozen at its initialization) ...
sweep memorization --grid K=128,256,...,4096 --grid seed=0..1 --set frozen=attn \
    --set steps=3000 --set eval_every=25
# ... and K* at two more context lengths.
sweep transition_n10 --grid N=10 --grid K=64,128,...,2048 --grid seed=0..1 "${BUDGET[@]}"
sweep transition_n40 --grid N=40 --grid K=1024,2048,...,16384 --grid seed=0..1 "${BUDGET[@]}"
# Claim 5: equalized label counts in context against plain contexts (N - 1 divisible by L).
sweep equalized_n21 --grid N=21 --grid equalized=false,true --grid K=512,1024,...,4096 \
    --grid seed=0..1 "${BUDGET[@]}"
# Claim 6: attention weight decay makes ICL transient (the control has none).
sweep transience --grid weight_decay_attn=0,0.1 --grid seed=0..1 --set K=3072 --set d_mlp=2048 \
    --set steps=8000 --set eval_every=250 --set checkpoint_every=250
# Claim 7: two attention layers, and the interleaved format's induction head.
sweep two_layers --grid K=256,512,...,4096 --grid seed=0..1 --set n_layers=2 "${BUDGET[@]}"
sweep interleaved --preset cpu-interleaved --grid K=256,1024,4096,16384 --grid seed=0..1

echo "all sweeps: $((SECONDS - START)) s"

figures() {  # figures NAME ARGS...: `icl-mech figures` into $FIGURES/NAME
    local name=$1
    shift
    icl-mech figures "$@" --out "$FIGURES/$name"
}
figures n20 --sweep "$SWEEPS/transition_n20"
figures scaling --sweep "$SWEEPS/transition_n10" --sweep "$SWEEPS/transition_n20" \
    --sweep "$SWEEPS/transition_n40" --sweep "$SWEEPS/memorization"
figures equalized --sweep "$SWEEPS/equalized_n21" --only equalized
figures transience --sweep "$SWEEPS/transience" --only transience
figures two_layers --sweep "$SWEEPS/two_layers" --only transition
figures interleaved --sweep "$SWEEPS/interleaved" --only transition

# Claim 2: the sub-circuits, ablated in an ICL run, a memorizing run, and a run that has both.
for run in transition_n20/K4096-seed0 transition_n20/K256-seed0; do
    for circuit in induction mlp; do
        icl-mech ablate --run "$SWEEPS/$run" --circuit "$circuit"
    done
done
icl-mech independence --run "$SWEEPS/transience/weight_decay_attn0.1-seed0" --step 6000
# ... and their kinetics near K*: the run retrained without the MLP, with the MLP frozen, with
# attention frozen (same seed and data), and when each ability arrives in each.
icl-mech independence --run "$SWEEPS/transition_n20/K2048-seed0" --kinetics --out "$OUT" --quiet
# ... and the cross-ablation at every checkpoint of the run that has both (CSV + PNG).
icl-mech independence --run "$SWEEPS/transience/weight_decay_attn0.1-seed0" --all-steps \
    --out "$FIGURES/independence" --quiet
# Claim 7: the interleaved runs' induction circuit (scores per head; each head ablated).
for run in interleaved/K4096-seed0 interleaved/K256-seed0; do
    icl-mech probe --run "$SWEEPS/$run" --quiet
done
for circuit in induction previous-token; do
    icl-mech ablate --run "$SWEEPS/interleaved/K4096-seed0" --circuit "$circuit"
done
echo "total: $((SECONDS - START)) s"
