#!/usr/bin/env bash
# The test command of Tally.
#
#   scripts/test.sh [extra dotnet test arguments, e.g. --filter "FullyQualifiedName~Ledger"]
#
# Starts private PostgreSQL, Redis and RabbitMQ servers in a temporary folder (scripts/servers.sh),
# restores, checks formatting (dotnet format --verify-no-changes), builds in Release, runs every
# test project with the trx logger, stops the servers and removes the folder (also on errors and
# Ctrl-C). The last line printed is alone: `N passed, N failed, N skipped`. The exit code is 0 only
# when nothing failed, dotnet test exited 0 and at least one test passed.
#
# Environment knobs:
#   TALLY_TEST_KEEP=1          keep the temporary folder (server logs, trx files) instead of removing it
#   TALLY_TEST_TIMEOUT=SECS    bound on `dotnet test` as a whole (default 3600)
#
# `source scripts/test.sh` only defines the functions (summarize_trx etc.) without running anything.
set -euo pipefail

T0=$(date +%s%N)
log() {
  local now
  now=$(date +%s%N)
  printf '[test %6.1fs] %s\n' "$(awk -v a="$T0" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "$*" >&2
}

# summarize_trx DIR -> prints "files total passed failed skipped" summed over every *.trx under DIR.
# Reads the <Counters .../> element of each file; failed includes error, timeout and aborted outcomes;
# skipped = total - passed - failed (never below 0).
summarize_trx() {
  local dir=$1 files=0 total=0 passed=0 failed=0 f counters t p x
  while IFS= read -r -d '' f; do
    files=$((files + 1))
    # the element may span lines: join the file, then cut out <Counters ... >
    counters=$(tr '\r\n' '  ' <"$f" | grep -o '<Counters[^>]*>' | head -n1 || true)
    [[ -n $counters ]] || continue
    read -r t p x < <(awk '{
        for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2) { gsub(/[^0-9]/, "", kv[2]); a[kv[1]] = kv[2] + 0 }
      } END { print a["total"] + 0, a["passed"] + 0, a["failed"] + a["error"] + a["timeout"] + a["aborted"] }' <<<"$counters")
    total=$((total + t))
    passed=$((passed + p))
    failed=$((failed + x))
  done < <(find "$dir" -type f -name '*.trx' -print0 2>/dev/null)
  local skipped=$((total - passed - failed))
  ((skipped >= 0)) || skipped=0
  echo "$files $total $passed $failed $skipped"
}

# kill every process that carries TALLY_TEST_RUN=$1 in its environment (leftover test hosts,
# build servers started by this run); builtins only, so the scan itself spawns nothing
kill_run_processes() {
  local tag="TALLY_TEST_RUN=$1" d p v pids=()
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [[ $p == "$$" || $p == "${BASHPID:-}" ]] && continue
    local -a vars=()
    { mapfile -d '' vars <"$d/environ"; } 2>/dev/null || continue
    for v in "${vars[@]}"; do
      if [[ $v == "$tag" ]]; then
        pids+=("$p")
        break
      fi
    done
  done
  ((${#pids[@]})) || return 0
  log "stopping ${#pids[@]} leftover process(es) of this run: ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  SERVERS=$(pwd)/scripts/servers.sh

  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
  # one-shot run: no MSBuild worker nodes or build server left behind
  export MSBUILDDISABLENODEREUSE=${MSBUILDDISABLENODEREUSE:-1} DOTNET_CLI_USE_MSBUILD_SERVER=${DOTNET_CLI_USE_MSBUILD_SERVER:-0}

  TMP=$(mktemp -d "${TMPDIR:-/tmp}/tally-test.XXXXXXXX")
  # PostgreSQL runs as user postgres and must be able to pass through to its folder
  chmod 711 "$TMP"
  CLEANED=0
  cleanup() {
    ((CLEANED)) && return 0
    CLEANED=1
    bash "$SERVERS" stop "$TMP/servers" >"$TMP/servers-stop.log" 2>&1 ||
      { log "servers.sh stop failed:"; cat "$TMP/servers-stop.log" >&2; }
    kill_run_processes "$TMP"
    if [[ ${TALLY_TEST_KEEP:-0} == 1 ]]; then
      log "kept $TMP"
    else
      rm -rf "$TMP"
    fi
  }
  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM HUP

  # finish PASSED FAILED SKIPPED CODE: stop everything first, so the counts are the last line
  finish() {
    cleanup
    echo "$1 passed, $2 failed, $3 skipped"
    exit "$4"
  }

  log "starting servers in $TMP/servers"
  if ! bash "$SERVERS" start "$TMP/servers"; then
    log "servers did not start"
    finish 0 1 0 1
  fi
  # shellcheck disable=SC1091
  source "$TMP/servers/env.sh"
  export TALLY_TEST_REQUIRE_SERVERS=1

  # Processes dotnet starts carry this tag, so cleanup can find the ones that outlive the run.
  local run=(env "TALLY_TEST_RUN=$TMP")

  log "dotnet restore"
  if ! "${run[@]}" dotnet restore Tally.slnx; then
    log "dotnet restore failed"
    finish 0 1 0 1
  fi

  log "dotnet format --verify-no-changes"
  if ! "${run[@]}" dotnet format Tally.slnx --verify-no-changes --no-restore >"$TMP/format.log" 2>&1; then
    cat "$TMP/format.log"
    log "dotnet format --verify-no-changes failed: formatting, style or analyzer findings (fix with: dotnet format Tally.slnx)"
    finish 0 1 0 1
  fi

  log "dotnet build -c Release"
  if ! "${run[@]}" dotnet build Tally.slnx -c Release --no-restore; then
    log "dotnet build failed"
    finish 0 1 0 1
  fi

  # LogFilePrefix, not LogFileName: with a fixed LogFileName every test project of the solution
  # writes the same file and only the last one survives; the prefix gives one file per project.
  log "dotnet test $*"
  local test_rc=0
  "${run[@]}" timeout --kill-after=30 "${TALLY_TEST_TIMEOUT:-3600}" \
    dotnet test Tally.slnx -c Release --no-build \
    --logger "trx;LogFilePrefix=results" --results-directory "$TMP/results" "$@" || test_rc=$?
  log "dotnet test exited with $test_rc"
  ((test_rc != 124)) || log "dotnet test timed out after ${TALLY_TEST_TIMEOUT:-3600} s"

  local files total passed failed skipped
  read -r files total passed failed skipped < <(summarize_trx "$TMP/results")
  log "$files trx file(s): total $total, passed $passed, failed $failed, skipped $skipped"
  if ((files == 0 && failed == 0)); then
    log "no trx file was produced: counting the run as failed"
    failed=1
  elif ((test_rc != 0 && failed == 0)); then
    log "dotnet test failed without a failed test (test host crash, abort or timeout): counting it as a failure"
    failed=1
  fi

  local code=0
  if ((failed != 0 || test_rc != 0 || passed == 0)); then code=1; fi
  ((passed > 0)) || log "no test passed"
  finish "$passed" "$failed" "$skipped" "$code"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
