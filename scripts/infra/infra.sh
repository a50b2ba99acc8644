#!/usr/bin/env bash
# infra.sh: fetch, start and stop the real Apache Kafka and Apache Cassandra
# servers that `make integration` tests against, from Maven Central jars and
# plain `java` (no Docker). See docs/infrastructure.md.
#
#   infra.sh fetch                         jars into .infra/ (once), probe binary
#   infra.sh start [kafka|cassandra|all]   fresh data, start, wait until ready
#   infra.sh stop [kafka|cassandra|all]    stop what start started (by pid); data kept
#   infra.sh resume [kafka|cassandra|all]  start again on the data of the last run
#   infra.sh restart [kafka|cassandra|all] stop, then resume (data kept)
#   infra.sh status                        what runs, with pid, ports and RSS
#   infra.sh env                           WATERSHED_*=... lines for the tests
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
cassandra_heap=${WATERSHED_CASSANDRA_HEAP:-1g}
kafka_start_timeout=${WATERSHED_KAFKA_START_TIMEOUT:-120}
cassandra_start_timeout=${WATERSHED_CASSANDRA_START_TIMEOUT:-180}
stop_timeout=${WATERSHED_STOP_TIMEOUT:-30}

# Pinned so a fresh machine resolves exactly what was tested here.
dependency_plugin=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

services=(kafka cassandra)

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
	sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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

# port_taken PORT succeeds when something accepts connections on PORT.
port_taken() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

check_ports() {
	local name=$1 port
	shift
	for port in "$@"; do
		[[ $port =~ ^[0-9]+$ ]] || die "$name: port '$port' is not a number"
		if port_taken "$port"; then
			local who=''
			command -v ss >/dev/null && who=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)
			die "$name: port $port on 127.0.0.1 is already taken${who:+ ($who)}; stop that process or choose other ports (WATERSHED_KAFKA_PORT, WATERSHED_KAFKA_CONTROLLER_PORT, WATERSHED_CASSANDRA_PORT, WATERSHED_CASSANDRA_STORAGE_PORT)"
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

# launch_kafka formats fresh storage and starts the broker in the background.
launch_kafka() {
	local dir=$run_dir/kafka lib=$infra_dir/kafka/lib cluster_id
	[[ -f $lib/.fetched ]] || die "kafka: jars missing; run '$0 fetch' first"
	check_ports kafka "$kafka_port" "$kafka_controller_port" "$kafka_sasl_port"
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

	size_mib "$kafka_heap" >/dev/null
	local -a jvm=(
		"-Xms$kafka_heap" "-Xmx$kafka_heap" -Xss512k
		-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
		-XX:TieredStopAtLevel=1 -XX:CICompilerCount=2 -XX:-UsePerfData
		-Djava.awt.headless=true -Djava.io.tmpdir="$dir/tmp"
		-Dlog4j2.configurationFile="$dir/log4j2.properties"
	)
	# Extra options come after ours, so they win (for -XX flags the last counts).
	local -a extra
	read -r -a extra <<<"${WATERSHED_KAFKA_JVM_OPTS:-}"
	jvm+=("${extra[@]}" -cp "$lib/*")
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

# launch_cassandra starts a node on fresh storage in the background.
launch_cassandra() {
	local dir=$run_dir/cassandra lib=$infra_dir/cassandra/lib jamm
	[[ -f $lib/.fetched ]] || die "cassandra: jars missing; run '$0 fetch' first"
	check_ports cassandra "$cassandra_port" "$cassandra_storage_port"
	started_at[cassandra]=$(now)
	deadlines[cassandra]=$(($(date +%s) + cassandra_start_timeout))
	prepare cassandra
	if [[ $fresh == true ]]; then
		printf '127.0.0.1:%s\n' "$cassandra_port" >"$dir/addr"
		printf '%s,%s\n' "$cassandra_port" "$cassandra_storage_port" >"$dir/ports"
		mkdir -p "$dir/logs"
		render "$script_dir/cassandra/cassandra.yaml" "$dir/cassandra.yaml" \
			"CQL_PORT=$cassandra_port" "STORAGE_PORT=$cassandra_storage_port" "DATA_DIR=$dir/data"
		cp "$script_dir/cassandra/logback.xml" "$dir/logback.xml"
	fi

	local -a modules
	mapfile -t modules < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$script_dir/cassandra/jvm17.options")
	jamm=$(find -H "$lib" -maxdepth 1 -name 'jamm-*.jar' | head -n1)
	[[ -n $jamm ]] || die "cassandra: no jamm jar in ${lib#"$repo_root"/}"

	# A small initial heap: Cassandra mlockall()s the memory mapped at start-up
	# (it runs as root here), so -Xms equal to -Xmx would pin the whole heap.
	local xms
	size_mib "$cassandra_heap" >/dev/null # dies on a bad size, outside $(...)
	xms=$(size_mib "$cassandra_heap")
	((xms <= 256)) || xms=256
	local -a jvm=(
		"-Xms${xms}m" "-Xmx$cassandra_heap" -Xss256k
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
		-Dcassandra.ring_delay_ms=0
		-Dcassandra.unsafesystem=true
		-Dcassandra.memtable.row_overhead_size=180
		-Dcassandra.shutdown_announce_in_ms=0
		-Dcassandra.test.messagingService.nonGracefulShutdown=true
		-Djava.net.preferIPv4Stack=true
		-Dchronicle.analytics.disable=true
		-Djdk.attach.allowAttachSelf=true
		-Dio.netty.tryReflectionSetAccessible=true
		-Djava.io.tmpdir="$dir/tmp"
	)
	local -a extra
	read -r -a extra <<<"${WATERSHED_CASSANDRA_JVM_OPTS:-}"
	jvm+=("${extra[@]}" -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon)
	launch cassandra "$dir/cassandra.log" "$java_bin" "${jvm[@]}"
	log "cassandra: starting (pid $(<"$(pid_file cassandra)"), port $cassandra_port, storage $cassandra_storage_port, heap $cassandra_heap)"
}

# await_cassandra waits for the start-up log line, then for a CQL answer.
await_cassandra() {
	local pid
	pid=$(<"$(pid_file cassandra)")
	wait_ready cassandra "Starting listening for CQL clients" "${deadlines[cassandra]}"
	probe cassandra "127.0.0.1:$cassandra_port" "${deadlines[cassandra]}" ||
		die "cassandra: not answering CQL (log: ${run_dir#"$repo_root"/}/cassandra/cassandra.log)"
	log "cassandra: ready in $(elapsed "${started_at[cassandra]}")s, RSS $(rss_mib "$pid") MiB"
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

# cmd_start launches the named services side by side (their JVMs start up in
# parallel), then waits for each to be ready. Running ones are left alone.
cmd_start() {
	local what=${1:-all} name pid start
	local -a names
	case $what in
	kafka | cassandra) names=("$what") ;;
	all) names=("${services[@]}") ;;
	*) usage ;;
	esac
	need_java
	[[ -x $infra_dir/bin/probe ]] || build_probe
	mkdir -p "$run_dir"
	start=$(now)
	trap on_start_exit EXIT
	for name in "${names[@]}"; do
		if pid=$(owned_pid "$name"); then
			log "$name: already running (pid $pid); '$0 stop' first for a fresh one"
			continue
		fi
		launched+=("$name")
		"launch_$name"
	done
	for name in "${launched[@]}"; do
		"await_$name"
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

# names_of WHAT prints the services WHAT names (kafka, cassandra or all).
names_of() {
	case ${1:-all} in
	kafka | cassandra) printf '%s\n' "$1" ;;
	all) printf '%s\n' "${services[@]}" ;;
	*) usage ;;
	esac
}

cmd_stop() {
	local -a names
	mapfile -t names < <(names_of "${1:-all}")
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
	cmd_start "${1:-all}"
}

# cmd_restart stops the named services and resumes them on their data.
cmd_restart() {
	cmd_stop "${1:-all}"
	cmd_resume "${1:-all}"
}

cmd_status() {
	local name pid rc=0 ports
	for name in "${services[@]}"; do
		case $name in
		kafka) ports="$kafka_port,$kafka_controller_port,$kafka_sasl_port" ;;
		cassandra) ports="$cassandra_port,$cassandra_storage_port" ;;
		esac
		if pid=$(owned_pid "$name"); then
			[[ ! -s $run_dir/$name/ports ]] || ports=$(<"$run_dir/$name/ports")
			printf '%-10s running  pid %-8s ports %-11s RSS %s MiB  log %s\n' "$name" "$pid" "$ports" \
				"$(rss_mib "$pid")" "${run_dir#"$repo_root"/}/$name/$name.log"
		else
			printf '%-10s stopped\n' "$name"
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
	printf 'WATERSHED_KAFKA_BROKERS=%s\n' "$(service_addr kafka "127.0.0.1:$kafka_port")"
	printf 'WATERSHED_CASSANDRA_HOSTS=%s\n' "$(service_addr cassandra "127.0.0.1:$cassandra_port")"
	printf 'WATERSHED_CASSANDRA_USER=%s\n' "$cassandra_user"
	printf 'WATERSHED_CASSANDRA_PASSWORD=%s\n' "$cassandra_password"
	# Not the names the watershed command reads: only the SASL tests use them.
	printf 'WATERSHED_TEST_KAFKA_SASL_BROKERS=%s\n' "$(service_addr_file kafka sasl-addr "127.0.0.1:$kafka_sasl_port")"
	printf 'WATERSHED_TEST_KAFKA_SCRAM_USER=%s\n' "$kafka_scram_user"
	printf 'WATERSHED_TEST_KAFKA_SCRAM_PASSWORD=%s\n' "$kafka_scram_password"
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
	status) cmd_status ;;
	env) cmd_env ;;
	*) usage ;;
	esac
}

main "$@"
