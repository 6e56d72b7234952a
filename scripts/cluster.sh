#!/usr/bin/env bash
# A Tally fleet on this machine: PostgreSQL, RabbitMQ, Redis and N Tally instances with chosen roles.
#
# Usage:
#   scripts/cluster.sh start DIR [--api N] [--worker N] [--scheduler N] [--instances "api,worker,..."]
#                                     build Tally once (Release), start the servers and the instances
#                                     (default: 2 api, 2 worker, 1 scheduler), wait until every one is ready
#   scripts/cluster.sh stop DIR       SIGTERM every instance (SIGKILL after 20 s), then stop the servers
#                                     it started (never reused ones); idempotent, bounded in time
#   scripts/cluster.sh status DIR     print each instance and server up/down (exit 1 if any is down)
#
# Each instance gets an id (api-1, api-2, worker-1, scheduler-1, ...; a role list such as
# "api+scheduler" in --instances gives one instance both roles), a free port on 127.0.0.1, and in
# DIR/instances/ its log (ID.log) and pid file (ID.pid). All share one generated signing key. The
# environment is Development (the built-in sandboxes are on); the first instance's sandbox T24
# (/sandbox/t24) is the core of every instance (T24:BaseUrl).
#
# Knobs (environment):
#   TALLY_CLUSTER_SERVERS=SERVERS_DIR  reuse the servers that `scripts/servers.sh start SERVERS_DIR`
#                                      started (tests: the ones scripts/test.sh runs); the fleet then
#                                      gets its own database, allowance queue and Redis database, and
#                                      `stop` leaves those servers running
#   TALLY_CLUSTER_APP=FOLDER           run the Tally.dll in FOLDER instead of building (tests: their own build)
#   TALLY_CLUSTER_ENVIRONMENT=NAME     ASPNETCORE_ENVIRONMENT (default Development; elsewhere the
#                                      sandbox is switched on explicitly, and says so in each log)
#   TALLY_CLUSTER_TIMEOUT=SECS         how long `start` waits for readiness (default 180)
# Any other setting in the environment (e.g. RateLimits__t24__PermitsPerSecond=50) reaches every
# instance, unless the script sets it itself (the servers, roles, id, port and signing key).
#
# After `start`, `source DIR/cluster.env` exports:
#   TALLY_CLUSTER_URL          the first api instance's URL (else the first instance's)
#   TALLY_CLUSTER_TOKEN        an admin bearer token (12 hours)
#   TALLY_CLUSTER_GUARDIAN_TOKEN  the demo guardian's token (Development demo data)
#   TALLY_CLUSTER_SIGNING_KEY  the fleet's Auth:SigningKey
#   TALLY_CLUSTER_INSTANCES    the instance ids, space-separated
#   TALLY_CLUSTER_POSTGRES     the fleet's database (Npgsql connection string)
#   TALLY_CLUSTER_URL_<ID>     each instance's URL (ID upper-cased, - as _: TALLY_CLUSTER_URL_API_1)
# and DIR/instances.tsv lists one instance a line: id, roles, url, pid, log (tab-separated).
# Must run as root on Debian (scripts/servers.sh installs the servers); needs the .NET 10 SDK.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVERS_SH=$REPO/scripts/servers.sh
T0=$(date +%s%N)
# Instances carry this variable; `stop` uses it to find any left over without a pid file.
OWNER_VAR=TALLY_CLUSTER_OWNER

log() {
  local now
  now=$(date +%s%N)
  printf '[cluster %6.1fs] %s\n' "$(awk -v a="$T0" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$2
shift 2
[[ -n $DIR ]] || usage

# ---------------------------------------------------------------- helpers

now_s() { date +%s.%N; }
deadline_in() { awk -v s="$1" -v n="$(now_s)" 'BEGIN { printf "%.3f", n + s }'; }
deadline_passed() { awk -v d="$1" -v n="$(now_s)" 'BEGIN { exit !(n > d) }'; }

# true while PID runs; a zombie counts as gone
pid_alive() {
  local st
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  [[ ${st%% *} != Z ]]
}

read_pidfile() {
  if [[ -f $1 ]]; then head -n1 "$1" | tr -dc '0-9' || true; fi
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# http_status PORT PATH -> prints the HTTP status code of GET PATH (000 when nothing answers); bash only, no curl
http_status() {
  local port=$1 path=$2 line
  line=$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$1" >&3
    head -n1 <&3' "$port" "$path" 2>/dev/null) || line=""
  line=${line#HTTP/* }
  line=${line:0:3}
  [[ $line =~ ^[0-9]{3}$ ]] && echo "$line" || echo 000
}

# All local TCP ports in use, one per line, decimal.
used_ports() {
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk 'NR > 0 && $2 ~ /:/ {
      split($2, a, ":"); p = a[length(a)];
      n = 0; for (i = 1; i <= length(p); i++) n = n * 16 + index("0123456789ABCDEF", toupper(substr(p, i, 1))) - 1;
      print n }' | sort -un
}

# pick_port -> sets PORT to a free port in 32100..43000 (below the ephemeral range, apart from servers.sh's)
PICKED_PORTS=" "
pick_port() {
  local tries=0 p used
  used=$(used_ports)
  while ((tries++ < 500)); do
    p=$((32100 + (RANDOM * 32768 + RANDOM) % 10900))
    [[ $PICKED_PORTS == *" $p "* ]] && continue
    grep -qx "$p" <<<"$used" && continue
    tcp_open "$p" && continue
    PICKED_PORTS+="$p "
    PORT=$p
    return 0
  done
  die "no free port found"
}

# processes that carry OWNER_VAR=DIR in their environment
owned_pids() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qxF "$OWNER_VAR=$DIR"; then echo "$p"; fi
  done
}

STATE=""
load_state() {
  STATE=$DIR/cluster.state
  # shellcheck disable=SC1090
  [[ -f $STATE ]] && source "$STATE"
  return 0
}
state_set() {
  touch "$STATE"
  sed -i "/^$1=/d" "$STATE"
  printf '%s=%q\n' "$1" "$2" >>"$STATE"
}

# ---------------------------------------------------------------- fleet layout

# parse_fleet ARGS -> FLEET: one role list per instance ("api", "worker", "api,scheduler")
parse_fleet() {
  local api=2 worker=2 scheduler=1 list="" i
  while (($#)); do
    case $1 in
    --api) api=${2:?}; shift 2 ;;
    --worker) worker=${2:?}; shift 2 ;;
    --scheduler) scheduler=${2:?}; shift 2 ;;
    --instances) list=${2:?}; shift 2 ;;
    *) usage ;;
    esac
  done
  FLEET=()
  if [[ -n $list ]]; then
    local -a items
    IFS=', ' read -r -a items <<<"$list"
    for i in "${items[@]}"; do
      [[ -n $i ]] && FLEET+=("${i//+/,}")
    done
  else
    for ((i = 0; i < api; i++)); do FLEET+=(api); done
    for ((i = 0; i < worker; i++)); do FLEET+=(worker); done
    for ((i = 0; i < scheduler; i++)); do FLEET+=(scheduler); done
  fi
  ((${#FLEET[@]} > 0)) || die "an empty fleet: give at least one instance"
  local roles r
  for roles in "${FLEET[@]}"; do
    IFS=, read -r -a items <<<"$roles"
    for r in "${items[@]}"; do
      [[ $r == api || $r == worker || $r == scheduler ]] || die "unknown role '$r' (api, worker, scheduler)"
    done
  done
}

# ---------------------------------------------------------------- start

start_servers() {
  if [[ -n ${TALLY_CLUSTER_SERVERS:-} ]]; then
    local sdir
    sdir=$(cd "$TALLY_CLUSTER_SERVERS" && pwd) || die "TALLY_CLUSTER_SERVERS=$TALLY_CLUSTER_SERVERS does not exist"
    [[ -f $sdir/env.sh ]] || die "no $sdir/env.sh: start those servers first (scripts/servers.sh start)"
    bash "$SERVERS_SH" status "$sdir" >/dev/null || die "the servers of $sdir are not all up"
    state_set SERVERS_DIR "$sdir"
    state_set SERVERS_OWNED 0
    log "servers: reusing $sdir"
  else
    state_set SERVERS_DIR "$DIR/servers"
    state_set SERVERS_OWNED 1
    bash "$SERVERS_SH" start "$DIR/servers"
  fi
  load_state
  # shellcheck disable=SC1091
  source "$SERVERS_DIR/env.sh"
  POSTGRES=$TALLY_TEST_POSTGRES
  REDIS=$TALLY_TEST_REDIS
  QUEUE=allowance.schedule
  if ((SERVERS_OWNED == 0)); then
    # Shared servers: this fleet's own database, queue and Redis database, so that it and whoever
    # else uses them (other tests) never take each other's work or locks.
    local db="fleet_$(date +%s)_$RANDOM"
    "$TALLY_TEST_PG_BIN/psql" -h 127.0.0.1 -p "$TALLY_TEST_PG_PORT" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 \
      -c "CREATE DATABASE $db" >/dev/null || die "could not create database $db"
    POSTGRES=${POSTGRES/Database=tally;/Database=$db;}
    QUEUE=allowance.schedule.$db
    REDIS="$REDIS,defaultDatabase=$((1 + RANDOM % 15))"
    log "servers: this fleet's database is $db"
  fi
}

prepare_app() {
  if [[ -n ${TALLY_CLUSTER_APP:-} ]]; then
    APP=$(cd "$TALLY_CLUSTER_APP" && pwd)
  else
    APP=$DIR/app
    log "building Tally (Release) into $APP"
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
    MSBUILDDISABLENODEREUSE=1 DOTNET_CLI_USE_MSBUILD_SERVER=0 \
      dotnet publish "$REPO/src/Tally" -c Release -o "$APP" --nologo -v quiet >"$DIR/build.log" 2>&1 9>&- ||
      { tail -n 30 "$DIR/build.log" >&2; die "dotnet publish failed (see $DIR/build.log)"; }
  fi
  [[ -f $APP/Tally.dll ]] || die "no Tally.dll in $APP"
}

# launch ID ROLES PORT: starts one instance in the background, in its own session
launch() {
  local id=$1 roles=$2 port=$3
  local -a settings=(
    "$OWNER_VAR=$DIR"
    "ASPNETCORE_ENVIRONMENT=$ENVIRONMENT"
    "ASPNETCORE_URLS=http://127.0.0.1:$port"
    "ConnectionStrings__Postgres=$POSTGRES"
    "RabbitMq__Url=$TALLY_TEST_RABBITMQ"
    "Redis__Url=$REDIS"
    "Allowances__QueueName=$QUEUE"
    "Tally__Roles=$roles"
    "Tally__InstanceId=$id"
    "Auth__SigningKey=$SIGNING_KEY"
    "T24__BaseUrl=$CORE_URL"
    "T24__ApiKey=sandbox-t24-key"
  )
  [[ $ENVIRONMENT == Development ]] || settings+=("Sandbox__Enabled=true")
  (cd "$APP" && exec env "${settings[@]}" setsid dotnet "$APP/Tally.dll" </dev/null >"$DIR/instances/$id.log" 2>&1 9>&-) &
  echo $! >"$DIR/instances/$id.pid"
}

start_fleet() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  command -v dotnet >/dev/null || die "dotnet (the .NET 10 SDK) is not on PATH"
  mkdir -p "$DIR/instances"
  DIR=$(cd "$DIR" && pwd)
  # PostgreSQL (run as user postgres) must pass through DIR to DIR/servers
  chmod 711 "$DIR"
  exec 9>>"$DIR/cluster.lock"
  flock -w 300 9 || die "$DIR is locked by another cluster.sh for 300 s"
  load_state
  local alive=0 f
  for f in "$DIR"/instances/*.pid; do
    [[ -f $f ]] && pid_alive "$(read_pidfile "$f")" && alive=$((alive + 1))
  done
  if ((alive > 0)); then
    log "already running ($alive instance(s)); stop it first to start another fleet"
    print_table
    return 0
  fi
  parse_fleet "$@"
  ENVIRONMENT=${TALLY_CLUSTER_ENVIRONMENT:-Development}
  rm -f "$DIR"/instances/*.pid "$DIR/cluster.env" "$DIR/instances.tsv"
  trap 'rc=$?; if ((rc != 0)); then log "start failed; stopping what was started"; stop_fleet; fi' EXIT
  start_servers
  prepare_app

  SIGNING_KEY=$(head -c 64 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 48)
  # ids: role-N, counted per role list
  local -A counts=()
  local -a ids=() ports=()
  local roles id
  for roles in "${FLEET[@]}"; do
    counts[$roles]=$((${counts[$roles]:-0} + 1))
    id="${roles//,/-}-${counts[$roles]}"
    ids+=("$id")
    pick_port
    ports+=("$PORT")
  done
  # The first instance's sandbox is the fleet's core (every instance serves /sandbox/t24 in Development).
  CORE_URL="http://127.0.0.1:${ports[0]}/sandbox/t24/"
  local i
  : >"$DIR/instances.tsv"
  for i in "${!ids[@]}"; do
    launch "${ids[$i]}" "${FLEET[$i]}" "${ports[$i]}"
    printf '%s\t%s\t%s\t%s\t%s\n' "${ids[$i]}" "${FLEET[$i]}" "http://127.0.0.1:${ports[$i]}" \
      "$(read_pidfile "$DIR/instances/${ids[$i]}.pid")" "$DIR/instances/${ids[$i]}.log" >>"$DIR/instances.tsv"
  done
  log "started ${#ids[@]} instance(s) at once; waiting for /readyz"

  local deadline pending pid
  deadline=$(deadline_in "${TALLY_CLUSTER_TIMEOUT:-180}")
  pending=("${!ids[@]}")
  while ((${#pending[@]})); do
    local still=()
    for i in "${pending[@]}"; do
      pid=$(read_pidfile "$DIR/instances/${ids[$i]}.pid")
      if ! pid_alive "$pid"; then
        tail -n 30 "$DIR/instances/${ids[$i]}.log" >&2 || true
        die "${ids[$i]} exited before it was ready (log: $DIR/instances/${ids[$i]}.log)"
      fi
      if [[ $(http_status "${ports[$i]}" /readyz) == 200 ]]; then
        log "${ids[$i]}: ready on port ${ports[$i]}"
      else
        still+=("$i")
      fi
    done
    pending=("${still[@]}")
    ((${#pending[@]})) || break
    if deadline_passed "$deadline"; then
      for i in "${pending[@]}"; do tail -n 20 "$DIR/instances/${ids[$i]}.log" >&2 || true; done
      die "not ready after ${TALLY_CLUSTER_TIMEOUT:-180} s: $(for i in "${pending[@]}"; do printf '%s ' "${ids[$i]}"; done)"
    fi
    sleep 0.5
  done

  local token guardian main_url=""
  token=$(cd "$APP" && ASPNETCORE_ENVIRONMENT=$ENVIRONMENT Auth__SigningKey=$SIGNING_KEY dotnet "$APP/Tally.dll" token --role admin) ||
    die "could not make an admin token"
  # The demo guardian of the Development demo data, for the README's walk-through.
  guardian=$(cd "$APP" && ASPNETCORE_ENVIRONMENT=$ENVIRONMENT Auth__SigningKey=$SIGNING_KEY dotnet "$APP/Tally.dll" token \
    --sub 11111111-1111-1111-1111-111111111111 --role guardian --role user) || die "could not make the demo guardian's token"
  for i in "${!ids[@]}"; do
    [[ ,${FLEET[$i]}, == *,api,* ]] && { main_url="http://127.0.0.1:${ports[$i]}"; break; }
  done
  [[ -n $main_url ]] || main_url="http://127.0.0.1:${ports[0]}"
  {
    echo "# Written by scripts/cluster.sh start; source it."
    printf 'export TALLY_CLUSTER_URL=%q\n' "$main_url"
    printf 'export TALLY_CLUSTER_TOKEN=%q\n' "$token"
    printf 'export TALLY_CLUSTER_GUARDIAN_TOKEN=%q\n' "$guardian"
    printf 'export TALLY_CLUSTER_SIGNING_KEY=%q\n' "$SIGNING_KEY"
    printf 'export TALLY_CLUSTER_INSTANCES=%q\n' "${ids[*]}"
    printf 'export TALLY_CLUSTER_POSTGRES=%q\n' "$POSTGRES"
    for i in "${!ids[@]}"; do
      local var=${ids[$i]^^}
      printf 'export TALLY_CLUSTER_URL_%s=%q\n' "${var//-/_}" "http://127.0.0.1:${ports[$i]}"
    done
  } >"$DIR/cluster.env.tmp"
  chmod 600 "$DIR/cluster.env.tmp"
  mv "$DIR/cluster.env.tmp" "$DIR/cluster.env"
  trap - EXIT
  log "fleet up ($ENVIRONMENT, core $CORE_URL)"
  print_table
  echo
  echo "admin token: $token"
  echo "source $DIR/cluster.env for the URLs and the token"
}

print_table() {
  [[ -f $DIR/instances.tsv ]] || return 0
  printf '%-14s %-20s %-24s %-8s %s\n' ROLE ID URL PID LOG
  local id roles url pid logf
  while IFS=$'\t' read -r id roles url pid logf; do
    printf '%-14s %-20s %-24s %-8s %s\n' "$roles" "$id" "$url" "$pid" "$logf"
  done <"$DIR/instances.tsv"
}

# ---------------------------------------------------------------- stop and status

stop_fleet() {
  load_state
  local -a pids=()
  local f p
  for f in "$DIR"/instances/*.pid; do
    [[ -f $f ]] || continue
    p=$(read_pidfile "$f")
    pid_alive "$p" && pids+=("$p")
  done
  for p in $(owned_pids); do [[ " ${pids[*]} " == *" $p "* ]] || pids+=("$p"); done
  if ((${#pids[@]})); then
    log "sending TERM to ${#pids[@]} instance(s): ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local deadline alive
    deadline=$(deadline_in 20)
    while :; do
      alive=()
      for p in "${pids[@]}"; do pid_alive "$p" && alive+=("$p"); done
      ((${#alive[@]})) || break
      if deadline_passed "$deadline"; then
        log "sending KILL to ${alive[*]}"
        kill -KILL "${alive[@]}" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.2
    done
  else
    log "no instance running"
  fi
  if [[ ${SERVERS_OWNED:-0} == 1 && -n ${SERVERS_DIR:-} ]]; then
    bash "$SERVERS_SH" stop "$SERVERS_DIR"
  elif [[ -n ${SERVERS_DIR:-} ]]; then
    log "servers of $SERVERS_DIR were reused: left running"
  fi
}

status_fleet() {
  load_state
  local rc=0 id roles url pid logf state port
  if [[ -f $DIR/instances.tsv ]]; then
    while IFS=$'\t' read -r id roles url pid logf; do
      port=${url##*:}
      pid=$(read_pidfile "$DIR/instances/$id.pid")
      if ! pid_alive "$pid"; then
        state=down
      elif [[ $(http_status "$port" /readyz) == 200 ]]; then
        state=up
      else
        state="down (pid $pid runs, /readyz does not answer 200)"
      fi
      [[ $state == up ]] || rc=1
      printf '%-20s %-14s %-24s %s\n' "$id" "$roles" "$url" "$state"
    done <"$DIR/instances.tsv"
  else
    echo "no fleet in $DIR"
    rc=1
  fi
  if [[ -n ${SERVERS_DIR:-} ]]; then
    bash "$SERVERS_SH" status "$SERVERS_DIR" || rc=1
  fi
  return $rc
}

case $CMD in
start) start_fleet "$@" ;;
stop | status)
  (($# == 0)) || usage
  if [[ ! -d $DIR ]]; then
    [[ $CMD == stop ]] && { log "nothing to stop: $DIR does not exist"; exit 0; }
    die "$DIR does not exist"
  fi
  DIR=$(cd "$DIR" && pwd)
  if [[ $CMD == stop ]]; then
    exec 9>>"$DIR/cluster.lock"
    flock -w 300 9 || die "$DIR is locked by another cluster.sh for 300 s"
    stop_fleet
    log "stopped"
  else
    status_fleet
  fi
  ;;
*) usage ;;
esac
