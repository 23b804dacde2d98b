#!/usr/bin/env bash
# Local services for tests and laptops, on loopback: Apache Kafka (KRaft, single
# node, jars from Maven Central on the machine's Java 17), Redis (Debian
# redis-server) and Prometheus (Debian prometheus).
#
#   deploy/local/services.sh up   [kafka|redis|prometheus ...]   start (idempotent), wait until ready
#   deploy/local/services.sh down [kafka|redis|prometheus ...]   stop what this script started (by pid)
#   deploy/local/services.sh status                              what runs, and where
#   deploy/local/services.sh env                                 export lines for the addresses
#   deploy/local/services.sh browser                             install Debian chromium + chromedriver (headless tests)
#   deploy/local/services.sh tools                               the browser, and Debian gdal-bin (gdalinfo reads the products in tests)
#
# Addresses (environment overrides):
#   LTGCAST_KAFKA       127.0.0.1:9092   (the KRaft controller listens on LTGCAST_KAFKA_CONTROLLER, port + 1)
#   LTGCAST_REDIS       127.0.0.1:6379
#   LTGCAST_PROMETHEUS  127.0.0.1:9090
#   LTGCAST_SERVICES_DIR  var/services   (jars, data, logs and pid files)
#
# A port already taken by a process this script did not start is an error that
# names the port and the variable to change: the script never adopts a stranger.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${LTGCAST_SERVICES_DIR:-$ROOT/var/services}
KAFKA=${LTGCAST_KAFKA:-127.0.0.1:9092}
REDIS=${LTGCAST_REDIS:-127.0.0.1:6379}
PROMETHEUS=${LTGCAST_PROMETHEUS:-127.0.0.1:9090}
KAFKA_HOST=${KAFKA%:*}
KAFKA_PORT=${KAFKA##*:}
KAFKA_CONTROLLER=${LTGCAST_KAFKA_CONTROLLER:-$KAFKA_HOST:$((KAFKA_PORT + 1))}
POM=$ROOT/deploy/local/kafka/pom.xml
READY_TIMEOUT=${LTGCAST_SERVICES_TIMEOUT:-90}

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

port_open() { # host:port
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# What each service's command line contains: a pid file whose process runs something
# else (a pid reused after a reboot) is stale, never ours to report or to kill.
declare -A SIGNATURE=([kafka]=kafka.Kafka [redis]=redis-server [prometheus]=prometheus)

pid_alive() { # name
  local pidfile=$DIR/$1/pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "${SIGNATURE[$1]}"
}

wait_until() { # description, command...
  local what=$1; shift
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
  say "$what ready"
}

claim_port() { # name host:port variable
  if port_open "$2"; then
    die "$2 is already in use by a process this script did not start; stop it or set $3 to a free address"
  fi
}

spawn() { # name logfile command...
  local name=$1 logfile=$2; shift 2
  # setsid + redirected streams: the service outlives this shell and holds no pipe
  # of the caller (so `make test | tee log` ends when the tests end).
  setsid nohup "$@" >"$logfile" 2>&1 </dev/null &
  echo $! >"$DIR/$name/pid"
}

need_debian() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing Debian package $2 (for $1)"
  local sudo="" log=$DIR/apt-$2.log
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -q "$2" >"$log" 2>&1 </dev/null; then
    $sudo apt-get update -q >>"$log" 2>&1 </dev/null || true
    $sudo apt-get install -y -q "$2" >>"$log" 2>&1 </dev/null || die "apt-get install $2 failed; see $log"
  fi
  command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 is still not on PATH"
}

started_or_die() { # name what log
  if ! wait_until "$2" "${1}_ready"; then
    stop_one "$1" >/dev/null
    die "$1 did not become ready in ${READY_TIMEOUT}s; see $3"
  fi
}

# --- Kafka ------------------------------------------------------------------------------

kafka_jars() {
  local lib=$DIR/kafka/lib stamp
  stamp=$DIR/kafka/lib.$(cksum <"$POM" | cut -d' ' -f1)
  [[ -f $stamp ]] && return 0
  need_debian java openjdk-17-jre-headless
  need_debian mvn maven
  say "resolving Apache Kafka jars from Maven Central ($POM)"
  rm -rf "$lib" "$DIR"/kafka/lib.*
  mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" \
    >"$DIR/kafka/mvn.log" 2>&1 || die "mvn dependency:copy-dependencies failed; see $DIR/kafka/mvn.log"
  touch "$stamp"
}

kafka_config() {
  cat >"$DIR/kafka/server.properties" <<EOF
# Written by deploy/local/services.sh: one KRaft node that is broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_CONTROLLER
listeners=PLAINTEXT://$KAFKA,CONTROLLER://$KAFKA_CONTROLLER
advertised.listeners=PLAINTEXT://$KAFKA
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/kafka/data
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
}

kafka_ready() {
  pid_alive kafka && port_open "$KAFKA" && grep -q "Kafka Server started" "$DIR/kafka/kafka.log"
}

kafka_up() {
  mkdir -p "$DIR/kafka"
  if pid_alive kafka; then say "kafka already running on $KAFKA (pid $(cat "$DIR/kafka/pid"))"; return 0; fi
  claim_port kafka "$KAFKA" LTGCAST_KAFKA
  claim_port kafka "$KAFKA_CONTROLLER" LTGCAST_KAFKA_CONTROLLER
  kafka_jars
  kafka_config
  local cp="$DIR/kafka/lib/*"
  if [[ ! -f $DIR/kafka/data/meta.properties ]]; then
    local cluster
    cluster=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java -cp "$cp" kafka.tools.StorageTool format -t "$cluster" -c "$DIR/kafka/server.properties" \
      >"$DIR/kafka/format.log" 2>&1 || die "kafka-storage format failed; see $DIR/kafka/format.log"
  fi
  spawn kafka "$DIR/kafka/kafka.log" java -Xms256m -Xmx768m -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$DIR/kafka/server.properties"
  started_or_die kafka "kafka on $KAFKA" "$DIR/kafka/kafka.log"
}

# --- Redis ------------------------------------------------------------------------------

redis_ready() {
  pid_alive redis && [[ $(redis-cli -h "${REDIS%:*}" -p "${REDIS##*:}" ping 2>/dev/null) == PONG ]]
}

redis_up() {
  mkdir -p "$DIR/redis"
  if pid_alive redis; then say "redis already running on $REDIS (pid $(cat "$DIR/redis/pid"))"; return 0; fi
  need_debian redis-server redis-server # before the port check: a package may start a system service
  claim_port redis "$REDIS" LTGCAST_REDIS
  spawn redis "$DIR/redis/redis.log" redis-server --bind "${REDIS%:*}" --port "${REDIS##*:}" \
    --dir "$DIR/redis" --save "" --appendonly no --daemonize no --protected-mode yes
  started_or_die redis "redis on $REDIS" "$DIR/redis/redis.log"
}

# --- Prometheus -------------------------------------------------------------------------

http_ok() { # host:port path — a plain HTTP/1.0 GET over bash's /dev/tcp (no curl needed)
  local status
  exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&3
  read -r -t 5 _ status _ <&3 || status=""
  exec 3<&- 3>&-
  [[ $status == 200 ]]
}

prometheus_ready() {
  pid_alive prometheus && http_ok "$PROMETHEUS" /-/ready 2>/dev/null
}

prometheus_up() {
  mkdir -p "$DIR/prometheus/data"
  if pid_alive prometheus; then say "prometheus already running on $PROMETHEUS (pid $(cat "$DIR/prometheus/pid"))"; return 0; fi
  need_debian prometheus prometheus
  claim_port prometheus "$PROMETHEUS" LTGCAST_PROMETHEUS
  local config=$DIR/prometheus/prometheus.yml
  if [[ -f $ROOT/deploy/prometheus/prometheus.yml ]]; then
    # The config names its own address as the default one and its rule files relative to itself: rewrite
    # the address, and put a fresh copy of rules/ beside it.
    sed "s/127\.0\.0\.1:9090/$PROMETHEUS/g" "$ROOT/deploy/prometheus/prometheus.yml" >"$config"
    rm -rf "$DIR/prometheus/rules"
    if [[ -d $ROOT/deploy/prometheus/rules ]]; then cp -R "$ROOT/deploy/prometheus/rules" "$DIR/prometheus/rules"; fi
  else
    printf 'global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ["%s"]\n' \
      "$PROMETHEUS" >"$config"
  fi
  spawn prometheus "$DIR/prometheus/prometheus.log" prometheus --config.file="$config" \
    --storage.tsdb.path="$DIR/prometheus/data" --web.listen-address="$PROMETHEUS" --web.enable-lifecycle
  started_or_die prometheus "prometheus on $PROMETHEUS" "$DIR/prometheus/prometheus.log"
}

# --- common -----------------------------------------------------------------------------

stop_one() { # name
  local pidfile=$DIR/$1/pid
  if ! pid_alive "$1"; then rm -f "$pidfile"; say "$1 not running"; return 0; fi
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  rm -f "$pidfile"
  say "$1 stopped"
}

address_of() {
  case $1 in kafka) echo "$KAFKA" ;; redis) echo "$REDIS" ;; prometheus) echo "$PROMETHEUS" ;; esac
}

main() {
  local cmd=${1:-status}
  shift || true
  local names=("$@")
  ((${#names[@]})) || names=(kafka redis prometheus)
  for name in "${names[@]}"; do
    case $name in kafka | redis | prometheus) ;; *) die "unknown service '$name'; valid: kafka redis prometheus" ;; esac
  done
  mkdir -p "$DIR"
  case $cmd in
    up)
      for name in "${names[@]}"; do "${name}_up"; done
      for name in "${names[@]}"; do say "$name at $(address_of "$name")"; done
      ;;
    down)
      for name in "${names[@]}"; do stop_one "$name"; done
      ;;
    status)
      for name in "${names[@]}"; do
        if pid_alive "$name"; then say "$name running at $(address_of "$name") (pid $(cat "$DIR/$name/pid"))"
        else say "$name stopped"; fi
      done
      ;;
    browser)
      need_debian chromium chromium
      need_debian chromedriver chromium-driver
      say "browser: $(command -v chromium) and $(command -v chromedriver)"
      ;;
    tools)
      need_debian chromium chromium
      need_debian chromedriver chromium-driver
      need_debian gdalinfo gdal-bin
      say "tools: $(command -v chromium), $(command -v chromedriver) and $(command -v gdalinfo)"
      ;;
    env)
      printf 'export LTGCAST_KAFKA=%s\nexport LTGCAST_REDIS=%s\nexport LTGCAST_PROMETHEUS=%s\n' "$KAFKA" "$REDIS" "$PROMETHEUS"
      ;;
    *) die "unknown command '$cmd'; valid: up down status env browser tools" ;;
  esac
}

main "$@"
