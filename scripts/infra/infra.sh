#!/usr/bin/env bash
# infra.sh: fetch, start and stop the real Apache Kafka and Apache Cassandra
# servers that `make integration` tests against, from Maven Central jars and
# plain `java` (no Docker). See docs/infrastructure.md.
#
#   infra.sh fetch                         jars into .infra/ (once), probe binary
#   infra.sh start [kafka|cassandra|all]   fresh data, start, wait until ready
#   infra.sh start cluster                 the fault test's cluster instead: 3 Kafka
#                                          KRaft nodes (kafka-1..3) and 2 Cassandra
#                                          nodes (cassandra-1..2), fresh data
#   infra.sh stop [NAME|all]               stop what start started (by pid); data kept
#   infra.sh kill NAME                     SIGKILL one service or node (a crash)
#   infra.sh resume [NAME|all]             start again on the data of the last run
#   infra.sh restart [NAME|all]            stop, then resume (data kept)
#   infra.sh controller                    the cluster's active KRaft controller's node id
#   infra.sh status                        what runs, with pid, ports and RSS
#   infra.sh env                           WATERSHED_*=... lines for the tests
#
# NAME is kafka or cassandra (single mode), or a cluster node: kafka-1,
# kafka-2, kafka-3, cassandra-1, cassandra-2; `all` is whatever the last start
# started.
#
# Everything it writes lives under .infra/ at the repository root (git-ignored):
#   .infra/m2/                  Maven's local repository (its cache)
#   .infra/kafka/lib/           Kafka broker jars
#   .infra/cassandra/lib/       Cassandra jars
#   .infra/bin/probe            readiness probe (testinfra/cmd/probe)
#   .infra/run/<service>/       config, data, log and pid of the current run
#
# Settings, all optional (defaults in brackets):
#   WATERSHED_KAFKA_PORT [9092]  WATERSHED_KAFKA_CONTROLLER_PORT [9093]
#   WATERSHED_KAFKA_SASL_PORT [9094]  (the SASL/SCRAM listener)
#   WATERSHED_CASSANDRA_PORT [9042]  WATERSHED_CASSANDRA_STORAGE_PORT [7000]
#   WATERSHED_KAFKA_HEAP [512m]  WATERSHED_CASSANDRA_HEAP [1g]
#   WATERSHED_KAFKA_START_TIMEOUT [120]  WATERSHED_CASSANDRA_START_TIMEOUT [180]
#   WATERSHED_STOP_TIMEOUT [30]  (seconds between TERM and KILL)
#   WATERSHED_KAFKA_JVM_OPTS, WATERSHED_CASSANDRA_JVM_OPTS  extra JVM options
#   WATERSHED_INFRA_DIR [.infra at the repository root]
# The cluster (start cluster), node N of 1-3 and 1-2:
#   WATERSHED_KAFKA_CLUSTER_PORT [19090]  kafka-N: client port +N, controller
#       +100+N, proxied listener +200+N advertised as the proxy's port +300+N
#   WATERSHED_KAFKA_CLUSTER_HEAP [256m]  WATERSHED_CASSANDRA_CLUSTER_HEAP [512m]
#   cassandra-N listens on 127.0.0.N (CQL WATERSHED_CASSANDRA_PORT, storage
#   WATERSHED_CASSANDRA_STORAGE_PORT); WATERSHED_CASSANDRA_PROXY_PORT [19042]
#   is the port of the fault test's proxy on each node's address.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
infra_dir=${WATERSHED_INFRA_DIR:-$repo_root/.infra}
run_dir=$infra_dir/run

kafka_port=${WATERSHED_KAFKA_PORT:-9092}
kafka_controller_port=${WATERSHED_KAFKA_CONTROLLER_PORT:-9093}
kafka_sasl_port=${WATERSHED_KAFKA_SASL_PORT:-9094}
cassandra_port=${WATERSHED_CASSANDRA_PORT:-9042}
cassandra_storage_port=${WATERSHED_CASSANDRA_STORAGE_PORT:-7000}
kafka_heap=${WATERSHED_KAFKA_HEAP:-512m}
kafka_cluster_port=${WATERSHED_KAFKA_CLUSTER_PORT:-19090}
kafka_cluster_heap=${WATERSHED_KAFKA_CLUSTER_HEAP:-256m}
cassandra_cluster_heap=${WATERSHED_CASSANDRA_CLUSTER_HEAP:-512m}
cassandra_proxy_port=${WATERSHED_CASSANDRA_PROXY_PORT:-19042}
cassandra_heap=${WATERSHED_CASSANDRA_HEAP:-1g}
kafka_start_timeout=${WATERSHED_KAFKA_START_TIMEOUT:-120}
cassandra_start_timeout=${WATERSHED_CASSANDRA_START_TIMEOUT:-180}
stop_timeout=${WATERSHED_STOP_TIMEOUT:-30}

# Pinned so a fresh machine resolves exactly what was tested here.
dependency_plugin=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

services=(kafka cassandra)
cluster_nodes=(kafka-1 kafka-2 kafka-3 cassandra-1 cassandra-2)

# Test credentials, printed by `infra.sh env` (docs/infrastructure.md). Kafka's
# SCRAM user exists on the SASL_PLAINTEXT listener only; the PLAINTEXT one
# needs no login. Cassandra's is the superuser of a fresh node.
kafka_scram_user=watershed
kafka_scram_password=watershed-test-scram-password
cassandra_user=cassandra
cassandra_password=cassandra

log() { printf 'infra: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	sed -n '2,/^# started\.$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# now prints the time in seconds with milliseconds.
now() { date +%s.%3N; }

# elapsed START prints the seconds since START, one decimal.
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

# size_mib SIZE prints a JVM memory size (512m, 1g, 1048576k) in MiB.
size_mib() {
	local v=${1,,}
	[[ $v =~ ^[0-9]+[kmg]?$ ]] || die "'$1' is not a JVM memory size like 512m or 1g"
	case $v in
	*g) echo $((${v%g} * 1024)) ;;
	*m) echo "${v%m}" ;;
	*k) echo $((${v%k} / 1024)) ;;
	*) echo $((v / 1048576)) ;;
	esac
}

# ---------------------------------------------------------------- tools

apt_updated=false

# apt_install PACKAGE... installs Debian packages, updating the package
# lists once first. Only called for a tool that is missing.
apt_install() {
	command -v apt-get >/dev/null || die "need $*, and there is no apt-get to install it"
	if [[ $apt_updated == false ]]; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		apt_updated=true
	fi
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# java_major JAVA prints the major version of the given java binary.
java_major() {
	"$1" -XshowSettings:properties -version 2>&1 |
		awk -F' = ' '/java.specification.version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]) }'
}

# java_bin is the java both servers run on, chosen by need_java.
java_bin=

# need_java picks Java 17, which both servers support (Cassandra 5.0 supports
# only 11 and 17): $JAVA_HOME/bin/java if set, else java on PATH if it is 17,
# else an installed OpenJDK 17, else it installs openjdk-17-jre-headless.
need_java() {
	[[ -z $java_bin ]] || return 0
	local candidate major
	if [[ -n ${JAVA_HOME:-} ]]; then
		java_bin=$JAVA_HOME/bin/java
		major=$(java_major "$java_bin")
		[[ $major =~ ^[0-9]+$ ]] || die "JAVA_HOME=$JAVA_HOME has no working bin/java"
		[[ $major == 17 ]] || log "warning: JAVA_HOME is Java $major; Cassandra 5.0 supports Java 11 and 17"
		return 0
	fi
	for candidate in "$(command -v java || true)" /usr/lib/jvm/java-17-openjdk-*/bin/java; do
		if [[ -x $candidate && $(java_major "$candidate") == 17 ]]; then
			java_bin=$(readlink -f "$candidate")
			return 0
		fi
	done
	apt_install openjdk-17-jre-headless
	for candidate in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
		[[ -x $candidate ]] && java_bin=$candidate && return 0
	done
	die "no Java 17 found after installing openjdk-17-jre-headless"
}

need_maven() {
	command -v mvn >/dev/null || apt_install maven
}

need_go() {
	command -v "${GO:-go}" >/dev/null || die "need the Go toolchain (go) on PATH to build the readiness probe"
}

# ---------------------------------------------------------------- fetch

# fetch_service NAME copies the runtime jars of scripts/infra/NAME/pom.xml into
# .infra/NAME/lib, unless a stamp shows that this exact pom was fetched.
fetch_service() {
	local name=$1
	local pom=$script_dir/$name/pom.xml
	local lib=$infra_dir/$name/lib
	local stamp=$lib/.fetched
	local sum
	sum=$(sha256sum "$pom" | cut -d' ' -f1)
	if [[ -f $stamp && $(cat "$stamp") == "$sum" ]]; then
		log "$name: jars already in ${lib#"$repo_root"/} ($(find "$lib" -name '*.jar' | wc -l) jars)"
		return
	fi
	need_maven
	local start tmp
	start=$(now)
	tmp=$infra_dir/$name/lib.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "$name: fetching jars with Maven"
	local attempt
	for attempt in 1 2; do
		# Maven runs on the chosen Java too (JAVA_HOME from java_bin).
		if JAVA_HOME=${java_bin%/bin/java} mvn -B -q -f "$pom" -Dmaven.repo.local="$infra_dir/m2" \
			"$dependency_plugin:copy-dependencies" \
			-DincludeScope=runtime -DoutputDirectory="$tmp" >"$infra_dir/$name/fetch.log" 2>&1; then
			break
		fi
		tail -n 40 "$infra_dir/$name/fetch.log" >&2
		((attempt < 2)) || die "$name: Maven could not fetch the jars (log: ${infra_dir#"$repo_root"/}/$name/fetch.log)"
		log "$name: Maven failed; trying once more"
	done
	printf '%s\n' "$sum" >"$tmp/.fetched"
	rm -rf "$lib"
	mv "$tmp" "$lib"
	log "$name: fetched $(find "$lib" -name '*.jar' | wc -l) jars ($(du -sh "$lib" | cut -f1)) in $(elapsed "$start")s"
}

# build_probe builds testinfra/cmd/probe into .infra/bin (Go's build cache
# makes a rebuild of unchanged code cheap).
build_probe() {
	need_go
	mkdir -p "$infra_dir/bin"
	(cd "$repo_root" && "${GO:-go}" build -o "$infra_dir/bin/probe" ./testinfra/cmd/probe) ||
		die "could not build the readiness probe (testinfra/cmd/probe)"
}

cmd_fetch() {
	local start
	start=$(now)
	mkdir -p "$infra_dir"
	need_java
	fetch_service kafka
	fetch_service cassandra
	build_probe
	log "fetch done in $(elapsed "$start")s"
}

# ---------------------------------------------------------------- processes

pid_file() { printf '%s/%s/pid' "$run_dir" "$1"; }

# owned_pid NAME prints the pid recorded for NAME if that process is alive and
# is still the java process started for NAME (its command line names NAME's
# run folder), so a recycled pid is never signalled.
owned_pid() {
	local name=$1 file pid
	file=$(pid_file "$name")
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$run_dir/$name/" || return 1
	printf '%s\n' "$pid"
}

# alive PID succeeds while PID runs (a zombie, an exited child of this
# shell not yet reaped, counts as gone).
alive() {
	local state
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $state && $state != Z ]]
}

# rss_mib PID prints the resident set size of PID in MiB.
rss_mib() { awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo '?'; }

# peak_rss_mib PID prints the peak resident set size of PID in MiB.
peak_rss_mib() { awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo '?'; }

# port_taken ADDRESS PORT succeeds when something accepts connections on
# ADDRESS:PORT.
port_taken() {
	timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# check_ports NAME ADDRESS PORT... fails when one of the ports is taken.
check_ports() {
	local name=$1 address=$2 port
	shift 2
	for port in "$@"; do
		[[ $port =~ ^[0-9]+$ ]] || die "$name: port '$port' is not a number"
		if port_taken "$address" "$port"; then
			local who=''
			command -v ss >/dev/null && who=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)
			die "$name: port $port on $address is already taken${who:+ ($who)}; stop that process or choose other ports (WATERSHED_KAFKA_PORT, WATERSHED_KAFKA_CONTROLLER_PORT, WATERSHED_CASSANDRA_PORT, WATERSHED_CASSANDRA_STORAGE_PORT)"
		fi
	done
}

# render TEMPLATE OUT KEY=VALUE... copies TEMPLATE to OUT replacing @KEY@.
render() {
	local template=$1 out=$2 pair text
	shift 2
	text=$(<"$template")
	for pair in "$@"; do
		text=${text//@${pair%%=*}@/${pair#*=}}
	done
	if [[ $text =~ @[A-Z_]+@ ]]; then
		die "unreplaced token in $template"
	fi
	printf '%s\n' "$text" >"$out"
}

# launch NAME LOG CMD... starts CMD in its own session with output to LOG and
# records its pid.
launch() {
	local name=$1 logfile=$2
	shift 2
	# A resumed service keeps its earlier log beside the new one.
	[[ ! -e $logfile ]] || mv "$logfile" "$logfile.$(date +%s%N)"
	setsid "$@" </dev/null >"$logfile" 2>&1 &
	local pid=$!
	printf '%s\n' "$pid" >"$(pid_file "$name")"
}

# wait_ready NAME PATTERN DEADLINE waits for PATTERN in NAME's log while the
# process lives, failing with the log's tail on death or time-out.
wait_ready() {
	local name=$1 pattern=$2 deadline=$3 logfile pid
	logfile=$run_dir/$name/$name.log
	pid=$(<"$(pid_file "$name")")
	until grep -qF -- "$pattern" "$logfile" 2>/dev/null; do
		if ! alive "$pid"; then
			tail -n 40 "$logfile" >&2 || true
			die "$name: the process exited during start-up (log: ${logfile#"$repo_root"/})"
		fi
		if (($(date +%s) >= deadline)); then
			tail -n 40 "$logfile" >&2 || true
			die "$name: no '$pattern' in its log within the time-out (log: ${logfile#"$repo_root"/})"
		fi
		sleep 0.2
	done
}

# probe SERVICE ADDR DEADLINE runs the Go readiness probe until DEADLINE.
probe() {
	local service=$1 addr=$2 deadline=$3 left
	left=$((deadline - $(date +%s)))
	((left > 5)) || left=5
	[[ -x $infra_dir/bin/probe ]] || build_probe
	WATERSHED_CASSANDRA_USER=$cassandra_user WATERSHED_CASSANDRA_PASSWORD=$cassandra_password \
		"$infra_dir/bin/probe" -timeout "${left}s" "$service" "$addr" >&2
}

# fresh is false while resuming: the run folder, its data and its rendered
# configuration are kept from the last run.
fresh=true

# prepare NAME makes a fresh run folder for NAME (the caller checked that it
# does not run), or, when resuming, checks that the last run left one.
prepare() {
	local name=$1
	if [[ $fresh == false ]]; then
		[[ -d $run_dir/$name/data ]] || die "$name: no data of an earlier run in ${run_dir#"$repo_root"/}/$name to resume on; use start"
		return 0
	fi
	rm -rf "${run_dir:?}/$name"
	mkdir -p "$run_dir/$name/data" "$run_dir/$name/tmp"
}

# ---------------------------------------------------------------- kafka

# random_cluster_id prints a Kafka cluster id: 16 random bytes in URL-safe
# base64 without padding, not starting with '-' (what StorageTool random-uuid
# prints, without a second JVM start).
random_cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
		[[ ${#id} -eq 22 && $id != -* ]] && break
	done
	printf '%s\n' "$id"
}

# kafka_jvm DIR HEAP sets kafka_jvm_args to the JVM options and class path
# of a broker whose run folder is DIR.
kafka_jvm() {
	local dir=$1 heap=$2
	size_mib "$heap" >/dev/null
	kafka_jvm_args=(
		"-Xms$heap" "-Xmx$heap" -Xss512k
		-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
		-XX:TieredStopAtLevel=1 -XX:CICompilerCount=2 -XX:-UsePerfData
		-Djava.awt.headless=true -Djava.io.tmpdir="$dir/tmp"
		-Dlog4j2.configurationFile="$dir/log4j2.properties"
	)
	# Extra options come after ours, so they win (for -XX flags the last counts).
	local -a extra
	read -r -a extra <<<"${WATERSHED_KAFKA_JVM_OPTS:-}"
	kafka_jvm_args+=("${extra[@]}" -cp "$infra_dir/kafka/lib/*")
}

# launch_kafka formats fresh storage and starts the broker in the background.
launch_kafka() {
	local dir=$run_dir/kafka lib=$infra_dir/kafka/lib cluster_id
	[[ -f $lib/.fetched ]] || die "kafka: jars missing; run '$0 fetch' first"
	check_ports kafka 127.0.0.1 "$kafka_port" "$kafka_controller_port" "$kafka_sasl_port"
	started_at[kafka]=$(now)
	deadlines[kafka]=$(($(date +%s) + kafka_start_timeout))
	prepare kafka
	if [[ $fresh == true ]]; then
		printf '127.0.0.1:%s\n' "$kafka_port" >"$dir/addr"
		printf '127.0.0.1:%s\n' "$kafka_sasl_port" >"$dir/sasl-addr"
		printf '%s,%s,%s\n' "$kafka_port" "$kafka_controller_port" "$kafka_sasl_port" >"$dir/ports"
		render "$script_dir/kafka/server.properties" "$dir/server.properties" \
			"KAFKA_PORT=$kafka_port" "CONTROLLER_PORT=$kafka_controller_port" "SASL_PORT=$kafka_sasl_port" "DATA_DIR=$dir/data"
		cp "$script_dir/kafka/log4j2.properties" "$dir/log4j2.properties"
	fi

	kafka_jvm "$dir" "$kafka_heap"
	local -a jvm=("${kafka_jvm_args[@]}")
	cluster_id=$(random_cluster_id)
	# The SCRAM users of the SASL_PLAINTEXT listener, one per mechanism.
	if [[ $fresh == true ]] && ! "$java_bin" "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
		--add-scram "SCRAM-SHA-256=[name=$kafka_scram_user,password=$kafka_scram_password]" \
		--add-scram "SCRAM-SHA-512=[name=$kafka_scram_user,password=$kafka_scram_password]" \
		>>"$dir/format.log" 2>&1; then
		tail -n 20 "$dir/format.log" >&2
		die "kafka: formatting the storage failed (log: ${dir#"$repo_root"/}/format.log)"
	fi
	launch kafka "$dir/kafka.log" "$java_bin" "${jvm[@]}" kafka.Kafka "$dir/server.properties"
	log "kafka: starting (pid $(<"$(pid_file kafka)"), port $kafka_port, controller $kafka_controller_port, heap $kafka_heap)"
}

# await_kafka waits for the start-up log line, then for a metadata answer.
await_kafka() {
	local pid
	pid=$(<"$(pid_file kafka)")
	wait_ready kafka "Kafka Server started" "${deadlines[kafka]}"
	probe kafka "127.0.0.1:$kafka_port" "${deadlines[kafka]}" ||
		die "kafka: not answering metadata requests (log: ${run_dir#"$repo_root"/}/kafka/kafka.log)"
	log "kafka: ready in $(elapsed "${started_at[kafka]}")s, RSS $(rss_mib "$pid") MiB"
}

# ---------------------------------------------------------------- cassandra

# launch_cassandra starts the single node on fresh storage in the background.
launch_cassandra() {
	launch_cassandra_node cassandra 127.0.0.1 "127.0.0.1:$cassandra_storage_port" 0 PasswordAuthenticator "$cassandra_heap" 0
}

# launch_cassandra_node NAME ADDRESS SEEDS TOKEN AUTHENTICATOR HEAP RING_DELAY
# starts a Cassandra node whose run folder is NAME, listening on ADDRESS (CQL
# and storage ports as set), in the background. RING_DELAY (ms) is how long
# it waits for gossip: 0 for a node alone, a few seconds for one that joins
# or rejoins a cluster (with 0 it gives up on its seed at once).
launch_cassandra_node() {
	local name=$1 address=$2 seeds=$3 token=$4 authenticator=$5 heap=$6 ring_delay=$7
	local dir=$run_dir/$name lib=$infra_dir/cassandra/lib jamm
	[[ -f $lib/.fetched ]] || die "cassandra: jars missing; run '$0 fetch' first"
	check_ports "$name" "$address" "$cassandra_port" "$cassandra_storage_port"
	started_at[$name]=$(now)
	deadlines[$name]=$(($(date +%s) + cassandra_start_timeout))
	prepare "$name"
	if [[ $fresh == true ]]; then
		printf '%s:%s\n' "$address" "$cassandra_port" >"$dir/addr"
		printf '%s,%s\n' "$cassandra_port" "$cassandra_storage_port" >"$dir/ports"
		mkdir -p "$dir/logs"
		render "$script_dir/cassandra/cassandra.yaml" "$dir/cassandra.yaml" \
			"CQL_PORT=$cassandra_port" "STORAGE_PORT=$cassandra_storage_port" "DATA_DIR=$dir/data" \
			"ADDRESS=$address" "SEEDS=$seeds" "INITIAL_TOKEN=$token" "AUTHENTICATOR=$authenticator"
		cp "$script_dir/cassandra/logback.xml" "$dir/logback.xml"
	fi

	local -a modules
	mapfile -t modules < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$script_dir/cassandra/jvm17.options")
	jamm=$(find -H "$lib" -maxdepth 1 -name 'jamm-*.jar' | head -n1)
	[[ -n $jamm ]] || die "cassandra: no jamm jar in ${lib#"$repo_root"/}"

	# A small initial heap: Cassandra mlockall()s the memory mapped at start-up
	# (it runs as root here), so -Xms equal to -Xmx would pin the whole heap.
	local xms
	size_mib "$heap" >/dev/null # dies on a bad size, outside $(...)
	xms=$(size_mib "$heap")
	((xms <= 256)) || xms=256
	local -a jvm=(
		"-Xms${xms}m" "-Xmx$heap" -Xss256k
		-XX:+UseG1GC -XX:MaxGCPauseMillis=100 -XX:+ParallelRefProcEnabled
		-XX:TieredStopAtLevel=1 -XX:CICompilerCount=2 -XX:-UsePerfData
		-XX:+ExitOnOutOfMemoryError
		"${modules[@]}"
		"-javaagent:$jamm"
		-Dcassandra.config="file://$dir/cassandra.yaml"
		-Dcassandra-foreground=yes
		-Dcassandra.storagedir="$dir/data"
		-Dcassandra.logdir="$dir/logs"
		-Dlogback.configurationFile="$dir/logback.xml"
		-Dcassandra.skip_wait_for_gossip_to_settle=0
		-Dcassandra.superuser_setup_delay_ms=0
		-Dcassandra.ring_delay_ms="$ring_delay"
		-Dcassandra.memtable.row_overhead_size=180
		-Dcassandra.shutdown_announce_in_ms=0
		-Dcassandra.test.messagingService.nonGracefulShutdown=true
		-Djava.net.preferIPv4Stack=true
		-Dchronicle.analytics.disable=true
		-Djdk.attach.allowAttachSelf=true
		-Dio.netty.tryReflectionSetAccessible=true
		-Djava.io.tmpdir="$dir/tmp"
	)
	# The single node keeps its schema without fsync (fast DDL); the
	# cluster's nodes are killed by the fault test, and a node that comes
	# back without the schema it acknowledged ("table does not exist")
	# refuses writes and no longer serves the rows it holds.
	[[ $name != cassandra ]] || jvm+=(-Dcassandra.unsafesystem=true)
	local -a extra
	read -r -a extra <<<"${WATERSHED_CASSANDRA_JVM_OPTS:-}"
	jvm+=("${extra[@]}" -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon)
	launch "$name" "$dir/$name.log" "$java_bin" "${jvm[@]}"
	log "$name: starting (pid $(<"$(pid_file "$name")"), $address port $cassandra_port, storage $cassandra_storage_port, heap $heap)"
}

# await_cassandra waits for the single node.
await_cassandra() { await_cassandra_node cassandra; }

# await_cassandra_node NAME waits for the start-up log line, then for a CQL
# answer.
await_cassandra_node() {
	local name=$1 pid addr
	pid=$(<"$(pid_file "$name")")
	addr=$(<"$run_dir/$name/addr")
	wait_ready "$name" "Starting listening for CQL clients" "${deadlines[$name]}"
	probe cassandra "$addr" "${deadlines[$name]}" ||
		die "$name: not answering CQL (log: ${run_dir#"$repo_root"/}/$name/$name.log)"
	log "$name: ready in $(elapsed "${started_at[$name]}")s, RSS $(rss_mib "$pid") MiB"
}

# ---------------------------------------------------------------- cluster

# The cluster's settings are those of its start, kept in its run folder so
# that kill, resume and env of a later call use the same ports.
cluster_file() { printf '%s/cluster.env' "$run_dir"; }

load_cluster() {
	local file
	file=$(cluster_file)
	[[ -s $file ]] || return 0
	# shellcheck source=/dev/null
	source "$file"
}

# kafka_node_port N OFFSET prints port OFFSET+N of the cluster's span.
kafka_node_port() { echo $((kafka_cluster_port + $2 + $1)); }

# kafka_voters prints controller.quorum.voters for the three nodes.
kafka_voters() {
	local n out=''
	for n in 1 2 3; do
		out+="${out:+,}$n@127.0.0.1:$(kafka_node_port "$n" 100)"
	done
	printf '%s\n' "$out"
}

# launch_kafka_node N formats node N's fresh storage with the cluster's id
# (fresh start) and starts it in the background.
launch_kafka_node() {
	local n=$1 name=kafka-$1 dir=$run_dir/kafka-$1 lib=$infra_dir/kafka/lib
	local port controller external proxy
	port=$(kafka_node_port "$n" 0)
	controller=$(kafka_node_port "$n" 100)
	external=$(kafka_node_port "$n" 200)
	proxy=$(kafka_node_port "$n" 300)
	[[ -f $lib/.fetched ]] || die "kafka: jars missing; run '$0 fetch' first"
	check_ports "$name" 127.0.0.1 "$port" "$controller" "$external"
	started_at[$name]=$(now)
	deadlines[$name]=$(($(date +%s) + kafka_start_timeout))
	prepare "$name"
	if [[ $fresh == true ]]; then
		printf '127.0.0.1:%s\n' "$port" >"$dir/addr"
		printf '127.0.0.1:%s>127.0.0.1:%s\n' "$proxy" "$external" >"$dir/proxy"
		printf '%s,%s,%s,%s\n' "$port" "$controller" "$external" "$proxy" >"$dir/ports"
		render "$script_dir/kafka/cluster.properties" "$dir/server.properties" \
			"NODE_ID=$n" "VOTERS=$(kafka_voters)" "KAFKA_PORT=$port" "CONTROLLER_PORT=$controller" \
			"EXTERNAL_PORT=$external" "PROXY_PORT=$proxy" "DATA_DIR=$dir/data"
		cp "$script_dir/kafka/log4j2.properties" "$dir/log4j2.properties"
	fi
	kafka_jvm "$dir" "$kafka_cluster_heap"
	if [[ $fresh == true ]] && ! "$java_bin" "${kafka_jvm_args[@]}" kafka.tools.StorageTool format \
		-t "$kafka_cluster_id" -c "$dir/server.properties" >>"$dir/format.log" 2>&1; then
		tail -n 20 "$dir/format.log" >&2
		die "$name: formatting the storage failed (log: ${dir#"$repo_root"/}/format.log)"
	fi
	launch "$name" "$dir/$name.log" "$java_bin" "${kafka_jvm_args[@]}" kafka.Kafka "$dir/server.properties"
	log "$name: starting (pid $(<"$(pid_file "$name")"), port $port, controller $controller, proxied listener $external as $proxy, heap $kafka_cluster_heap)"
}

# await_kafka_node N waits for node N's start-up line, then for a metadata
# answer from it.
await_kafka_node() {
	local name=kafka-$1 pid
	pid=$(<"$(pid_file "$name")")
	wait_ready "$name" "Kafka Server started" "${deadlines[$name]}"
	probe kafka "$(<"$run_dir/$name/addr")" "${deadlines[$name]}" ||
		die "$name: not answering metadata requests (log: ${run_dir#"$repo_root"/}/$name/$name.log)"
	log "$name: ready in $(elapsed "${started_at[$name]}")s, RSS $(rss_mib "$pid") MiB"
}

# launch_cassandra_cluster_node N starts node N on 127.0.0.N, the first
# node being the seed. Tokens split the ring in halves, so that a keyspace
# with replication 2 has both nodes replicate everything.
launch_cassandra_cluster_node() {
	local n=$1 token=-9223372036854775808
	((n == 1)) || token=0
	launch_cassandra_node "cassandra-$n" "127.0.0.$n" "127.0.0.1:$cassandra_storage_port" "$token" \
		AllowAllAuthenticator "$cassandra_cluster_heap" 5000
}

# launch_service NAME and await_service NAME start and wait for one service
# or cluster node.
launch_service() {
	case $1 in
	kafka | cassandra) "launch_$1" ;;
	kafka-[123]) launch_kafka_node "${1#kafka-}" ;;
	cassandra-[12]) launch_cassandra_cluster_node "${1#cassandra-}" ;;
	*) die "unknown service '$1'" ;;
	esac
}

await_service() {
	case $1 in
	kafka | cassandra) "await_$1" ;;
	kafka-[123]) await_kafka_node "${1#kafka-}" ;;
	cassandra-[12]) await_cassandra_node "$1" ;;
	*) die "unknown service '$1'" ;;
	esac
}

# cmd_start_cluster starts the cluster on fresh data: the three Kafka nodes
# and the first Cassandra node side by side, then the second Cassandra node
# once the first answers (a node joins through its seed).
cmd_start_cluster() {
	local name pid start
	for name in "${services[@]}" "${cluster_nodes[@]}"; do
		if pid=$(owned_pid "$name"); then
			die "$name already runs (pid $pid); '$0 stop' first"
		fi
	done
	need_java
	[[ -x $infra_dir/bin/probe ]] || build_probe
	mkdir -p "$run_dir"
	start=$(now)
	kafka_cluster_id=$(random_cluster_id)
	{
		printf 'kafka_cluster_port=%q\n' "$kafka_cluster_port"
		printf 'kafka_cluster_heap=%q\n' "$kafka_cluster_heap"
		printf 'kafka_cluster_id=%q\n' "$kafka_cluster_id"
		printf 'cassandra_port=%q\n' "$cassandra_port"
		printf 'cassandra_storage_port=%q\n' "$cassandra_storage_port"
		printf 'cassandra_cluster_heap=%q\n' "$cassandra_cluster_heap"
		printf 'cassandra_proxy_port=%q\n' "$cassandra_proxy_port"
	} >"$(cluster_file)"
	trap on_start_exit EXIT
	for name in kafka-1 kafka-2 kafka-3 cassandra-1; do
		launched+=("$name")
		launch_service "$name"
	done
	for name in kafka-1 kafka-2 kafka-3 cassandra-1; do
		await_service "$name"
	done
	launched+=(cassandra-2)
	launch_service cassandra-2
	await_service cassandra-2
	trap - EXIT
	log "started the cluster (${launched[*]}) in $(elapsed "$start")s"
}

# cmd_kill NAME ends one service or node with SIGKILL, as a crash would,
# and waits until it is gone. Its data stays for resume.
cmd_kill() {
	local name=${1:-} pid
	[[ -n $name ]] || usage
	load_cluster
	if ! pid=$(owned_pid "$name"); then
		die "$name does not run"
	fi
	kill -KILL "$pid"
	# Gone means reaped: a JVM's main thread turns zombie while its other
	# threads still hold the ports, which a quick resume would then find
	# taken.
	local deadline=$(($(date +%s) + 30))
	while [[ -e /proc/$pid ]] && (($(date +%s) < deadline)); do sleep 0.05; done
	rm -f "$(pid_file "$name")"
	log "$name: killed (SIGKILL, pid $pid)"
}

# cmd_controller prints the node id of the cluster's active KRaft
# controller, as the quorum's leader (DescribeQuorum through a broker).
cmd_controller() {
	load_cluster
	local -a addrs=()
	local name
	for name in kafka-1 kafka-2 kafka-3; do
		owned_pid "$name" >/dev/null && addrs+=("$(<"$run_dir/$name/addr")")
	done
	((${#addrs[@]} > 0)) || die "no cluster node runs"
	[[ -x $infra_dir/bin/probe ]] || build_probe
	"$infra_dir/bin/probe" -timeout 30s kafka-controller "$(
		IFS=,
		echo "${addrs[*]}"
	)"
}

# ---------------------------------------------------------------- commands

# Start bookkeeping, per service: when its start began and its deadline.
declare -A started_at=() deadlines=()
# Services launched by this invocation, stopped again if the start fails.
launched=()

# on_start_exit stops what a failed start launched, keeping the exit status.
on_start_exit() {
	local rc=$? name
	if ((rc != 0 && ${#launched[@]} > 0)); then
		log "start failed; stopping what it launched"
		stop_services "${launched[@]}" || true
	fi
	exit "$rc"
}

# mode prints what the last start started: "single" (kafka, cassandra) or
# "cluster" (the cluster's nodes).
mode() {
	local file=$run_dir/mode
	if [[ -s $file ]]; then cat "$file"; else echo single; fi
}

# cmd_start launches the named services side by side (their JVMs start up in
# parallel), then waits for each to be ready. Running ones are left alone.
# A cluster node starts only on its data (resume).
cmd_start() {
	local what=${1:-all} name pid start
	local -a names
	case $what in
	cluster)
		[[ $fresh == true ]] || die "resume the cluster's nodes by name, or 'resume all'"
		mkdir -p "$run_dir"
		printf 'cluster\n' >"$run_dir/mode"
		cmd_start_cluster
		return
		;;
	kafka-[123] | cassandra-[12])
		[[ $fresh == false ]] || die "$what is a node of the cluster: 'start cluster', or 'resume $what' after a stop or kill"
		names=("$what")
		;;
	all)
		# A fresh start of all is the single mode; a resume of all, the last.
		if [[ $fresh == true ]]; then names=("${services[@]}"); else mapfile -t names < <(names_of all); fi
		;;
	*) mapfile -t names < <(names_of "$what") ;;
	esac
	need_java
	[[ -x $infra_dir/bin/probe ]] || build_probe
	mkdir -p "$run_dir"
	[[ $fresh == false ]] || printf 'single\n' >"$run_dir/mode"
	start=$(now)
	trap on_start_exit EXIT
	for name in "${names[@]}"; do
		if pid=$(owned_pid "$name"); then
			log "$name: already running (pid $pid); '$0 stop' first for a fresh one"
			continue
		fi
		launched+=("$name")
		launch_service "$name"
		# A Cassandra node joins through the first, which must answer first.
		[[ $name != cassandra-1 ]] || await_service "$name"
	done
	for name in "${launched[@]}"; do
		[[ $name == cassandra-1 ]] || await_service "$name"
	done
	trap - EXIT
	((${#launched[@]} == 0)) || log "started ${launched[*]} in $(elapsed "$start")s"
}

# stop_services NAME... sends TERM to each named service's recorded process,
# waits for all of them together, sends KILL to any still running after the
# stop time-out, and forgets their pids. Only processes start recorded (and
# that still look like them) are signalled; nothing running is a success.
stop_services() {
	local name pid start deadline
	local -A pids=()
	start=$(now)
	for name in "$@"; do
		if pid=$(owned_pid "$name"); then
			log "$name: stopping pid $pid (RSS $(rss_mib "$pid") MiB, peak $(peak_rss_mib "$pid") MiB)"
			kill -TERM "$pid" 2>/dev/null || true
			pids[$name]=$pid
		else
			rm -f "$(pid_file "$name")"
		fi
	done
	deadline=$(($(date +%s) + stop_timeout))
	while ((${#pids[@]} > 0)); do
		for name in "${!pids[@]}"; do
			pid=${pids[$name]}
			if ! alive "$pid"; then
				log "$name: stopped in $(elapsed "$start")s"
			elif (($(date +%s) >= deadline)); then
				log "$name: still running ${stop_timeout}s after TERM, sending KILL"
				kill -KILL "$pid" 2>/dev/null || true
				while alive "$pid"; do sleep 0.1; done
				log "$name: killed after $(elapsed "$start")s"
			else
				continue
			fi
			rm -f "$(pid_file "$name")"
			unset 'pids[$name]'
		done
		((${#pids[@]} == 0)) || sleep 0.2
	done
}

# names_of WHAT prints the services WHAT names: one service or node, or for
# all, those of the last start (the single services or the cluster's nodes).
names_of() {
	case ${1:-all} in
	kafka | cassandra | kafka-[123] | cassandra-[12]) printf '%s\n' "$1" ;;
	all)
		if [[ $(mode) == cluster ]]; then
			printf '%s\n' "${cluster_nodes[@]}"
		else
			printf '%s\n' "${services[@]}"
		fi
		;;
	*) usage ;;
	esac
}

# cmd_stop stops the named services; all stops whatever runs, in either mode.
cmd_stop() {
	local -a names
	if [[ ${1:-all} == all ]]; then
		names=("${services[@]}" "${cluster_nodes[@]}")
	else
		mapfile -t names < <(names_of "$1")
	fi
	stop_services "${names[@]}"
}

# cmd_resume starts the named services again on the data, configuration and
# ports of their last run (a broker keeps its topics and offsets, a node its
# tables), as after a crash or a maintenance stop.
cmd_resume() {
	fresh=false
	# The ports are those of the last run, whatever the settings say now.
	local sasl_port=
	[[ ! -s $run_dir/kafka/ports ]] || IFS=, read -r kafka_port kafka_controller_port sasl_port <"$run_dir/kafka/ports"
	kafka_sasl_port=${sasl_port:-$kafka_sasl_port}
	[[ ! -s $run_dir/cassandra/ports ]] || IFS=, read -r cassandra_port cassandra_storage_port <"$run_dir/cassandra/ports"
	[[ $(mode) != cluster ]] || load_cluster
	cmd_start "${1:-all}"
}

# cmd_restart stops the named services and resumes them on their data.
cmd_restart() {
	cmd_stop "${1:-all}"
	cmd_resume "${1:-all}"
}

cmd_status() {
	local name pid rc=0 ports
	local -a names
	mapfile -t names < <(names_of all)
	[[ $(mode) != cluster ]] || load_cluster
	for name in "${names[@]}"; do
		case $name in
		kafka) ports="$kafka_port,$kafka_controller_port,$kafka_sasl_port" ;;
		cassandra) ports="$cassandra_port,$cassandra_storage_port" ;;
		*) ports='' ;;
		esac
		if pid=$(owned_pid "$name"); then
			[[ ! -s $run_dir/$name/ports ]] || ports=$(<"$run_dir/$name/ports")
			printf '%-12s running  pid %-8s ports %-23s RSS %s MiB  log %s\n' "$name" "$pid" "$ports" \
				"$(rss_mib "$pid")" "${run_dir#"$repo_root"/}/$name/$name.log"
		else
			printf '%-12s stopped\n' "$name"
			rc=3
		fi
	done
	return "$rc"
}

# service_addr NAME DEFAULT prints the client address NAME was started with,
# when it runs, else DEFAULT (the address the current settings would use).
service_addr() {
	local file=$run_dir/$1/addr
	if owned_pid "$1" >/dev/null && [[ -s $file ]]; then
		cat "$file"
	else
		printf '%s\n' "$2"
	fi
}

# service_addr_file NAME FILE DEFAULT is service_addr for another address
# file of NAME's run folder.
service_addr_file() {
	local file=$run_dir/$1/$2
	if owned_pid "$1" >/dev/null && [[ -s $file ]]; then
		cat "$file"
	else
		printf '%s\n' "$3"
	fi
}

cmd_env() {
	if [[ $(mode) == cluster ]]; then
		cluster_env
		return
	fi
	printf 'WATERSHED_KAFKA_BROKERS=%s\n' "$(service_addr kafka "127.0.0.1:$kafka_port")"
	printf 'WATERSHED_CASSANDRA_HOSTS=%s\n' "$(service_addr cassandra "127.0.0.1:$cassandra_port")"
	printf 'WATERSHED_CASSANDRA_USER=%s\n' "$cassandra_user"
	printf 'WATERSHED_CASSANDRA_PASSWORD=%s\n' "$cassandra_password"
	# Not the names the watershed command reads: only the SASL tests use them.
	printf 'WATERSHED_TEST_KAFKA_SASL_BROKERS=%s\n' "$(service_addr_file kafka sasl-addr "127.0.0.1:$kafka_sasl_port")"
	printf 'WATERSHED_TEST_KAFKA_SCRAM_USER=%s\n' "$kafka_scram_user"
	printf 'WATERSHED_TEST_KAFKA_SCRAM_PASSWORD=%s\n' "$kafka_scram_password"
}

# cluster_env prints the cluster's addresses: the nodes' direct ones, which
# the test's own clients use, and the proxies the fault test runs in front of
# them (listen>upstream, in node order), which its processes use. Every
# node is listed, whether it runs or not (a killed node comes back).
cluster_env() {
	load_cluster
	local n brokers='' kproxies='' hosts='' cproxies=''
	for n in 1 2 3; do
		brokers+="${brokers:+,}127.0.0.1:$(kafka_node_port "$n" 0)"
		kproxies+="${kproxies:+,}127.0.0.1:$(kafka_node_port "$n" 300)>127.0.0.1:$(kafka_node_port "$n" 200)"
	done
	for n in 1 2; do
		hosts+="${hosts:+,}127.0.0.$n:$cassandra_port"
		cproxies+="${cproxies:+,}127.0.0.$n:$cassandra_proxy_port>127.0.0.$n:$cassandra_port"
	done
	printf 'WATERSHED_KAFKA_BROKERS=%s\n' "$brokers"
	printf 'WATERSHED_CASSANDRA_HOSTS=%s\n' "$hosts"
	# The cluster runs without authentication (cassandra.yaml says why); a
	# login is accepted and ignored.
	printf 'WATERSHED_CASSANDRA_USER=%s\n' "$cassandra_user"
	printf 'WATERSHED_CASSANDRA_PASSWORD=%s\n' "$cassandra_password"
	printf 'WATERSHED_TEST_INFRA_MODE=cluster\n'
	printf 'WATERSHED_TEST_KAFKA_PROXIES=%s\n' "$kproxies"
	printf 'WATERSHED_TEST_CASSANDRA_PROXIES=%s\n' "$cproxies"
}

main() {
	local cmd=${1:-}
	[[ $# -gt 0 ]] && shift
	case $cmd in
	fetch) cmd_fetch ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	resume) cmd_resume "$@" ;;
	restart) cmd_restart "$@" ;;
	kill) cmd_kill "$@" ;;
	controller) cmd_controller ;;
	status) cmd_status ;;
	env) cmd_env ;;
	*) usage ;;
	esac
}

main "$@"
