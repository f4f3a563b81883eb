#!/usr/bin/env bash
# Install, start, stop and inspect the real services flowkit's suites can run against:
#   kafka  Apache Kafka 4.2.0, single-node KRaft broker, assembled from Maven Central jars
#   mongo  FerretDB 1.24.2 (MongoDB wire protocol, SQLite backend), built from the Go module proxy
#
# usage: scripts/services.sh install|start|stop|status|env [kafka|mongo|all]
#
#   install  fetch/build what is missing into the cache; start nothing
#   start    install if needed, start on 127.0.0.1, wait until a real request succeeds, write
#            <run>/services.env; a service that is already running and ready is left alone
#   stop     stop exactly the processes this script started (SIGTERM, then SIGKILL after a grace)
#   status   show what runs (exit 1 if a requested service is not running and ready)
#   env      print <run>/services.env
#
# Environment (all optional):
#   FLOWKIT_CACHE              built artefacts        (default ${XDG_CACHE_HOME:-$HOME/.cache}/flowkit)
#   FLOWKIT_RUN_DIR            pids, logs, data, env  (default <repo>/.run)
#   FLOWKIT_KAFKA_PORT         broker port            (default: a free port chosen per start)
#   FLOWKIT_KAFKA_CONTROLLER_PORT                     (default: a free port chosen per start)
#   FLOWKIT_MONGO_PORT         FerretDB port          (default: a free port chosen per start)
#   FLOWKIT_READY_TIMEOUT      seconds to wait for readiness (default 90)
#   FLOWKIT_STOP_GRACE         seconds between SIGTERM and SIGKILL (default 20)
#   FLOWKIT_KAFKA_LOG_LEVEL    broker log level (default INFO)
#   FLOWKIT_FERRETDB_LOG_LEVEL FerretDB log level (default warn)
#   FLOWKIT_KAFKA_JAVA_OPTS    extra JVM options for the broker
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${FLOWKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowkit}
RUN=${FLOWKIT_RUN_DIR:-$REPO/.run}
READY_TIMEOUT=${FLOWKIT_READY_TIMEOUT:-90}
STOP_GRACE=${FLOWKIT_STOP_GRACE:-20}

KAFKA_VERSION=4.2.0
KAFKA_TOOL=$REPO/tools/kafka
KAFKA_LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
KAFKA_HEAP=(-Xms256m -Xmx512m)

FERRETDB_VERSION=1.24.2
FERRETDB_TOOL=$REPO/tools/ferretdb
FERRETDB_BIN=$CACHE/ferretdb-$FERRETDB_VERSION/ferretdb

NODE=$REPO/node_modules/.bin/node
HELPER=$REPO/scripts/services.ts

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: %s\n' "$*" >&2; }
die() {
  warn "error: $*"
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH ($2)"; }

fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }

node_helper() {
  [[ -x $NODE ]] || die "$NODE is missing: run 'npm ci' first (the readiness checks use the project's Node 24 and its clients)"
  "$NODE" "$HELPER" "$@"
}

# Serialise concurrent invocations on one lock file (fd 9 run dir, fd 8 cache); the services are
# launched with these fds closed so they never hold a lock.
lock() {
  local fd=$1 file=$2
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$file")"
  eval "exec $fd>\"\$file\""
  flock -w 900 "$fd" || die "could not lock $file within 900 s"
}

# ---------------------------------------------------------------------------------------------
# install

java_major() {
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1) || true
  v=${v#1.}
  printf '%s\n' "${v%%[.+-]*}"
}

install_kafka() {
  need java "Java 17 or newer runs the broker"
  local major
  major=$(java_major)
  [[ $major =~ ^[0-9]+$ && $major -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17 or newer; 'java' is version ${major:-unknown}"
  local stamp
  stamp=$(fingerprint "$KAFKA_TOOL/pom.xml")
  if [[ -f $KAFKA_LIBS/.flowkit-complete && $(cat "$KAFKA_LIBS/.flowkit-complete") == "$stamp" ]]; then
    say "kafka: using cached jars in $KAFKA_LIBS"
    return 0
  fi
  need mvn "Maven fetches the Kafka jars from Maven Central"
  say "kafka: fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS ..."
  local tmp=$KAFKA_LIBS.tmp.$$ started=$SECONDS
  rm -rf "$tmp"
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  if ! (cd "$KAFKA_TOOL" && mvn -B -q -Dstyle.color=never dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp"); then
    rm -rf "$tmp"
    die "kafka: mvn dependency:copy-dependencies failed (see above)"
  fi
  local jar
  for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" log4j-core-*.jar log4j-slf4j*-impl-*.jar slf4j-api-*.jar; do
    compgen -G "$tmp/$jar" >/dev/null || {
      rm -rf "$tmp"
      die "kafka: $jar is missing from the copied dependencies"
    }
  done
  printf '%s\n' "$stamp" >"$tmp/.flowkit-complete"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  say "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars ready in $((SECONDS - started)) s"
}

install_mongo() {
  local stamp
  stamp=$(fingerprint "$FERRETDB_TOOL/go.mod" "$FERRETDB_TOOL/go.sum" "$FERRETDB_TOOL/main.go")
  if [[ -x $FERRETDB_BIN && -f $FERRETDB_BIN.stamp && $(cat "$FERRETDB_BIN.stamp") == "$stamp" ]]; then
    say "mongo: using cached FerretDB binary $FERRETDB_BIN"
    return 0
  fi
  need go "Go 1.24 or newer builds FerretDB (an older go fetches go1.24 itself unless GOTOOLCHAIN=local)"
  say "mongo: building FerretDB $FERRETDB_VERSION (SQLite backend) into $FERRETDB_BIN; a cold build takes minutes ..."
  local tmp=$FERRETDB_BIN.tmp.$$ started=$SECONDS
  mkdir -p "$(dirname "$FERRETDB_BIN")"
  if ! (cd "$FERRETDB_TOOL" && go build -trimpath -tags ferretdb_no_postgresql -ldflags='-s -w' -o "$tmp" .); then
    rm -f "$tmp"
    die "mongo: go build failed (see above)"
  fi
  mv "$tmp" "$FERRETDB_BIN"
  printf '%s\n' "$stamp" >"$FERRETDB_BIN.stamp"
  say "mongo: FerretDB built in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------------------------
# processes

# A pid is ours if it is alive (not a zombie) and its command line names its run folder.
ours() {
  local pid=$1 marker=$2 args state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ $state != Z* ]] || return 1
  args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
  [[ $args == *"$marker"* ]]
}

service_dir() { printf '%s/%s\n' "$RUN" "$1"; }
service_marker() {
  case $1 in
  kafka) printf '%s\n' "-Dkafka.logs.dir=$(service_dir kafka) " ;;
  mongo) printf '%s\n' "-sqlite-dir $(service_dir mongo)/data " ;;
  esac
}

# Prints the recorded pid if that process is still ours.
running_pid() {
  local dir pid
  dir=$(service_dir "$1")
  [[ -f $dir/pid ]] || return 1
  pid=$(cat "$dir/pid")
  ours "$pid" "$(service_marker "$1")" || return 1
  printf '%s\n' "$pid"
}

endpoint() {
  local port
  port=$(cat "$(service_dir "$1")/port")
  case $1 in
  kafka) printf '127.0.0.1:%s\n' "$port" ;;
  mongo) printf 'mongodb://127.0.0.1:%s/?directConnection=true\n' "$port" ;;
  esac
}

# wait_ready <service> <seconds> <pid>: 0 ready, 1 timeout, 3 process died
wait_ready() {
  local rc=0
  node_helper "wait-$1" "$(endpoint "$1")" "$2" "$3" || rc=$?
  return "$rc"
}

show_logs() {
  local dir f
  dir=$(service_dir "$1")
  for f in "$dir"/*.log; do
    [[ -s $f ]] || continue
    warn "---- last lines of $f ----"
    tail -n 40 "$f" >&2
  done
  warn "----"
}

stop_one() {
  local name=$1 dir pid
  dir=$(service_dir "$name")
  [[ -f $dir/pid ]] || {
    say "$name: not running"
    return 0
  }
  pid=$(cat "$dir/pid")
  if ! ours "$pid" "$(service_marker "$name")"; then
    say "$name: not running (process $pid has exited; pid file removed)"
    rm -f "$dir/pid"
    return 0
  fi
  say "$name: stopping pid $pid ..."
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while ours "$pid" "$(service_marker "$name")" && ((waited < STOP_GRACE * 5)); do
    sleep 0.2
    waited=$((waited + 1))
  done
  if ours "$pid" "$(service_marker "$name")"; then
    warn "$name: pid $pid still alive after ${STOP_GRACE} s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    waited=0
    while ours "$pid" "$(service_marker "$name")" && ((waited < 50)); do
      sleep 0.2
      waited=$((waited + 1))
    done
    ours "$pid" "$(service_marker "$name")" && die "$name: pid $pid survived SIGKILL"
  fi
  rm -f "$dir/pid"
  say "$name: stopped"
}

# Launch a command detached from this script's session (so a terminal's Ctrl-C or hang-up does
# not reach it) with the lock fds closed; prints its pid.
# launch <workdir> <log> <command...>: the background subshell execs into the command, so $! is
# the service's own pid (a subshell of a non-interactive script is no process group leader, so
# setsid execs in place too).
launch() {
  local workdir=$1 log=$2
  shift 2
  if command -v setsid >/dev/null 2>&1; then
    (cd "$workdir" && exec setsid "$@" >"$log" 2>&1 </dev/null 8>&- 9>&-) &
  else
    (cd "$workdir" && exec nohup "$@" >"$log" 2>&1 </dev/null 8>&- 9>&-) &
  fi
  printf '%s\n' "$!"
}

port_free() { node_helper port-free "$1" >/dev/null 2>&1; }

# Sets KAFKA_JAVA to the JVM command line (without main class) for the broker in run folder $1.
kafka_java() {
  local dir=$1
  # shellcheck disable=SC2206 # FLOWKIT_KAFKA_JAVA_OPTS is a list of options on purpose
  local extra=(${FLOWKIT_KAFKA_JAVA_OPTS:-})
  KAFKA_JAVA=(java "${KAFKA_HEAP[@]}" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$KAFKA_TOOL/log4j2.xml" -Dkafka.logs.dir="$dir"
    -Dflowkit.kafka.log.level="${FLOWKIT_KAFKA_LOG_LEVEL:-INFO}" ${extra[@]+"${extra[@]}"}
    -cp "$KAFKA_LIBS/*")
}

write_kafka_properties() {
  local dir=$1 port=$2 ctl=$3
  cat >"$dir/server.properties" <<EOF
# Written by scripts/services.sh for one test run; recreated on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
# Test runtimes delete their topics when they stop; a deleted partition keeps its files open until
# it is removed (default 60 s later), and a test pass deletes thousands a minute.
file.delete.delay.ms=1000
EOF
}

# A broker keeps a file open per partition, and a test run creates thousands of partitions (a full
# pass about 4,000 before its runtimes deleted their topics): past the limit the broker fails its
# log directory and shuts down. Raise this script's limit (inherited by the broker) to 65,536 when
# allowed, else as far as the hard limit goes.
raise_nofile() {
  local want=65536 hard
  hard=$(ulimit -Hn)
  if [[ $hard != unlimited ]] && ((hard < want)); then
    ulimit -Hn "$want" 2>/dev/null || true
    hard=$(ulimit -Hn)
  fi
  if [[ $hard == unlimited ]] || ((hard >= want)); then ulimit -Sn "$want" 2>/dev/null || true; else ulimit -Sn "$hard" 2>/dev/null || true; fi
  local now
  now=$(ulimit -Sn)
  if [[ $now != unlimited ]] && ((now < 16384)); then warn "kafka: open files limit is $now (hard $hard): a full test run may exceed it"; fi
}

start_kafka() {
  local dir pid
  raise_nofile
  dir=$(service_dir kafka)
  if pid=$(running_pid kafka); then
    if wait_ready kafka 15 "$pid"; then
      say "kafka: already running (pid $pid)"
      return 0
    fi
    warn "kafka: pid $pid runs but does not answer; restarting it"
    stop_one kafka
  fi
  local attempt port ctl rc ports
  for attempt in 1 2 3; do
    ports=$(node_helper ports 2) || die "kafka: could not pick free ports"
    port=${ports% *}
    ctl=${ports#* }
    [[ -n ${FLOWKIT_KAFKA_PORT:-} ]] && port=$FLOWKIT_KAFKA_PORT
    [[ -n ${FLOWKIT_KAFKA_CONTROLLER_PORT:-} ]] && ctl=$FLOWKIT_KAFKA_CONTROLLER_PORT
    [[ $port != "$ctl" ]] || die "kafka: broker and controller ports are both $port"
    port_free "$port" || die "kafka: port $port on 127.0.0.1 is in use"
    port_free "$ctl" || die "kafka: controller port $ctl on 127.0.0.1 is in use"
    rm -rf "$dir"
    mkdir -p "$dir/data"
    write_kafka_properties "$dir" "$port" "$ctl"
    printf '%s\n' "$port" >"$dir/port"
    kafka_java "$dir"
    local uuid
    uuid=$("${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid 2>>"$dir/format.log") ||
      die "kafka: StorageTool random-uuid failed (see $dir/format.log)"
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format -t "$uuid" -c "$dir/server.properties" >>"$dir/format.log" 2>&1 || {
      show_logs kafka
      die "kafka: formatting storage failed"
    }
    say "kafka: starting broker on 127.0.0.1:$port (controller $ctl), logs in $dir"
    pid=$(launch "$dir" "$dir/stdout.log" "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties")
    printf '%s\n' "$pid" >"$dir/pid"
    rc=0
    wait_ready kafka "$READY_TIMEOUT" "$pid" || rc=$?
    ((rc == 0)) && return 0
    if ((rc == 3)) && [[ -z ${FLOWKIT_KAFKA_PORT:-} ]] && grep -qs 'Address already in use' "$dir"/*.log; then
      warn "kafka: a port was taken meanwhile; retrying with other ports"
      rm -f "$dir/pid"
      continue
    fi
    show_logs kafka
    stop_one kafka || true
    die "kafka: broker did not become ready"
  done
  die "kafka: could not start on a free port"
}

start_mongo() {
  local dir pid
  dir=$(service_dir mongo)
  if pid=$(running_pid mongo); then
    if wait_ready mongo 15 "$pid"; then
      say "mongo: already running (pid $pid)"
      return 0
    fi
    warn "mongo: pid $pid runs but does not answer; restarting it"
    stop_one mongo
  fi
  local attempt port rc
  for attempt in 1 2 3; do
    port=${FLOWKIT_MONGO_PORT:-$(node_helper ports 1)}
    port_free "$port" || die "mongo: port $port on 127.0.0.1 is in use"
    rm -rf "$dir"
    mkdir -p "$dir/data"
    printf '%s\n' "$port" >"$dir/port"
    say "mongo: starting FerretDB on 127.0.0.1:$port, logs in $dir"
    pid=$(launch "$dir" "$dir/ferretdb.log" "$FERRETDB_BIN" -listen-addr "127.0.0.1:$port" -sqlite-dir "$dir/data" \
      -log-level "${FLOWKIT_FERRETDB_LOG_LEVEL:-warn}")
    printf '%s\n' "$pid" >"$dir/pid"
    rc=0
    wait_ready mongo "$READY_TIMEOUT" "$pid" || rc=$?
    ((rc == 0)) && return 0
    if ((rc == 3)) && [[ -z ${FLOWKIT_MONGO_PORT:-} ]] && grep -qs 'address already in use' "$dir"/*.log; then
      warn "mongo: the port was taken meanwhile; retrying with another port"
      rm -f "$dir/pid"
      continue
    fi
    show_logs mongo
    stop_one mongo || true
    die "mongo: FerretDB did not become ready"
  done
  die "mongo: could not start on a free port"
}

# services.env lists the services that run now, in KEY=value lines (for `set -a; . file`,
# `node --env-file`, or process.loadEnvFile).
write_env() {
  local file=$RUN/services.env tmp
  tmp=$file.tmp.$$
  : >"$tmp"
  running_pid kafka >/dev/null && printf 'FLOWKIT_KAFKA_BROKERS=%s\n' "$(endpoint kafka)" >>"$tmp"
  running_pid mongo >/dev/null && printf 'FLOWKIT_MONGO_URL=%s\n' "$(endpoint mongo)" >>"$tmp"
  if [[ -s $tmp ]]; then
    mv "$tmp" "$file"
  else
    rm -f "$tmp" "$file"
  fi
}

status_one() {
  local name=$1 pid
  if pid=$(running_pid "$name"); then
    if wait_ready "$name" 5 "$pid" >/dev/null 2>&1; then
      say "$name: running and ready (pid $pid, $(endpoint "$name" | sed 's#^mongodb://##; s#/.*##'))"
      return 0
    fi
    say "$name: running but not answering (pid $pid); logs in $(service_dir "$name")"
    return 1
  fi
  say "$name: not running"
  return 1
}

# ---------------------------------------------------------------------------------------------

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-2}"
}

main() {
  local command=${1:-} which=${2:-all}
  local services=()
  case $which in
  all) services=(kafka mongo) ;;
  kafka | mongo) services=("$which") ;;
  *) usage ;;
  esac
  case $command in
  install)
    lock 8 "$CACHE/.install.lock"
    for s in "${services[@]}"; do "install_$s"; done
    ;;
  start)
    lock 9 "$RUN/.lock"
    lock 8 "$CACHE/.install.lock"
    local started=$SECONDS
    for s in "${services[@]}"; do "install_$s"; done
    exec 8>&-
    for s in "${services[@]}"; do "start_$s"; done
    write_env
    say "ready in $((SECONDS - started)) s; environment in $RUN/services.env:"
    sed 's/^/  /' "$RUN/services.env"
    ;;
  stop)
    lock 9 "$RUN/.lock"
    for s in "${services[@]}"; do stop_one "$s"; done
    if [[ -d $RUN ]]; then write_env; fi
    ;;
  status)
    local rc=0
    for s in "${services[@]}"; do status_one "$s" || rc=1; done
    return "$rc"
    ;;
  env)
    [[ -f $RUN/services.env ]] || die "no $RUN/services.env: nothing started"
    cat "$RUN/services.env"
    ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
  esac
}

main "$@"
