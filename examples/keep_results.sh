#!/usr/bin/env bash
# Keep a sweep's results small and regenerable: every run's config.json, metrics.jsonl and
# status.json (no checkpoints), the sweep's index.csv and commands.log, and a README.md with
# the card, the torch version, the exact commands and their wall time.
#
#   bash examples/keep_results.sh SWEEP DEST     e.g. /tmp/paper/claim1 results/paper/claim1
#
# `icl-mech figures --sweep DEST` then makes every figure from the copy alone, offline. SWEEP's
# commands.log is what examples/reproduce_gpu.sh writes; without one the README says so.
set -euo pipefail

SWEEP=${1:?usage: bash examples/keep_results.sh SWEEP DEST}
DEST=${2:?usage: bash examples/keep_results.sh SWEEP DEST}
if [[ ! -f $SWEEP/index.csv ]]; then
    echo "keep_results.sh: $SWEEP/index.csv does not exist: is $SWEEP a sweep directory?" >&2
    exit 2
fi
NAME=$(basename "$DEST")
mkdir -p "$DEST"

runs=0
for config in "$SWEEP"/*/config.json; do
    [[ -e $config ]] || continue
    run=$(basename "$(dirname "$config")")
    mkdir -p "$DEST/$run"
    for file in config.json metrics.jsonl status.json; do
        [[ ! -f $SWEEP/$run/$file ]] || cp "$SWEEP/$run/$file" "$DEST/$run/$file"
    done
    runs=$((runs + 1))
done
cp "$SWEEP/index.csv" "$DEST/index.csv"
LOG=$SWEEP/commands.log
[[ ! -f $LOG ]] || cp "$LOG" "$DEST/commands.log"

# Each run's status, counted from the index's status column.
statuses=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "status") column = i; next }
    { count[$column]++ } END { for (s in count) printf "%s%d %s", (n++ ? ", " : ""), count[s], s }' "$DEST/index.csv")

{
    echo "# $NAME"
    echo
    echo "Kept by examples/keep_results.sh from \`$SWEEP\`: every run's config.json, metrics.jsonl"
    echo "and status.json (no checkpoints), index.csv and commands.log. $runs runs ($statuses)."
    echo
    if [[ -f $LOG ]]; then
        seconds=$(awk -F'\t' '{ sum += $2 } END { print sum }' "$LOG")
        echo "Ran on: $(cut -f4 "$LOG" | sort -u | paste -sd ';' - | sed 's/;/; /g')."
        echo "Wall time: $seconds s over $(wc -l <"$LOG") commands (reruns after a stop included):"
        echo
        echo '```'
        cut -f1,2,3,5 "$LOG"
        echo '```'
        # The last figures command, reading the kept copies of the sweeps it read.
        figures=$(awk -F'\t' '$5 ~ /^icl-mech figures / { last = $5 } END { print last }' "$LOG")
        if [[ -n $figures ]]; then
            read -a words <<<"$figures"
            command="icl-mech figures"
            for ((i = 2; i < ${#words[@]}; i++)); do
                if [[ ${words[i]} == --sweep ]]; then  # this sweep, or another kept beside it
                    read=$(basename "${words[i + 1]}")
                    [[ $read == "$(basename "$SWEEP")" ]] && read=$DEST || read=$(dirname "$DEST")/$read
                    command+=" --sweep $read"
                    i=$((i + 1))
                fi
            done
            echo
            echo "Its figures, from these files alone (offline, no checkpoints):"
            echo
            echo '```'
            echo "$command --out /tmp/figures/$NAME"
            echo '```'
        fi
    else
        echo "No commands.log in $SWEEP: the commands, card and wall time were not recorded."
    fi
} >"$DEST/README.md"
echo "kept $runs runs of $SWEEP in $DEST ($(du -sh "$DEST" | cut -f1))"
