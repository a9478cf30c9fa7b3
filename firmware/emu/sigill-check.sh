#!/usr/bin/env bash
# Does a Python snippet run on a Raspberry Pi's cores, or die of an instruction they lack?
# Runs it inside the emulated Pi (pi-exec.sh) once per CPU model and prints one JSON line per CPU:
#   {"cpu": "cortex-a72", "result": "pass", "exit_code": 0, "seconds": 1.9, "tail": "..."}
# result: pass | sigill (exit 132, signal 4) | signal (another signal) | timeout | fail.
# Run as root.
#
#   firmware/emu/sigill-check.sh [options] -c CODE
#   firmware/emu/sigill-check.sh [options] --file HOST_SCRIPT.py
#   firmware/emu/sigill-check.sh [options] -- PYTHON-ARGS...      (e.g. a script path in the root)
#
#   --python PATH   the interpreter in the root (default /opt/pimodule/venv/bin/python if it
#                   exists, else python3)
#   --cpus "A B"    CPU models (default "cortex-a72 cortex-a53")
#   --env NAME=VAL  environment inside (repeatable), e.g. NUMBA_CPU_NAME=generic
#   --timeout S     per CPU (default 1800)
#   --root DIR      the arm64 root
# Exit status: 0 when every CPU passed, 1 when any died of SIGILL, 2 for other failures.
set -euo pipefail
EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PYTHON=""
CPUS="cortex-a72 cortex-a53"
TIMEOUT=1800
EXEC_OPTS=()
PY_ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -c) PY_ARGS=(-c "$2"); shift 2 ;;
        --file) PY_ARGS=(-c "$(cat "$2")"); shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        --cpus) CPUS="$2"; shift 2 ;;
        --env) EXEC_OPTS+=(--env "$2"); shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --root) EXEC_OPTS+=(--root "$2"); shift 2 ;;
        --) shift; PY_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "sigill-check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ ${#PY_ARGS[@]} -gt 0 ]] || { echo "sigill-check.sh: give -c CODE, --file FILE or -- ARGS" >&2; exit 2; }
if [[ -z "$PYTHON" ]]; then
    # shellcheck disable=SC2016
    PYTHON="$("$EMU_DIR/pi-exec.sh" --no-src "${EXEC_OPTS[@]}" -- /bin/sh -c \
        'if [ -x /opt/pimodule/venv/bin/python ]; then echo /opt/pimodule/venv/bin/python; else echo python3; fi')"
fi

json_str() {
    local s="$1"
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; s="${s//$'\t'/\\t}"; s="${s//$'\r'/\\r}"
    printf '"%s"' "$s"
}

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
worst=0
for cpu in $CPUS; do
    t0=$(date +%s.%N)
    set +e
    "$EMU_DIR/pi-exec.sh" --cpu "$cpu" "${EXEC_OPTS[@]}" -- \
        timeout -s KILL "$TIMEOUT" "$PYTHON" "${PY_ARGS[@]}" >"$log" 2>&1
    rc=$?
    set -e
    t1=$(date +%s.%N)
    case "$rc" in
        0) result=pass ;;
        132) result=sigill; worst=1 ;;
        137) result=timeout; [[ $worst -eq 1 ]] || worst=2 ;;  # timeout's SIGKILL
        12[9]|13[0-9]|14[0-9]|15[0-9]) result=signal; [[ $worst -eq 1 ]] || worst=2 ;;
        *) result=fail; [[ $worst -eq 1 ]] || worst=2 ;;
    esac
    signal=null
    [[ $rc -gt 128 ]] && signal=$((rc - 128))
    printf '{"cpu": %s, "result": %s, "exit_code": %d, "signal": %s, "seconds": %s, "python": %s, "tail": %s}\n' \
        "$(json_str "$cpu")" "$(json_str "$result")" "$rc" "$signal" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" "$(json_str "$PYTHON")" \
        "$(json_str "$(tail -c 400 "$log")")"
done
exit "$worst"
