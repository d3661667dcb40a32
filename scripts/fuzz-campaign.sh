#!/usr/bin/env bash
# Fuzz campaign: runs every cargo-fuzz target of fuzz/ in turn (one fuzzer at a time, no
# -fork/-jobs) for a given time or number of executions, starting from the committed corpus
# fuzz/seeds/<target>/ plus the hand-written seeds of scripts/fuzz-seeds.sh; then minimises the
# corpus (`cargo fuzz cmin`), caps it, writes it back to fuzz/seeds/<target>/ and records
# executions, coverage, corpus size and findings per target in the table of fuzz/README.md.
#
#   scripts/fuzz-campaign.sh [--time SECS] [--execs N] [--sanitizer none|address]
#                            [--max-files N] [--max-kb N] [--no-write-back] [--minimise-only]
#                            [TARGET...]
#
#   --time SECS       stop each target after SECS seconds (libFuzzer -max_total_time; default 3600)
#   --execs N         stop each target after N executions (libFuzzer -runs=N); with --time,
#                     whichever comes first
#   --sanitizer S     none (default: 3-5x faster, for long runs) or address (what the smoke run uses)
#   --max-files N     cap on the files kept per target after minimising (default 200)
#   --max-kb N        cap on the total size kept per target, in KiB (default 200)
#   --no-write-back   leave fuzz/seeds/ and fuzz/README.md alone (results only printed)
#   --minimise-only   no fuzzing: minimise and cap the corpus of the last run again (for new caps)
#   TARGET...         targets to run (default: all, from `cargo fuzz list`)
#
# Working files (gitignored) go to fuzz/campaign/<target>/: corpus/, run.log, cmin.log.
# Crash, timeout and out-of-memory inputs land in fuzz/artifacts/<target>/ and are also copied
# to fuzz/seeds/<target>/regress-<kind>-<hash>: files named regress-* are never removed by the
# write-back, so every later campaign and smoke run replays them. Exits non-zero if any target
# found something.
set -euo pipefail

usage() {
    sed -n '8,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

SECS=3600
EXECS=""
SANITIZER=none
MAX_FILES=200
MAX_KB=200
WRITE_BACK=1
MIN_ONLY=0
targets=()
is_num() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac }
while [ $# -gt 0 ]; do
    case "$1" in
    --time) is_num "${2:-}" || usage; SECS="$2"; shift 2 ;;
    --execs) is_num "${2:-}" || usage; EXECS="$2"; shift 2 ;;
    --sanitizer) case "${2:-}" in none | address) SANITIZER="$2" ;; *) usage ;; esac; shift 2 ;;
    --max-files) is_num "${2:-}" || usage; MAX_FILES="$2"; shift 2 ;;
    --max-kb) is_num "${2:-}" || usage; MAX_KB="$2"; shift 2 ;;
    --no-write-back) WRITE_BACK=0; shift ;;
    --minimise-only) MIN_ONLY=1; shift ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) targets+=("$1"); shift ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
README="$FUZZ/README.md"
export RUSTC_BOOTSTRAP=1
# cargo-fuzz builds into fuzz/target; a CARGO_TARGET_DIR from the environment would move it.
unset CARGO_TARGET_DIR

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-campaign: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# shellcheck source=scripts/fuzz-seeds.sh
source "$ROOT/scripts/fuzz-seeds.sh"

cd "$FUZZ"
all_targets="$(cargo fuzz list)"
if [ ${#targets[@]} -eq 0 ]; then
    # shellcheck disable=SC2206 # one target name per word
    targets=($all_targets)
fi
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$all_targets" || { echo "fuzz-campaign: no target $t" >&2; exit 2; }
done

CAMPAIGN="$FUZZ/campaign"
rm -rf "$CAMPAIGN/hand-seeds"
write_seeds "$CAMPAIGN/hand-seeds"

cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
machine="${cpu:-unknown CPU}, $(nproc) cores"

echo "fuzz-campaign: building (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER"

# stat NAME LOG: the last value libFuzzer printed for stat::NAME (-print_final_stats=1).
stat() { grep -Eo "stat::$1: *[0-9]+" "$2" | grep -Eo '[0-9]+$' | tail -1 || true; }

# update_row TARGET ROW: replaces the target's row in README's results table (or appends it).
update_row() {
    local tmp
    tmp="$(mktemp)"
    T="$1" ROW="$2" awk '
        /<!-- campaign-results:begin -->/ { print; inblk = 1; next }
        /<!-- campaign-results:end -->/ { if (!done) print ENVIRON["ROW"]; inblk = 0; print; next }
        inblk && index($0, "| `" ENVIRON["T"] "` |") == 1 { print ENVIRON["ROW"]; done = 1; next }
        { print }' "$README" >"$tmp"
    cat "$tmp" >"$README"
    rm -f "$tmp"
}

found=()
for t in "${targets[@]}"; do
    dir="$CAMPAIGN/$t"
    corpus="$dir/corpus"
    findings=none
    if [ "$MIN_ONLY" -eq 1 ]; then
        [ -d "$corpus" ] || { echo "fuzz-campaign: $t: no $corpus to minimise" >&2; exit 2; }
        # The last run's log, for the printed summary below; the table keeps its figures.
        execs="$(stat number_of_executed_units "$dir/run.log")"
        rate="$(stat average_exec_per_sec "$dir/run.log")"
        secs=- cov=- ft=-
    else
        rm -rf "$dir"
        mkdir -p "$corpus" "$FUZZ/artifacts/$t"
        [ -d "$FUZZ/seeds/$t" ] && cp -p "$FUZZ/seeds/$t/." "$corpus/" -r
        [ -d "$CAMPAIGN/hand-seeds/$t" ] && cp -p "$CAMPAIGN/hand-seeds/$t/." "$corpus/" -r
        seeds_in=$(find "$corpus" -type f | wc -l)
        load="$(cut -d' ' -f1 /proc/loadavg)"
        date="$(date -u '+%Y-%m-%d %H:%M')"

        limits=(-max_total_time="$SECS")
        [ -n "$EXECS" ] && limits+=(-runs="$EXECS")
        echo "fuzz-campaign: $t: $seeds_in seed files; ${SECS} s${EXECS:+ or $EXECS executions}"
        before="$(find "$FUZZ/artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)"
        start=$(date +%s)
        set +e
        cargo fuzz run --sanitizer "$SANITIZER" "$t" "$corpus" -- "${limits[@]}" \
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$dir/run.log" 2>&1
        rc=$?
        set -e
        secs=$(($(date +%s) - start))
        execs="$(stat number_of_executed_units "$dir/run.log")"
        rate="$(stat average_exec_per_sec "$dir/run.log")"
        # Without the final stats (a full disk, a killed run), the last status line's "#N" counts.
        [ -n "$execs" ] || execs="$(grep -Eo '^#[0-9]+' "$dir/run.log" | tail -1 | tr -d '#' || true)"
        # libFuzzer rounds the elapsed time down to whole seconds (0/s for a run under a second).
        if [ "${rate:-0}" -eq 0 ] && [ -n "$execs" ]; then rate=$((execs / (secs > 0 ? secs : 1))); fi
        last="$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$dir/run.log" | tail -1 || true)"
        cov="$(grep -Eo 'cov: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"
        ft="$(grep -Eo 'ft: [0-9]+' <<<"$last" | grep -Eo '[0-9]+' || true)"

        if [ "$rc" -ne 0 ]; then
            after="$(find "$FUZZ/artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)"
            new="$(comm -13 <(echo "$before") <(echo "$after") | grep . || true)"
            why="$(grep -Eo -m1 "panicked at [^ ]+|ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-z-]+" "$dir/run.log" || echo "exit $rc")"
            findings="exit $rc: $why"
            for f in $new; do
                findings="$findings; \`artifacts/$t/$(basename "$f")\`"
                if [ "$WRITE_BACK" -eq 1 ]; then
                    mkdir -p "$FUZZ/seeds/$t"
                    cp "$f" "$FUZZ/seeds/$t/regress-$(basename "$f")"
                fi
            done
            found+=("$t")
            echo "fuzz-campaign: $t FOUND: $findings (log: $dir/run.log)" >&2
        fi
    fi

    # Minimise: cargo fuzz cmin (libFuzzer -merge=1) keeps the smallest inputs that together
    # reach every feature (edges and their hit-count buckets). If that is still over the caps, a
    # second cmin keeps a greedy set cover of the edges alone (-set_cover_merge=1
    # -use_counters=0): same edge coverage, far fewer files for the state machine targets. Then
    # cap files and bytes, smallest first.
    files_before=$(find "$corpus" -type f | wc -l)
    cargo fuzz cmin --sanitizer "$SANITIZER" "$t" "$corpus" >"$dir/cmin.log" 2>&1 ||
        echo "fuzz-campaign: $t: cmin failed (log: $dir/cmin.log); keeping the unminimised corpus" >&2
    if [ "$(find "$corpus" -type f | wc -l)" -gt "$MAX_FILES" ] ||
        [ "$(find "$corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')" -gt $((MAX_KB * 1024)) ]; then
        cargo fuzz cmin --sanitizer "$SANITIZER" "$t" "$corpus" -- -set_cover_merge=1 -use_counters=0 \
            >"$dir/cmin-edges.log" 2>&1 ||
            echo "fuzz-campaign: $t: edge cmin failed (log: $dir/cmin-edges.log)" >&2
    fi
    kept="$dir/kept"
    rm -rf "$kept"
    mkdir -p "$kept"
    n=0
    bytes=0
    while read -r size f; do
        [ "$n" -lt "$MAX_FILES" ] || break
        [ $((bytes + size)) -le $((MAX_KB * 1024)) ] || break
        cp "$f" "$kept/"
        n=$((n + 1))
        bytes=$((bytes + size))
    done < <(find "$corpus" -type f -printf '%s %p\n' | sort -n)
    # A kept input equal to a regress-<kind>-<sha1> file is already in fuzz/seeds/ under that name.
    for r in "$FUZZ/seeds/$t"/regress-*; do
        [ -e "$r" ] && rm -f "$kept/${r##*-}"
    done
    n=$(find "$kept" -type f | wc -l)
    bytes=$(find "$kept" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    files_min=$(find "$corpus" -type f | wc -l)
    # Coverage of what is kept: libFuzzer runs the corpus once and stops (-runs=0).
    cargo fuzz run --sanitizer "$SANITIZER" "$t" "$kept" -- -runs=0 >"$dir/kept.log" 2>&1 || true
    kept_cov="$(grep -E 'INITED|DONE' "$dir/kept.log" | grep -Eo 'cov: [0-9]+' | tail -1 | grep -Eo '[0-9]+' || true)"

    printf 'fuzz-campaign: %-18s %10s execs in %5s s (%s/s)  cov %-5s ft %-6s corpus %s -> cmin %s -> kept %s files, %s B (cov %s)  %s\n' \
        "$t" "${execs:-?}" "$secs" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$files_before" "$files_min" "$n" "$bytes" \
        "${kept_cov:-?}" "$findings"

    if [ "$WRITE_BACK" -eq 1 ]; then
        mkdir -p "$FUZZ/seeds/$t"
        find "$FUZZ/seeds/$t" -type f ! -name 'regress-*' -delete
        cp "$kept/." "$FUZZ/seeds/$t/" -r
        kept_cell="$n files, $(((bytes + 1023) / 1024)) KiB (cov ${kept_cov:-?})"
        if [ "$MIN_ONLY" -eq 1 ]; then
            # Only the corpus cell of the existing row changes.
            row="$(T="$t" CELL="$kept_cell" awk -F' [|] ' 'BEGIN { OFS = " | " }
                /<!-- campaign-results:begin -->/ { inblk = 1 }
                /<!-- campaign-results:end -->/ { inblk = 0 }
                inblk && index($0, "| `" ENVIRON["T"] "` |") == 1 { $7 = ENVIRON["CELL"]; print; exit }' "$README")"
            [ -n "$row" ] || row="| \`$t\` | ? | ? | ? | ? | ? | $kept_cell | ? | ? | $SANITIZER | $machine |"
        else
            row="| \`$t\` | ${execs:-?} | ${rate:-?} | $secs | ${cov:-?} | ${ft:-?} | $kept_cell | $findings | $date | $SANITIZER | $machine, load $load |"
        fi
        update_row "$t" "$row"
    fi
done

if [ ${#found[@]} -gt 0 ]; then
    echo "fuzz-campaign: findings in: ${found[*]} (inputs under fuzz/artifacts/<target>/, copied to fuzz/seeds/<target>/regress-*)" >&2
    exit 1
fi
echo "fuzz-campaign: done, no findings"
