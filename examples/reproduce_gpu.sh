#!/usr/bin/env bash
# The paper at its own scale (the `paper` preset: N = 100, plain SGD at lr 0.01, batch 128), on one
# CUDA GPU, as examples/reproduce_cpu.sh is at CPU scale: one resumable `icl-mech sweep` of
# ensembles per experiment, then `icl-mech figures` over it.
#
#   bash examples/reproduce_gpu.sh OUT [EXPERIMENT]     EXPERIMENT: claim1, claim3b, claim4 or claim6
#   SMOKE=1 bash examples/reproduce_gpu.sh OUT          every experiment at toy size on the CPU
#   EAGER=1 bash examples/reproduce_gpu.sh OUT          without CUDA graphs (if recording one fails)
#
# Sweeps go to OUT/<experiment>/, figures to OUT/<experiment>/figures/. Re-running the same command
# skips finished runs and resumes interrupted ones. SIGTERM (`timeout -s TERM`, or to this script
# alone) or Ctrl-C stops the running sweep, which saves every run where it stands; the script then
# says so and exits 143, and the same command continues to the result of an uninterrupted run.
#
# Sizing (a projection, not a measurement: no GPU has run it yet). Each experiment is sized to
# about 9 minutes of one GPU from the targets in benchmarks/README.md (H100): a paper run at 0.5 ms
# a step, a 64-member ensemble at 0.06 ms a member-step. Assuming an ensemble of E members costs
# max(0.5, 0.06 E) ms a step at N = 100 (twice that at N = 200) and about 16 s to start:
#   claim1   44 members (11 K x 4 seeds), one ensemble, 2.6 ms a step: 400 epochs (187,600 steps)
#            in 500 s.
#   claim3b  N = 25, 50, 200, 9 K x 2 seeds each (N = 100 is claim1's): three ensembles of 18,
#            1.1, 1.1 and 2.2 ms a step: 250 epochs (117,250 steps) each in 520 s together.
#   claim4   64 seeds, one ensemble, 3.8 ms a step: 280 epochs (131,320 steps) in 520 s.
#   claim6   2 ensembles of 4 seeds (attention weight decay 1e-10 and 3e-3), 0.5 ms a step: the
#            paper's 1000 epochs (469,000 steps) each, 470 s for both.
# Members that stop early keep their slot in the captured CUDA step (docs/SWEEPS.md), so an
# ensemble takes its full budget unless every member stops. Once `python -m benchmarks --device
# cuda` has measured the step (evaluations included), scale STEPS1, STEPS3, STEPS4 and STEPS6
# below by projected / measured step time.
set -euo pipefail

OUT=${1:?usage: bash examples/reproduce_gpu.sh OUT [claim1|claim3b|claim4|claim6]}
ONLY=${2:-}
EXPERIMENTS=(claim1 claim3b claim4 claim6)
if [[ -n $ONLY && ! " ${EXPERIMENTS[*]} " =~ " $ONLY " ]]; then
    echo "reproduce_gpu.sh: unknown experiment '$ONLY'; expected one of ${EXPERIMENTS[*]}" >&2
    exit 2
fi

EPOCH=469  # 60,000 sequences of 128
if [[ ${SMOKE:-0} == 1 ]]; then  # the same commands at toy size on the CPU (the test runs this)
    DEVICE=cpu
    SIZE=(--set d_mlp=16 --set eval_size=64 --set batch_size=16 --set eval_every=10 --set checkpoint_every=20)
    STOP=(--set stop_icl_acc=0.95 --set stop_plateau_steps=20)
    N1=10; K1=32,64,128; SEEDS1=0..1; STEPS1=40
    N3=(14); K3=(32,64,128); SEEDS3=0..1; STEPS3=40  # N = 10 is claim1's
    K4_PAPER=64; SEEDS4=0..3; STEPS4=40
    K6=32; SEEDS6=0..0; STEPS6=60
else
    DEVICE=cuda
    SIZE=()
    STOP=(--set stop_icl_acc=0.95 --set stop_plateau_steps=$((20 * EPOCH)))
    # Claim 1: K from 2^11 to 2^16 in half octaves (rounded to even K: L = 2 labels).
    N1=100; K1=2048,2896,4096,5792,8192,11586,16384,23170,32768,46340,65536; SEEDS1=0..3
    STEPS1=$((400 * EPOCH))
    # Claim 3b: at each N, K from K*/4 to 4 K* in half octaves around the paper's K*(N) of about
    # 10^4 (N / 100)^1.43: 1400 at N = 25, 3700 at 50, 27000 at 200.
    N3=(25 50 200)
    K3=(362,512,724,1024,1448,2048,2896,4096,5792
        1024,1448,2048,2896,4096,5792,8192,11586,16384
        5792,8192,11586,16384,23170,32768,46340,65536,92682)
    SEEDS3=0..1; STEPS3=$((250 * EPOCH))
    # Claim 4: at claim1's K* (where about half the seeds reach ICL), else the paper's 10^4.
    K4_PAPER=10000; SEEDS4=0..63; STEPS4=$((280 * EPOCH))
    # Claim 6: above K* (the preset's K = 20000), no stopping rule: ICL must be seen to fade.
    K6=20000; SEEDS6=0..3; STEPS6=$((1000 * EPOCH))
fi
COMMON=(--preset paper --device "$DEVICE" --ensemble 64 --quiet "${SIZE[@]}")
[[ ${EAGER:-0} == 1 ]] && COMMON+=(--eager)

# Every command runs in the background and is waited for, so that SIGTERM or Ctrl-C sent to this
# script alone reaches it too (a non-interactive bash would otherwise die at once, leaving it).
child=""
stopped=""
on_stop() {
    stopped=1
    [[ -z $child ]] || kill -TERM "$child" 2>/dev/null || true
}
trap on_stop TERM INT
stop_if_asked() {
    if [[ -n $stopped ]]; then
        echo "reproduce_gpu.sh: stopped by SIGTERM, every run saved where it stood; run the same command again to continue" >&2
        exit 143
    fi
}

# What ran where, for each experiment's commands.log (and results/paper/*/README.md).
ENVIRONMENT=$(python3 -c 'import torch
print(f"torch {torch.__version__} on", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")' \
    2>/dev/null || echo "torch unknown (python3 does not import it)")

logged() {  # logged EXPERIMENT COMMAND...: run it to its end, however often interrupted, and log
    # its wall time and exit status to OUT/EXPERIMENT/commands.log; its exit status
    local log=$OUT/$1/commands.log began=$SECONDS status=0
    shift
    stop_if_asked  # asked while this script itself was busy
    "$@" &
    child=$!
    [[ -z $stopped ]] || kill -TERM "$child" 2>/dev/null || true  # asked before it had a pid
    while kill -0 "$child" 2>/dev/null; do wait "$child" || true; done
    wait "$child" || status=$?
    child=""
    mkdir -p "$(dirname "$log")"
    printf '%s\t%s s\texit %s\t%s\t%s\n' "$(date -u +%FT%TZ)" $((SECONDS - began)) "$status" "$ENVIRONMENT" \
        "$*" >>"$log"
    stop_if_asked
    return "$status"
}

sweep() {  # sweep EXPERIMENT ARGS...: one timed `icl-mech sweep` into $OUT/EXPERIMENT
    local name=$1 began=$SECONDS
    shift
    logged "$name" icl-mech sweep "${COMMON[@]}" "$@" --out "$OUT/$name"
    echo "sweep $name: $((SECONDS - began)) s"
}

figures() {  # figures EXPERIMENT [SWEEP ...]: every analysis its runs allow, into $OUT/EXPERIMENT/figures
    local name=$1
    shift
    logged "$name" icl-mech figures --sweep "$OUT/$name" "$@" --out "$OUT/$name/figures" \
        || echo "figures $name: none written (see above)"
}

claim1() {
    sweep claim1 --grid N=$N1 --grid K=$K1 --grid seed=$SEEDS1 --set steps=$STEPS1 "${STOP[@]}"
    figures claim1
}

claim3b() {
    local i
    for i in "${!N3[@]}"; do
        sweep claim3b --grid N=${N3[i]} --grid K=${K3[i]} --grid seed=$SEEDS3 --set steps=$STEPS3 "${STOP[@]}"
    done
    if [[ -d $OUT/claim1 ]]; then  # K* at N = 100 comes from claim 1's runs
        figures claim3b --sweep "$OUT/claim1"
    else
        figures claim3b
    fi
}

claim4_k() {  # the K of claim 4: chosen once (OUT/claim4/K), so that a rerun resumes the same runs
    local chosen=$OUT/claim4/K k=""
    if [[ ! -f $chosen ]]; then
        mkdir -p "$OUT/claim4"
        if [[ -f $OUT/claim1/figures/transition.csv ]]; then
            k=$(python3 -c 'import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
k = float(rows[0]["K_star"] or "nan") if rows else float("nan")
grid = [int(value) for value in sys.argv[2].split(",")]
print(2 * round(k / 2) if min(grid) <= k <= max(grid) else "")  # a fit outside the grid is not used' \
                "$OUT/claim1/figures/transition.csv" "$K1")
        fi
        echo "${k:-$K4_PAPER}" >"$chosen"
    fi
    cat "$chosen"
}

claim4() {
    local k
    k=$(claim4_k)
    echo "claim4: K = $k (from $OUT/claim4/K)"
    sweep claim4 --grid N=$N1 --grid K=$k --grid seed=$SEEDS4 --set steps=$STEPS4 "${STOP[@]}"
    figures claim4
}

claim6() {
    sweep claim6 --grid weight_decay_attn=1e-10,3e-3 --grid seed=$SEEDS6 --set N=$N1 --set K=$K6 \
        --set steps=$STEPS6
    figures claim6
}

START=$SECONDS
for experiment in "${EXPERIMENTS[@]}"; do
    if [[ -z $ONLY || $ONLY == "$experiment" ]]; then
        "$experiment"
    fi
done
echo "total: $((SECONDS - START)) s"
