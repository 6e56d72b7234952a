#!/usr/bin/env bash
# Private PostgreSQL, Redis and RabbitMQ servers for Tally's tests.
#
# Usage:
#   scripts/servers.sh start DIR              install what is missing, start all three, write DIR/env.sh
#   scripts/servers.sh stop DIR               stop all three (idempotent, bounded in time, deletes nothing)
#   scripts/servers.sh status DIR             print which servers are up (exit 1 if any is down)
#   scripts/servers.sh restart-postgres DIR   pg_ctl restart -m fast (same port, same data)
#   scripts/servers.sh restart-redis DIR      shutdown nosave + start again (data is lost: no persistence)
#   scripts/servers.sh restart-rabbitmq DIR   full node restart: rabbitmqctl stop, then start the node again
#   scripts/servers.sh stop-postgres|start-postgres|stop-redis|start-redis|stop-rabbitmq|start-rabbitmq DIR
#                                             take one server down / bring it back (for outage tests)
#
# Everything lives in DIR (data, sockets, logs, pid files); all servers listen on 127.0.0.1 only, on
# free high ports picked at start time. Must run as root (PostgreSQL runs as the `postgres` OS user).
#
# After `start`, `source DIR/env.sh` exports:
#   TALLY_TEST_POSTGRES        Npgsql connection string to database `tally`
#                              (Host=127.0.0.1;Port=P;Username=postgres;Database=tally;Pooling=true;Maximum Pool Size=100)
#   TALLY_TEST_REDIS           127.0.0.1:P
#   TALLY_TEST_RABBITMQ        amqp://guest:guest@127.0.0.1:P/
#   TALLY_TEST_SERVERS_DIR     DIR
#   TALLY_TEST_SERVERS_SCRIPT  absolute path of this script
#   TALLY_TEST_PG_BIN          PostgreSQL bin folder (pg_ctl, psql, ...)
#   TALLY_TEST_PG_DATA         PostgreSQL data folder
#   TALLY_TEST_RABBITMQ_ENV    DIR/rabbitmq-env.sh (RABBITMQ_* / ERL_* / HOME / PATH of the private node)
#   TALLY_TEST_PG_PORT, TALLY_TEST_REDIS_PORT, TALLY_TEST_RABBITMQ_PORT   the bare port numbers
#
# How a test restarts or takes down a server (all are blocking and bounded in time):
#   "$TALLY_TEST_SERVERS_SCRIPT" restart-postgres "$TALLY_TEST_SERVERS_DIR"
#   "$TALLY_TEST_SERVERS_SCRIPT" restart-rabbitmq "$TALLY_TEST_SERVERS_DIR"
#   "$TALLY_TEST_SERVERS_SCRIPT" stop-rabbitmq "$TALLY_TEST_SERVERS_DIR"; ...; "$TALLY_TEST_SERVERS_SCRIPT" start-rabbitmq "$TALLY_TEST_SERVERS_DIR"
# or by hand:
#   PostgreSQL: su postgres -s /bin/sh -c "$TALLY_TEST_PG_BIN/pg_ctl -D $TALLY_TEST_PG_DATA -l $TALLY_TEST_PG_DATA/../postgresql.log -m fast -w restart"
#               (without -l the restarted server keeps the caller's stdout/stderr open: a test that
#               reads the output of that command to its end would then wait forever)
#   RabbitMQ:   bash -c 'source "$TALLY_TEST_RABBITMQ_ENV"; rabbitmqctl stop_app; rabbitmqctl start_app'
#               (rabbitmq-env.sh puts the real rabbitmqctl first on PATH: Debian's wrapper in /usr/sbin
#               would switch to the rabbitmq user and lose HOME, hence the Erlang cookie)
#   Redis:      redis-cli -h 127.0.0.1 -p "$TALLY_TEST_REDIS_PORT" shutdown nosave, then start-redis
set -euo pipefail

SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
T0=$(date +%s%N)
# Processes started here carry this variable; `stop` uses it to find anything left over.
OWNER_VAR=TALLY_SERVERS_OWNER

log() {
  local now
  now=$(date +%s%N)
  printf '[servers %6.1fs] %s\n' "$(awk -v a="$T0" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,13p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$2
[[ -n $DIR ]] || usage

# ---------------------------------------------------------------- helpers

# Seconds since epoch with fractions, for deadlines.
now_s() { date +%s.%N; }
# deadline_passed DEADLINE -> true when now > DEADLINE
deadline_passed() { awk -v d="$1" -v n="$(now_s)" 'BEGIN { exit !(n > d) }'; }
deadline_in() { awk -v s="$1" -v n="$(now_s)" 'BEGIN { printf "%.3f", n + s }'; }

# All local TCP ports currently in use (any state), one per line, decimal.
used_ports() {
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk 'NR > 0 && $2 ~ /:/ {
      split($2, a, ":"); p = a[length(a)];
      n = 0; for (i = 1; i <= length(p); i++) n = n * 16 + index("0123456789ABCDEF", toupper(substr(p, i, 1))) - 1;
      print n }' | sort -un
}

PICKED_PORTS=" "
port_free() {
  local p=$1
  [[ $PICKED_PORTS != *" $p "* ]] || return 1
  grep -qx "$p" <<<"$USED_PORTS" && return 1
  # Nothing may answer on it either.
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 1; fi
  return 0
}

# pick_port [COUNT] -> sets PORT to the first of COUNT consecutive free ports in 20000..32000
# (below Linux's ephemeral range). Not run in $(...): PICKED_PORTS must persist.
pick_port() {
  local count=${1:-1} tries=0 base i ok
  USED_PORTS=$(used_ports)
  while ((tries++ < 500)); do
    base=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    ok=1
    for ((i = 0; i < count; i++)); do
      port_free $((base + i)) || { ok=0; break; }
    done
    if ((ok)); then
      for ((i = 0; i < count; i++)); do PICKED_PORTS+="$((base + i)) "; done
      PORT=$base
      return 0
    fi
  done
  die "no free port found"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_tcp PORT SECONDS [PID] -> waits until something accepts on PORT (fails early if PID dies)
wait_tcp() {
  local port=$1 deadline pid=${3:-}
  deadline=$(deadline_in "$2")
  until tcp_open "$port"; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    deadline_passed "$deadline" && return 1
    sleep 0.2
  done
}

# true while PID runs; a zombie (exited, not yet reaped: PID 1 here may reap late) counts as gone
pid_alive() {
  local st
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  [[ ${st%% *} != Z ]]
}

# wait_pid_gone PID SECONDS
wait_pid_gone() {
  local deadline
  deadline=$(deadline_in "$2")
  while pid_alive "$1"; do
    deadline_passed "$deadline" && return 1
    sleep 0.2
  done
}

# kill_pid PID NAME: TERM, wait 10 s, then KILL
kill_pid() {
  local pid=$1 name=$2
  pid_alive "$pid" || return 0
  log "$name: sending TERM to pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_pid_gone "$pid" 10; then
    log "$name: sending KILL to pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_gone "$pid" 5 || true
  fi
}

read_pidfile() {
  if [[ -f $1 ]]; then head -n1 "$1" | tr -dc '0-9' || true; fi
}

as_postgres() {
  # cd somewhere postgres can read, so it does not complain about root's cwd
  (cd "$DIR" && runuser -u postgres -- env "$OWNER_VAR=$DIR" "$@")
}

state_file() { echo "$DIR/servers.state"; }
state_set() {
  local f
  f=$(state_file)
  touch "$f"
  sed -i "/^$1=/d" "$f"
  printf '%s=%q\n' "$1" "$2" >>"$f"
}
load_state() {
  local f
  f=$(state_file)
  # shellcheck disable=SC1090
  [[ -f $f ]] && source "$f"
  return 0
}

tail_log() {
  local f=$1
  if [[ -f $f ]]; then
    log "---- last lines of $f"
    tail -n 30 "$f" >&2 || true
  fi
}

# ---------------------------------------------------------------- packages

find_pg_bin() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && best=$d
  done
  # the glob sorts lexically; prefer the highest major numerically
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb && -x $d/pg_ctl ]] || continue
    local v=${d#/usr/lib/postgresql/}
    v=${v%/bin}
    local bv=${best#/usr/lib/postgresql/}
    bv=${bv%/bin}
    if [[ $v =~ ^[0-9]+$ && $bv =~ ^[0-9]+$ ]] && ((v > bv)); then best=$d; fi
  done
  echo "$best"
}

RABBIT_BIN=/usr/lib/rabbitmq/bin

install_packages() {
  local missing=()
  [[ -n $(find_pg_bin) ]] || missing+=(postgresql)
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
  [[ -x $RABBIT_BIN/rabbitmq-server && -x $RABBIT_BIN/rabbitmqctl ]] || missing+=(rabbitmq-server)
  # the console's browser tests drive Debian's Chromium (never a browser downloaded by a test tool)
  command -v chromium >/dev/null || missing+=(chromium)
  # the deploy checks run `systemd-analyze verify` on deploy/systemd/tally@.service (no systemd need run)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  if ((${#missing[@]} == 0)); then
    log "packages: all present"
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "must run as root to install ${missing[*]}"
  log "packages: installing ${missing[*]} (apt-get update first)"
  export DEBIAN_FRONTEND=noninteractive
  local apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get "${apt_opts[@]}" update -qq </dev/null >"$DIR/apt.log" 2>&1 || { tail_log "$DIR/apt.log"; die "apt-get update failed"; }
  apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" </dev/null >>"$DIR/apt.log" 2>&1 || { tail_log "$DIR/apt.log"; die "apt-get install failed"; }
  log "packages: installed ${missing[*]}"
  [[ -n $(find_pg_bin) ]] || die "no PostgreSQL under /usr/lib/postgresql/*/bin after install"
  [[ -x $RABBIT_BIN/rabbitmq-server ]] || die "no $RABBIT_BIN/rabbitmq-server after install"
}

# ---------------------------------------------------------------- PostgreSQL

PG_BIN=""
pg_paths() {
  load_state
  PG_BIN=${PG_BIN_STATE:-$(find_pg_bin)}
  PG_DIR=$DIR/pg
  PG_DATA=$PG_DIR/data
  PG_LOG=$PG_DIR/postgresql.log
}

pg_init() {
  pg_paths
  [[ -n $PG_BIN ]] || die "PostgreSQL binaries not found"
  state_set PG_BIN_STATE "$PG_BIN"
  mkdir -p "$PG_DIR/sock"
  chown -R postgres:postgres "$PG_DIR"
  chmod 700 "$PG_DIR"
  runuser -u postgres -- test -x "$DIR" || die "user postgres cannot enter $DIR (a parent folder is not world-searchable)"
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "postgres: initdb ($PG_BIN)"
    as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
      { tail_log "$PG_DIR/initdb.log"; die "initdb failed"; }
  fi
  pick_port
  PG_PORT=$PORT
  state_set PG_PORT "$PG_PORT"
  local sockdir=$PG_DIR/sock
  # unix socket paths are limited to 107 bytes
  if ((${#sockdir} + 20 > 107)); then
    log "postgres: $sockdir is too long for a unix socket; TCP only"
    sockdir=""
  fi
  cat >"$PG_DATA/postgresql.auto.conf" <<EOF
# written by scripts/servers.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sockdir'
max_connections = 300
EOF
  chown postgres:postgres "$PG_DATA/postgresql.auto.conf"
}

pg_start() {
  pg_paths
  load_state
  [[ -n ${PG_PORT:-} ]] || die "postgres: no port in $(state_file); run start first"
  log "postgres: starting on 127.0.0.1:$PG_PORT"
  if ! (cd "$DIR" && timeout 90 runuser -u postgres -- env "$OWNER_VAR=$DIR" \
    "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >"$PG_DIR/pg_ctl.log" 2>&1 9>&-); then
    tail_log "$PG_DIR/pg_ctl.log"
    tail_log "$PG_LOG"
    die "postgres did not start"
  fi
  log "postgres: up"
}

pg_create_db() {
  pg_paths
  load_state
  local exists
  exists=$("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XtAq \
    -c "SELECT 1 FROM pg_database WHERE datname = 'tally'")
  if [[ $exists != 1 ]]; then
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 \
      -c "CREATE DATABASE tally" >/dev/null
    log "postgres: database tally created"
  fi
}

pg_stop() {
  pg_paths
  [[ -f $PG_DATA/postmaster.pid ]] || { log "postgres: not running"; return 0; }
  local pid
  pid=$(read_pidfile "$PG_DATA/postmaster.pid")
  if ! pid_alive "$pid"; then
    log "postgres: not running (stale pid file)"
    return 0
  fi
  log "postgres: stopping (pid $pid)"
  if ! (cd "$DIR" && timeout 40 runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1); then
    log "postgres: pg_ctl stop failed; immediate mode"
    (cd "$DIR" && timeout 15 runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 10 stop >/dev/null 2>&1) || true
  fi
  wait_pid_gone "$pid" 5 || kill_pid "$pid" postgres
  log "postgres: stopped"
}

pg_restart() {
  pg_paths
  load_state
  log "postgres: restarting"
  if ! (cd "$DIR" && timeout 90 runuser -u postgres -- env "$OWNER_VAR=$DIR" \
    "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -m fast -w -t 60 restart >"$PG_DIR/pg_ctl.log" 2>&1 9>&-); then
    tail_log "$PG_DIR/pg_ctl.log"
    tail_log "$PG_LOG"
    die "postgres did not restart"
  fi
  log "postgres: up"
}

# ---------------------------------------------------------------- Redis

redis_paths() {
  load_state
  REDIS_DIR=$DIR/redis
  REDIS_PID=$REDIS_DIR/redis.pid
}

redis_init() {
  redis_paths
  mkdir -p "$REDIS_DIR"
  pick_port
  REDIS_PORT=$PORT
  state_set REDIS_PORT "$REDIS_PORT"
}

redis_start() {
  redis_paths
  [[ -n ${REDIS_PORT:-} ]] || die "redis: no port in $(state_file); run start first"
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  rm -f "$REDIS_PID"
  env "$OWNER_VAR=$DIR" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize yes --pidfile "$REDIS_PID" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" </dev/null 9>&- ||
    { tail_log "$REDIS_DIR/redis.log"; die "redis-server failed"; }
  local deadline
  deadline=$(deadline_in 20)
  until [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; do
    deadline_passed "$deadline" && { tail_log "$REDIS_DIR/redis.log"; die "redis did not answer PING"; }
    sleep 0.1
  done
  log "redis: up"
}

redis_stop() {
  redis_paths
  local pid
  pid=$(read_pidfile "$REDIS_PID")
  if ! pid_alive "$pid"; then
    log "redis: not running"
    return 0
  fi
  log "redis: stopping (pid $pid)"
  timeout 10 redis-cli -h 127.0.0.1 -p "${REDIS_PORT:-0}" shutdown nosave >/dev/null 2>&1 || true
  wait_pid_gone "$pid" 10 || kill_pid "$pid" redis
  log "redis: stopped"
}

# ---------------------------------------------------------------- RabbitMQ

rabbit_paths() {
  load_state
  RMQ_DIR=$DIR/rabbitmq
  RMQ_ENV=$DIR/rabbitmq-env.sh
  RMQ_PID=$RMQ_DIR/rabbitmq.pid
}

rabbit_init() {
  rabbit_paths
  mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log" "$RMQ_DIR/home" "$RMQ_DIR/etc"
  chmod 700 "$RMQ_DIR/home"
  echo '[].' >"$RMQ_DIR/etc/enabled_plugins"
  : >"$RMQ_DIR/etc/rabbitmq-env.conf"
  : >"$RMQ_DIR/etc/rabbitmq.conf"
  pick_port
  RMQ_PORT=$PORT
  pick_port
  RMQ_DIST_PORT=$PORT
  pick_port
  RMQ_EPMD_PORT=$PORT
  pick_port 10
  RMQ_CTL_MIN=$PORT
  state_set RMQ_PORT "$RMQ_PORT"
  state_set RMQ_EPMD_PORT "$RMQ_EPMD_PORT"
  local node="tally$RMQ_PORT@localhost"
  cat >"$RMQ_ENV" <<EOF
# RabbitMQ private node of this test run; written by scripts/servers.sh.
# Usage: source this file, then run rabbitmqctl / rabbitmq-server / rabbitmq-diagnostics.
export PATH=$(printf '%q' "$RABBIT_BIN"):\$PATH
export HOME=$(printf '%q' "$RMQ_DIR/home")
export RABBITMQ_NODENAME=$node
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$RMQ_PORT
export RABBITMQ_DIST_PORT=$RMQ_DIST_PORT
export RABBITMQ_CTL_DIST_PORT_MIN=$RMQ_CTL_MIN
export RABBITMQ_CTL_DIST_PORT_MAX=$((RMQ_CTL_MIN + 9))
export ERL_EPMD_ADDRESS=127.0.0.1
# keep the Erlang distribution listeners on loopback too
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_PORT=$RMQ_EPMD_PORT
export RABBITMQ_MNESIA_BASE=$(printf '%q' "$RMQ_DIR/mnesia")
export RABBITMQ_LOG_BASE=$(printf '%q' "$RMQ_DIR/log")
export RABBITMQ_PID_FILE=$(printf '%q' "$RMQ_PID")
export RABBITMQ_ENABLED_PLUGINS_FILE=$(printf '%q' "$RMQ_DIR/etc/enabled_plugins")
export RABBITMQ_CONF_ENV_FILE=$(printf '%q' "$RMQ_DIR/etc/rabbitmq-env.conf")
export RABBITMQ_CONFIG_FILE=$(printf '%q' "$RMQ_DIR/etc/rabbitmq.conf")
export RABBITMQ_ADVANCED_CONFIG_FILE=$(printf '%q' "$RMQ_DIR/etc/advanced.config")
export $OWNER_VAR=$(printf '%q' "$DIR")
EOF
}

# runs a command with the node's environment
rabbit_env() {
  (
    # shellcheck disable=SC1090
    source "$RMQ_ENV"
    cd "$DIR"
    "$@"
  )
}

# amqp_answers PORT -> true when the broker on PORT answers an AMQP 0-9-1 protocol header with a
# method frame (Connection.Start), within 5 seconds
amqp_answers() {
  local port=$1 fd reply
  exec {fd}<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
  printf 'AMQP\x00\x00\x09\x01' >&"$fd"
  reply=$(timeout 5 head -c 1 <&"$fd" | od -An -tx1 | tr -d ' \n')
  exec {fd}>&-
  [[ $reply == 01 ]]
}

rabbit_start() {
  rabbit_paths
  [[ -f $RMQ_ENV ]] || die "rabbitmq: no $RMQ_ENV; run start first"
  log "rabbitmq: starting node on 127.0.0.1:$RMQ_PORT (epmd $RMQ_EPMD_PORT)"
  rm -f "$RMQ_PID"
  rabbit_env setsid "$RABBIT_BIN/rabbitmq-server" </dev/null >>"$RMQ_DIR/log/server-stdout.log" 2>&1 9>&- &
  local launcher=$!
  if ! wait_tcp "$RMQ_PORT" 90 "$launcher"; then
    tail_log "$RMQ_DIR/log/server-stdout.log"
    die "rabbitmq: AMQP port $RMQ_PORT did not open"
  fi
  log "rabbitmq: AMQP port open; rabbitmqctl await_startup"
  # The CLI itself has been seen to hang after a restart with the node up (its own distribution
  # connection, nothing in its log): ask again with a fresh CLI rather than fail the run.
  # When the CLI does not answer, the broker itself is asked: a node that answers an AMQP
  # protocol header with Connection.Start has finished booting (listeners start last).
  local try
  for try in 1 2 3; do
    if rabbit_env timeout 40 rabbitmqctl -q await_startup --timeout 35 >"$RMQ_DIR/log/await.log" 2>&1; then
      log "rabbitmq: up"
      return 0
    fi
    log "rabbitmq: await_startup attempt $try did not answer"
    if amqp_answers "$RMQ_PORT"; then
      log "rabbitmq: up (the node answers AMQP; its CLI did not)"
      return 0
    fi
  done
  tail_log "$RMQ_DIR/log/await.log"
  die "rabbitmq: await_startup failed"
}

rabbit_stop() {
  rabbit_paths
  [[ -f $RMQ_ENV ]] || { log "rabbitmq: not configured"; return 0; }
  local pid
  pid=$(read_pidfile "$RMQ_PID")
  if pid_alive "$pid"; then
    log "rabbitmq: stopping (pid $pid)"
    rabbit_env timeout 60 rabbitmqctl -q stop "$RMQ_PID" >"$RMQ_DIR/log/stop.log" 2>&1 ||
      log "rabbitmq: rabbitmqctl stop failed ($(tail -n1 "$RMQ_DIR/log/stop.log" 2>/dev/null))"
    kill_pid "$pid" rabbitmq
  else
    # the pid file may not be written yet when the node is still booting
    kill_owned beam.smp
    log "rabbitmq: not running"
  fi
  # also the launcher shell and any Erlang helpers of this node
  kill_owned rabbitmq-server
  kill_owned erl_child_setup
  kill_owned inet_gethost
  log "rabbitmq: stopped"
}

epmd_stop() {
  rabbit_paths
  [[ -n ${RMQ_EPMD_PORT:-} ]] || return 0
  local p
  for p in $(pids_by_comm epmd); do
    if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "ERL_EPMD_PORT=$RMQ_EPMD_PORT"; then
      kill_pid "$p" epmd
    fi
  done
}

# ---------------------------------------------------------------- leftovers

pids_by_comm() {
  local f p c
  for f in /proc/[0-9]*/comm; do
    { read -r c <"$f"; } 2>/dev/null || continue
    [[ $c == "$1" ]] || continue
    p=${f#/proc/}
    echo "${p%/comm}"
  done
}

# kill processes named NAME that were started for this DIR (they carry OWNER_VAR=DIR)
kill_owned() {
  local p
  for p in $(pids_by_comm "$1"); do
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "$OWNER_VAR=$DIR"; then
      kill_pid "$p" "$1"
    fi
  done
}

# ---------------------------------------------------------------- env.sh

write_env() {
  pg_paths
  load_state
  local f=$DIR/env.sh
  {
    echo "# Written by scripts/servers.sh start; source it."
    printf 'export TALLY_TEST_POSTGRES=%q\n' "Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=tally;Pooling=true;Maximum Pool Size=100"
    printf 'export TALLY_TEST_REDIS=%q\n' "127.0.0.1:$REDIS_PORT"
    printf 'export TALLY_TEST_RABBITMQ=%q\n' "amqp://guest:guest@127.0.0.1:$RMQ_PORT/"
    printf 'export TALLY_TEST_SERVERS_DIR=%q\n' "$DIR"
    printf 'export TALLY_TEST_SERVERS_SCRIPT=%q\n' "$SCRIPT_PATH"
    printf 'export TALLY_TEST_PG_BIN=%q\n' "$PG_BIN"
    printf 'export TALLY_TEST_PG_DATA=%q\n' "$PG_DATA"
    printf 'export TALLY_TEST_RABBITMQ_ENV=%q\n' "$DIR/rabbitmq-env.sh"
    printf 'export TALLY_TEST_PG_PORT=%q\n' "$PG_PORT"
    printf 'export TALLY_TEST_REDIS_PORT=%q\n' "$REDIS_PORT"
    printf 'export TALLY_TEST_RABBITMQ_PORT=%q\n' "$RMQ_PORT"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

# ---------------------------------------------------------------- commands

# One command at a time per DIR (tests in parallel may restart the same server). The lock is on
# fd 9, which every server is started without, so it ends with this script.
lock_dir() {
  exec 9>>"$DIR/servers.lock"
  flock -w 300 9 || die "$DIR is locked by another servers.sh for 300 s"
}

stop_all() {
  rabbit_stop || true
  epmd_stop || true
  redis_stop || true
  pg_stop || true
  # anything this DIR still owns
  local n
  for n in beam.smp epmd redis-server postgres erl_child_setup inet_gethost; do kill_owned "$n" || true; done
}

start_all() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  lock_dir
  # postgres must be able to reach DIR/pg
  chmod 755 "$DIR"
  if [[ -f $DIR/env.sh ]]; then
    # a folder whose servers were stopped can be started again (same data, new ports)
    load_state
    local p
    for p in "${PG_PORT:-}" "${REDIS_PORT:-}" "${RMQ_PORT:-}"; do
      [[ -z $p ]] || ! tcp_open "$p" || die "servers of $DIR are still running: stop them first"
    done
    rm -f "$DIR/env.sh"
  fi
  trap 'rc=$?; if ((rc != 0)); then log "start failed; stopping what was started"; stop_all; fi' EXIT
  install_packages
  pg_init
  pg_start
  pg_create_db
  redis_init
  redis_start
  rabbit_init
  rabbit_start
  write_env
  trap - EXIT
  log "all servers up; source $DIR/env.sh"
}

case $CMD in
start) start_all ;;
stop | status | restart-* | start-* | stop-*)
  if [[ ! -d $DIR ]]; then
    [[ $CMD == stop ]] && { log "nothing to stop: $DIR does not exist"; exit 0; }
    die "$DIR does not exist"
  fi
  DIR=$(cd "$DIR" && pwd)
  [[ $CMD == status ]] || lock_dir
  case $CMD in
  stop)
    stop_all
    log "all stopped"
    ;;
  status)
    load_state
    rc=0
    if [[ -n ${PG_PORT:-} ]] && tcp_open "$PG_PORT"; then echo "postgres: up ($PG_PORT)"; else echo "postgres: down"; rc=1; fi
    if [[ -n ${REDIS_PORT:-} ]] && tcp_open "$REDIS_PORT"; then echo "redis: up ($REDIS_PORT)"; else echo "redis: down"; rc=1; fi
    if [[ -n ${RMQ_PORT:-} ]] && tcp_open "$RMQ_PORT"; then echo "rabbitmq: up ($RMQ_PORT)"; else echo "rabbitmq: down"; rc=1; fi
    exit $rc
    ;;
  restart-postgres) pg_restart ;;
  stop-postgres) pg_stop ;;
  start-postgres) pg_start ;;
  restart-redis) redis_stop && redis_start ;;
  stop-redis) redis_stop ;;
  start-redis) redis_start ;;
  restart-rabbitmq) rabbit_stop && rabbit_start ;;
  stop-rabbitmq) rabbit_stop ;;
  start-rabbitmq) rabbit_start ;;
  *) usage ;;
  esac
  ;;
*) usage ;;
esac
