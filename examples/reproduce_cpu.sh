#!/usr/bin/env bash
# The CPU-scale reproduction behind docs/REPRODUCTION.md: every sweep, then every figure.
#
#   bash examples/reproduce_cpu.sh [OUT] [WORKERS] [PART]     (defaults: ./repro, 2, all)
#   PART: all, reddy, theory or claim3b
#
# PART `reddy` runs only the commands of docs/REDDY.md (Reddy (2024)'s setting); PART `theory`
# only those behind docs/THEORY.md's measured verdicts; PART `claim3b` only claim 3b's converged
# K*(N) at N = 10 to 60 with 8 seeds per K, and the slope of ln K* on ln N with a bootstrap over
# seeds beside 1/nu (hours on 2 cores; `all` does not run it).
# Each sweep skips finished runs and resumes interrupted ones, so re-running the script after an
# interruption picks up where it stopped. It prints each sweep's wall-clock time and the total.
set -euo pipefail

OUT=${1:-repro}
WORKERS=${2:-2}
PART=${3:-all}
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

figures() {  # figures NAME ARGS...: `icl-mech figures` into $FIGURES/NAME
    local name=$1
    shift
    icl-mech figures "$@" --out "$FIGURES/$name"
}

minimal() {  # minimal NAME ARGS...: Reddy's minimal model over a grid into $FIGURES/reddy_minimal/NAME.csv
    local name=$1 began=$SECONDS csv="$FIGURES/reddy_minimal/$1.csv"
    shift
    if [[ -f "$csv" ]]; then return; fi
    python "$(dirname "$0")/reddy_minimal_model.py" "$@" --out "$csv"
    echo "minimal model $name: $((SECONDS - began)) s"
}

reddy() {  # Reddy (2024)'s setting: L = 32 labels, the cpu-reddy preset (docs/REDDY.md)
    local began=$SECONDS
    # Phase diagrams: final ICL (novel classes) and IWL (random classes) over B and K, and over
    # epsilon and K (B = 2; epsilon 0.1 is the preset, run in reddy_b_k), 2000 steps, 2 seeds a
    # point trained as ensembles.
    local grid=(--preset cpu-reddy --set steps=2000 --set eval_every=100 --set checkpoint_every=500 --ensemble 2)
    sweep reddy_b_k --grid B=1,2,4 --grid K=64,256,...,16384 --grid seed=0..1 "${grid[@]}"
    sweep reddy_eps_k --grid epsilon=0,0.4 --grid K=64,256,...,16384 --grid seed=0..1 "${grid[@]}"
    # ICL and IWL coexisting under a Zipf rank-frequency law over the classes.
    sweep reddy_zipf --grid zipf_alpha=0,0.5,1,1.5,2 --grid seed=0..1 --set K=16384 "${grid[@]}"
    # Abrupt ICL: 4 seeds with a checkpoint every 100 steps, then head scores over training and
    # each head ablated at the end.
    sweep reddy_abrupt --preset cpu-reddy --grid seed=0..3 --set steps=2000 --ensemble 2
    figures reddy_b_k --sweep "$SWEEPS/reddy_b_k" --only phase
    figures reddy_eps_k --sweep "$SWEEPS/reddy_eps_k" --sweep "$SWEEPS/reddy_b_k" --where B=2 --only phase
    figures reddy_zipf --sweep "$SWEEPS/reddy_zipf" --only phase
    for seed in 0 1 2 3; do
        icl-mech probe --run "$SWEEPS/reddy_abrupt/seed$seed" --all-steps --out "$FIGURES/reddy_abrupt/seed$seed" --quiet
    done
    for circuit in induction previous-token; do  # in an ICL run, and in one that also memorizes a little
        icl-mech ablate --run "$SWEEPS/reddy_abrupt/seed0" --circuit "$circuit"
        icl-mech ablate --run "$SWEEPS/reddy_zipf/zipf_alpha1-seed0" --circuit "$circuit"
    done
    icl-mech ablate --run "$SWEEPS/reddy_zipf/zipf_alpha1.5-seed0" --circuit induction  # both abilities
    # R1-R3 with Reddy's optimizer, plain SGD: its learning rates at K = 16384 (seed 0), then the
    # B = 2 phase diagram over K, B = 1, 4 at the boundary, epsilon = 0, 0.4 at K = 1024 and 16384,
    # and zipf_alpha = 1, 1.5, 4 seeds a point, each run ended by the stopping rule (docs/SWEEPS.md)
    # or at 3000 steps.
    sweep reddy_sgd_lr --preset cpu-reddy --grid lr=0.01,0.1,0.3,1 --set optimizer=sgd --set steps=2000 \
        --set eval_every=100 --set checkpoint_every=500
    local sgd=(--preset cpu-reddy --set optimizer=sgd --set lr=0.1 --set weight_decay=1e-6 --set weight_decay_attn=1e-6
        --set steps=3000 --set stop_icl_acc=0.95 --set stop_plateau_steps=500 --set stop_plateau_iwl_acc=0.3
        --set eval_every=100 --set checkpoint_every=500 --ensemble 4)
    sweep reddy_sgd_k --grid K=64,256,...,16384 --grid seed=0..3 "${sgd[@]}"
    sweep reddy_sgd_b --grid B=1,4 --grid K=1024,4096 --grid seed=0..3 "${sgd[@]}"
    sweep reddy_sgd_eps --grid epsilon=0,0.4 --grid K=1024,16384 --grid seed=0..3 "${sgd[@]}"
    sweep reddy_sgd_zipf --grid zipf_alpha=1,1.5 --grid seed=0..3 --set K=16384 "${sgd[@]}"
    figures reddy_sgd_k --sweep "$SWEEPS/reddy_sgd_k" --only phase
    figures reddy_sgd_b --sweep "$SWEEPS/reddy_sgd_b" --only phase
    figures reddy_sgd_eps --sweep "$SWEEPS/reddy_sgd_eps" --only phase
    figures reddy_sgd_zipf --sweep "$SWEEPS/reddy_sgd_zipf" --only phase
    # R6: Reddy's minimal model trained alone over R1's, R2's and R3's grids (1000 steps, seed 0);
    # a grid whose CSV exists is done (the model trains in seconds to minutes, so a grid reruns whole).
    minimal b_k --grid B=1,2,4 --grid K=64,256,...,16384 --set steps=1000
    minimal eps_k --grid epsilon=0,0.4 --grid K=64,256,...,16384 --set steps=1000
    minimal zipf --grid zipf_alpha=0,0.5,1,1.5,2 --set K=16384 --set steps=1000
    # The reddy2024 preset's first 10^4 steps (a CPU's share of its 10^5) and its probes over them.
    local run2024="$OUT/runs/reddy2024"
    icl-mech train --preset reddy2024 --set steps=10000 --out "$run2024" --quiet \
        $([[ -f "$run2024/config.json" ]] && echo --resume)
    icl-mech probe --run "$run2024" --all-steps --out "$FIGURES/reddy2024" --quiet
    echo "reddy: $((SECONDS - began)) s"
}
transition_n20() {  # Claims 1 and 4: the transition in K at N = 20, and t_ICL across seeds (more
    # seeds near K* and above it, where the long tail and the bimodal split show).
    sweep transition_n20 --grid K=256,512,...,4096 --grid seed=0..7 "${BUDGET[@]}"
    sweep transition_n20 --grid K=2048,4096 --grid seed=8..31 "${BUDGET[@]}"
}

theory_memorization() {  # T1: the MLP alone (attention frozen), logging its residuals (c1, IWL set) every 25 steps
    sweep theory_memorization --grid K=128,256,...,4096 --grid seed=0..1 --set frozen=attn \
        --set steps=3000 --set eval_every=25
}

theory() {  # docs/THEORY.md: T1, T3 and T4 of the reduced kinetic model against runs (cpu preset)
    local began=$SECONDS
    # T3 and T4's F_inf: 32 seeds at K = infinity at each of two N, until ICL accuracy 0.95.
    sweep theory_kinf --grid K=inf --grid N=20,30 --grid seed=0..31 --set stop_icl_acc=0.95 \
        --set steps=6000 --ensemble 8
    theory_memorization
    # T4: the measured share of ICL seeds per K is claim 1's K sweep.
    transition_n20
    icl-mech theory --sweep "$SWEEPS/theory_kinf" --sweep "$SWEEPS/theory_memorization" \
        --sweep "$SWEEPS/transition_n20" --out "$FIGURES/theory"
    # The same under plain SGD (cpu-sgd, the flow's own assumption): 16 seeds at K = infinity, and
    # a K sweep of 4 seeds per K; 6000 steps.
    local sgd=(--preset cpu-sgd --set steps=6000)
    sweep theory_sgd_kinf --grid K=inf --grid N=20,30 --grid seed=0..15 --set stop_icl_acc=0.95 "${sgd[@]}" --ensemble 8
    sweep theory_sgd_memorization --grid K=128,256,...,8192 --grid seed=0..1 --set frozen=attn \
        --set eval_every=25 "${sgd[@]}" --ensemble 7
    sweep theory_sgd_ksweep --grid K=256,512,...,8192 --grid seed=0..3 --set stop_icl_acc=0.95 "${sgd[@]}" --ensemble 6
    icl-mech theory --sweep "$SWEEPS/theory_sgd_kinf" --sweep "$SWEEPS/theory_sgd_memorization" \
        --sweep "$SWEEPS/theory_sgd_ksweep" --out "$FIGURES/theory_sgd"
    # T5: ICL's fade under attention weight decay, 8000 steps at K = 4096.
    sweep theory_sgd_transience --preset cpu-sgd --grid weight_decay_attn=0,0.01,0.03,0.1 --grid seed=0..1 \
        --set K=4096 --set steps=8000 --set eval_every=100 --set checkpoint_every=1000
    echo "theory: $((SECONDS - began)) s"
}

claim3b() {  # Claim 3b: converged K*(N) at N = 10, 15, 20, 30, 40 and 60, and its slope beside 1/nu
    local began=$SECONDS
    # Every run ends once committed (docs/SWEEPS.md's stopping rule), 30000 steps at most; 8 seeds
    # per K on a half-octave grid around each N's K*, trained as ensembles of 8 (K a multiple of L = 2).
    local converged=(--set steps=30000 --set stop_icl_acc=0.95 --set stop_plateau_steps=1000 --ensemble 8 --grid seed=0..7)
    sweep claim3b_n10 --grid N=10 --grid K=512,724,1024,1448 "${converged[@]}"
    # N = 10's grid ends before every seed reaches ICL (K = 1448: 6 of 8): one K above it.
    sweep claim3b_n10 --grid N=10 --grid K=2048 "${converged[@]}"
    sweep claim3b_n20 --grid N=20 --grid K=1024,1448,2048,2896 "${converged[@]}"
    sweep claim3b_n40 --grid N=40 --grid K=2048,2896,4096,5792 "${converged[@]}"
    # N = 40's and 60's grids, set by K* ~ N^1.43, reached ICL at every K: half octaves below.
    sweep claim3b_n40 --grid N=40 --grid K=1448 "${converged[@]}"
    sweep claim3b_n15 --grid N=15 --grid K=724,1024,1448,2048 "${converged[@]}"
    sweep claim3b_n30 --grid N=30 --grid K=1024,1448,2048,2896 "${converged[@]}"
    sweep claim3b_n60 --grid N=60 --grid K=2896,4096,5792,8192 "${converged[@]}"
    sweep claim3b_n60 --grid N=60 --grid K=1024,1448,2048 "${converged[@]}"
    # 1/nu beside the slope: T1's nu (I_K from the IWL-set residual) and the t_mem fit's, read from
    # the theory PART's memorization runs.
    theory_memorization
    # The slope of ln K* on ln N, its t-interval, and a bootstrap over seeds within each (N, K).
    figures claim3b --sweep "$SWEEPS/claim3b_n10" --sweep "$SWEEPS/claim3b_n15" --sweep "$SWEEPS/claim3b_n20" \
        --sweep "$SWEEPS/claim3b_n30" --sweep "$SWEEPS/claim3b_n40" --sweep "$SWEEPS/claim3b_n60" \
        --sweep "$SWEEPS/theory_memorization" --only threshold_scaling
    echo "claim3b: $((SECONDS - began)) s"
}
case "$PART" in
    reddy) reddy; exit 0 ;;
    theory) theory; exit 0 ;;
    claim3b) claim3b; exit 0 ;;
esac

transition_n20
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
# ... and as paths into the MLP: what it reads from the query's own token, and from the head.
for circuit in memorization-path icl-path; do
    icl-mech ablate --run "$SWEEPS/transience/weight_decay_attn0.1-seed0" --circuit "$circuit" --step 6000
done
# Claim 7: the interleaved runs' induction circuit (scores per head; each head ablated).
for run in interleaved/K4096-seed0 interleaved/K256-seed0; do
    icl-mech probe --run "$SWEEPS/$run" --quiet
done
for circuit in induction previous-token; do
    icl-mech ablate --run "$SWEEPS/interleaved/K4096-seed0" --circuit "$circuit"
done
reddy
echo "total: $((SECONDS - START)) s"

# Claims 3b and 4 from converged runs (about 2.6 hours more on this machine: docs/REPRODUCTION.md). K* predicted before
# training: t_ICL at K = inf (nothing to memorize) at each N, and the memorization law above.
sweep kinf --grid K=inf --grid N=10,15,20,30,40 --grid seed=0..3 --set stop_icl_acc=0.95 \
    --set steps=6000 --ensemble 4
icl-mech predict --sweep "$SWEEPS/memorization" --sweep "$SWEEPS/kinf" --N 10,15,20,30,40 \
    --out "$FIGURES/predict"
# K*(N) from runs that end only once committed (ICL >= 0.95, or memorization plateaued over
# 1000 steps with IWL >= 0.8; docs/SWEEPS.md), 30000 steps at most, K in powers of 2 (3.3 per
# decade) around each K*, 2 seeds, and 6 more at N = 20's K = 1448 (just below K*).
CONVERGED=(--set steps=30000 --set stop_icl_acc=0.95 --set stop_plateau_steps=1000 --ensemble 4)
sweep converged_n20 --grid N=20 --grid K=512,1024,1448,2048,4096 --grid seed=0..1 "${CONVERGED[@]}"
sweep converged_n20 --grid N=20 --grid K=1448 --grid seed=2..7 "${CONVERGED[@]}"
sweep converged_n10 --grid N=10 --grid K=128,256,...,2048 --grid seed=0..1 "${CONVERGED[@]}"
sweep converged_n15 --grid N=15 --grid K=256,512,...,4096 --grid seed=0..1 "${CONVERGED[@]}"
sweep converged_n30 --grid N=30 --grid K=512,1024,...,8192 --grid seed=0..1 "${CONVERGED[@]}"
sweep converged_n40 --grid N=40 --grid K=512,1024,...,8192 --grid seed=0..1 "${CONVERGED[@]}"
icl-mech predict --sweep "$SWEEPS/memorization" --sweep "$SWEEPS/kinf" --N 10,15,20,30,40 \
    --measured "$SWEEPS/converged_n10" --measured "$SWEEPS/converged_n15" --measured "$SWEEPS/converged_n20" \
    --measured "$SWEEPS/converged_n30" --measured "$SWEEPS/converged_n40" --out "$FIGURES/predict_vs_converged"
figures converged --sweep "$SWEEPS/converged_n10" --sweep "$SWEEPS/converged_n15" \
    --sweep "$SWEEPS/converged_n20" --sweep "$SWEEPS/converged_n30" --sweep "$SWEEPS/converged_n40" \
    --sweep "$SWEEPS/memorization"
# Claim 4: 64 seeds near the K where half the converged N = 20 runs end in ICL: first 1722 =
# 2^10.75, between K = 1448 (1 of 8 seeds in ICL) and 2048 (2 of 2), which gave 27% ICL; then
# 1820, interpolated from that; histogram, dip test and t_ICL tail at each.
BIMODAL=(--grid N=20 --grid seed=0..63 --set steps=30000 --set stop_icl_acc=0.95 --set stop_plateau_steps=1000 --ensemble 8)
sweep bimodal_n20 --grid K=1722 "${BIMODAL[@]}"
sweep bimodal_n20_k1820 --grid K=1820 "${BIMODAL[@]}"
figures bimodal --sweep "$SWEEPS/bimodal_n20" --sweep "$SWEEPS/bimodal_n20_k1820" --only icl_time
echo "total with converged sweeps: $((SECONDS - START)) s"
