#!/usr/bin/env bash
# A local Apache Cassandra for the CQL store's tests, fetched from Maven Central.
#
#   scripts/cassandra.sh fetch          jars into $DORA_CASSANDRA_CACHE (cached)
#   scripts/cassandra.sh start [N]      N nodes (default 1) on 127.0.0.1..N:9042
#   scripts/cassandra.sh stop           every node started here
#   scripts/cassandra.sh status         which nodes answer on 9042
#   scripts/cassandra.sh start-node I / stop-node I   one node (cluster tests)
#
# No Docker: `mvn dependency:copy-dependencies` on scripts/cassandra/pom.xml copies
# org.apache.cassandra:cassandra-all and its runtime jars; CassandraDaemon runs on the
# Java 17 of the machine with a small heap. State lives under $DORA_CASSANDRA_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${DORA_CASSANDRA_VERSION:-5.0.4}"
CACHE="${DORA_CASSANDRA_CACHE:-$HOME/.cache/dora/cassandra/$VERSION}"
HOME_DIR="${DORA_CASSANDRA_HOME:-/tmp/dora-cassandra}"
HEAP="${DORA_CASSANDRA_HEAP:-512m}"
START_TIMEOUT="${DORA_CASSANDRA_START_TIMEOUT:-180}"

fetch() {
    if [ -f "$CACHE/lib/cassandra-all-$VERSION.jar" ] && [ -f "$CACHE/lib/.complete" ]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || {
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
        else
            echo "mvn is missing: apt-get install maven" >&2; exit 1
        fi
    }
    mkdir -p "$CACHE/lib"
    echo "fetching Cassandra $VERSION from Maven Central into $CACHE/lib"
    mvn -B -q -f scripts/cassandra/pom.xml -Dcassandra.version="$VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$CACHE/lib"
    touch "$CACHE/lib/.complete"
}

node_dir() { echo "$HOME_DIR/node$1"; }

write_config() {
    local i="$1" n="$2" dir seeds
    dir="$(node_dir "$i")"
    mkdir -p "$dir/data" "$dir/commitlog" "$dir/saved_caches" "$dir/hints" "$dir/cdc" "$dir/logs"
    seeds="127.0.0.1:7000"
    cat >"$dir/cassandra.yaml" <<YAML
cluster_name: dora-test
num_tokens: 16
allocate_tokens_for_local_replication_factor: $(( n < 3 ? n : 3 ))
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$seeds"
listen_address: 127.0.0.$i
rpc_address: 127.0.0.$i
storage_port: 7000
native_transport_port: 9042
start_native_transport: true
data_file_directories: [$dir/data]
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
auto_snapshot: false
auto_bootstrap: false
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
concurrent_reads: 4
concurrent_writes: 4
concurrent_counter_writes: 2
concurrent_compactors: 1
key_cache_size: 8MiB
prepared_statements_cache_size: 8MiB
disk_failure_policy: stop
commit_failure_policy: stop
hinted_handoff_enabled: true
max_hint_window: 3h
read_request_timeout: 10000ms
write_request_timeout: 5000ms
cas_contention_timeout: 5000ms
paxos_variant: v2
request_timeout: 20000ms
truncate_request_timeout: 60000ms
materialized_views_enabled: false
YAML
    cat >"$dir/logback.xml" <<XML
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$dir/logs/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
XML
}

JVM_OPTS=(
    -XX:+UseG1GC -XX:+PerfDisableSharedMem -Xss256k
    -XX:+UseTLAB -XX:+ResizeTLAB
    -Djdk.attach.allowAttachSelf=true -Djava.net.preferIPv4Stack=true
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000
    -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.native_epoll_enabled=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.math=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens java.base/java.net=ALL-UNNAMED
)

port_open() { (exec 3<>"/dev/tcp/$1/9042") 2>/dev/null; }

start_node() {
    local i="$1" n="${2:-1}" dir pid
    dir="$(node_dir "$i")"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "node $i already running (pid $(cat "$dir/pid"))"
        return 0
    fi
    [ -f "$dir/cassandra.yaml" ] || write_config "$i" "$n"
    local heap="$HEAP"
    # shellcheck disable=SC2086
    nohup java -Xms"$heap" -Xmx"$heap" -Xmn128m "${JVM_OPTS[@]}" \
        -Dcassandra.config="file://$dir/cassandra.yaml" -Dcassandra.jmx.local.port=$((7198 + i)) \
        -Dcassandra.storagedir="$dir/data" -Dcassandra.logdir="$dir/logs" \
        -Dlogback.configurationFile="$dir/logback.xml" \
        -cp "$CACHE/lib/*" org.apache.cassandra.service.CassandraDaemon \
        >"$dir/logs/stdout.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    local began=$SECONDS
    until port_open "127.0.0.$i"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "Cassandra node $i exited; last log lines:" >&2
            tail -n 30 "$dir/logs/stdout.log" "$dir/logs/system.log" >&2 || true
            return 1
        fi
        if [ $((SECONDS - began)) -ge "$START_TIMEOUT" ]; then
            echo "Cassandra node $i did not open 127.0.0.$i:9042 within ${START_TIMEOUT}s" >&2
            tail -n 30 "$dir/logs/system.log" >&2 || true
            return 1
        fi
        sleep 0.5
    done
    echo "Cassandra node $i up on 127.0.0.$i:9042 (pid $pid, $((SECONDS - began))s)"
}

stop_node() {
    local i="$1" dir pid
    dir="$(node_dir "$i")"
    [ -f "$dir/pid" ] || return 0
    pid="$(cat "$dir/pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pid"
}

case "${1:-}" in
    fetch) fetch ;;
    start)
        n="${2:-1}"
        fetch
        if [ "${DORA_CASSANDRA_KEEP:-}" != 1 ]; then
            for d in "$HOME_DIR"/node*; do [ -d "$d" ] && stop_node "${d##*node}"; done
            rm -rf "$HOME_DIR"
        fi
        for i in $(seq 1 "$n"); do start_node "$i" "$n"; done
        ;;
    start-node) fetch; start_node "$2" "${3:-3}" ;;
    stop-node) stop_node "$2" ;;
    stop) for d in "$HOME_DIR"/node*; do [ -d "$d" ] && stop_node "${d##*node}"; done; true ;;
    status)
        for d in "$HOME_DIR"/node*; do
            [ -d "$d" ] || continue
            i="${d##*node}"
            if port_open "127.0.0.$i"; then echo "node $i up"; else echo "node $i down"; fi
        done
        ;;
    *) echo "usage: $0 fetch|start [N]|stop|status|start-node I|stop-node I" >&2; exit 2 ;;
esac
