#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers a peer reaches, with atheris
# (libFuzzer for Python).  What each target feeds, and what the last campaign
# ran and found, is in docs/fuzzing.md.
#
#   fuzz/run.sh                     every target, 60 s each, one at a time
#   fuzz/run.sh -t 300 -j 2         5 minutes each, two at a time
#   fuzz/run.sh tunnel_codec        one target (the name after fuzz_)
#   fuzz/run.sh -t 60 -- -dict=...  more libFuzzer flags after --
#
# New corpus entries, crash inputs and logs go to a scratch folder (-o, default
# a new /tmp/clusternet-fuzz.*), never into fuzz/corpus/: copy an input there
# by hand when it is worth keeping.  A crash input is replayed with
#   .venv/bin/python fuzz/fuzz_<target>.py <input>
# and becomes a regression test in tests/fuzz/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
seconds=60
jobs=1
out=""

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while getopts "t:j:o:h" opt; do
    case $opt in
    t) seconds=$OPTARG ;;
    j) jobs=$OPTARG ;;
    o) out=$OPTARG ;;
    h) usage 0 ;;
    *) usage 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    targets+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
extra=("$@")

if [ ${#targets[@]} -eq 0 ]; then
    for file in "$root"/fuzz/fuzz_*.py; do
        name=$(basename "$file" .py)
        targets+=("${name#fuzz_}")
    done
fi
for target in "${targets[@]}"; do
    if [ ! -f "$root/fuzz/fuzz_$target.py" ]; then
        echo "no target fuzz/fuzz_$target.py" >&2
        exit 2
    fi
done

if ! "$python" -c "import atheris" 2>/dev/null; then
    echo "installing atheris into $("$python" -c 'import sys; print(sys.prefix)')"
    "$python" -m pip install --quiet atheris
fi

out=${out:-$(mktemp -d /tmp/clusternet-fuzz.XXXXXX)}
mkdir -p "$out"
echo "fuzzing ${targets[*]} for ${seconds} s each, ${jobs} at a time, in $out"

run_one() {
    local target=$1 dir="$out/$1"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    local dict=()
    if [ -f "$root/fuzz/$target.dict" ]; then
        dict=(-dict="fuzz/$target.dict")
    fi
    # The first corpus folder receives the new entries; the seeds are read only.
    if (cd "$root" && PYTHONPATH="$root" "$python" "fuzz/fuzz_$target.py" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
        "${dict[@]}" "${extra[@]}" "$dir/corpus" "fuzz/corpus/$target") >"$dir/log" 2>&1; then
        status=ok
    else
        status="CRASH (exit $?)"
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+' "$dir/log" | tail -n 1 || true)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' || true)
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' || true)
    corp=$(echo "$last" | grep -o 'corp: [0-9/a-zA-Z]*' || true)
    printf '%-18s %s runs=%s %s %s %s artifacts=%s log=%s\n' "$target" "$status" \
        "${runs:-?}" "$cov" "$ft" "$corp" "$(ls "$dir/artifacts" | wc -l)" "$dir/log"
}

running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_one "$target" &
    running=$((running + 1))
done
wait
