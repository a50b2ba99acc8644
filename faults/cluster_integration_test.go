//go:build integration

package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/internal/reconcile"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/testinfra"
	"github.com/watershed-io/watershed/testinfra/probe"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// Environment of the cluster that `infra.sh start cluster` runs and
// `infra.sh env` describes.
const (
	envInfraMode         = "WATERSHED_TEST_INFRA_MODE"
	envKafkaProxies      = "WATERSHED_TEST_KAFKA_PROXIES"
	envCassandraProxies  = "WATERSHED_TEST_CASSANDRA_PROXIES"
	clusterKafkaNodes    = 3
	clusterCassandraRF   = 2
	clusterTopicReplicas = 3
)

// TestIntegrationFaultsCluster is issue 13's fault test. The pipeline runs
// as separate processes (two edges, Replicas replicas of every processor
// group, two view servers) against a 3-node Kafka cluster (replication 3,
// min.insync.replicas 2) and a 2-node Cassandra cluster (keyspace
// replication 2, LOCAL_QUORUM), every byte between them passing toxiproxy
// proxies. While the simulator offers packages, it kills brokers with
// SIGKILL (the leader of a raw partition, then the active controller),
// injects latency, connection resets and a blackhole between the processes
// and the brokers and Cassandra, kills one Cassandra node for 20 s
// (partial outage) and later stops both (full outage), kills replicas, stops
// one with SIGTERM, and kills an edge with requests in flight. The fault
// cycle repeats until the run's duration has passed. Then every check
// asserts: answers, acceptance, rows, duplicates at the normalized topic
// and at the sink's write calls, dead letters per record, view probes,
// processes that died by themselves, hourly summaries against the truth
// (the devices' clocks follow a MessageClock that closes a window within
// the run). Figures go to EnvReport.
func TestIntegrationFaultsCluster(t *testing.T) {
	if os.Getenv(envInfraMode) != "cluster" {
		t.Fatalf("%s is not 'cluster': this test needs the cluster of `scripts/infra/infra.sh start cluster` "+
			"and its `infra.sh env`; run it with `make faults` (or `make integration`)", envInfraMode)
	}
	duration := envDuration(t, EnvDuration, 150*time.Second)
	replicas := int(envNumber(t, EnvReplicas, 2))
	rate := envNumber(t, EnvRate, 25)
	const partitions = 4
	drainBounds := DrainBoundsFor(duration)
	ctx, cancel := context.WithTimeout(context.Background(), duration+drainBounds.Max+20*time.Minute)
	defer cancel()

	kspecs, err := ParseProxySpecs("kafka", os.Getenv(envKafkaProxies))
	if err != nil {
		t.Fatal(err)
	}
	cspecs, err := ParseProxySpecs("cassandra", os.Getenv(envCassandraProxies))
	if err != nil {
		t.Fatal(err)
	}
	px, err := NewProxies(append(kspecs, cspecs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	var kafkaProxies, cassandraProxies []string
	for _, s := range kspecs {
		kafkaProxies = append(kafkaProxies, s.Name)
	}
	for _, s := range cspecs {
		cassandraProxies = append(cassandraProxies, s.Name)
	}

	e := setup(t)
	e.kafka.Replication = clusterTopicReplicas
	pfx := prefix(t)
	pipeline := e.ensureTopics(t, pfx, partitions)
	store, keyspace := e.openStore(t, clusterCassandraRF)

	dir := t.TempDir()
	audit := filepath.Join(dir, "sink-audit.log")
	c := e.cluster(t, Config{
		Dir: dir, Prefix: pfx, Partitions: partitions, Replicas: replicas, Edges: 2, Views: 2,
		Brokers: px.Listens(kafkaProxies...),
		Env:     []string{"WATERSHED_REPLICATION=" + strconv.Itoa(clusterTopicReplicas)},
		SinkArgs: []string{"--store", "cassandra", "--cassandra-hosts", strings.Join(px.Listens(cassandraProxies...), ","),
			"--cassandra-keyspace", keyspace, "--sink-audit", audit},
	})
	t.Logf("%d processes ready through %d Kafka and %d Cassandra proxies: %d edges, %d replicas of each of %d groups, %d views; simulating %v at %.0f packages/s",
		len(c.Nodes()), len(kafkaProxies), len(cassandraProxies), len(c.Edges), replicas, len(c.Replicas), len(c.Views), duration, rate)

	front, err := NewFront(nil, c.EdgeURLs()...)
	if err != nil {
		t.Fatal(err)
	}
	// The devices' clocks follow a message clock that closes an hourly
	// window within the run, so that the summaries can be compared.
	mc := NewMessageClock(time.Now(), duration)
	sim, err := simulator.New(simulator.Options{
		IngestURL: c.Edges[0].URL, Secret: []byte(deviceSecret), Devices: simDevices(rate), Rate: rate, Duration: duration,
		Seed: time.Now().UnixNano(), Faults: simulator.DefaultFaultMix(), Concurrency: simConcurrency(rate),
		HTTPClient: &http.Client{Transport: front}, Logger: e.log.With("component", "simulator"), MessageClock: mc.Now,
	})
	if err != nil {
		t.Fatal(err)
	}

	saramaClient, err := sarama.NewClient(e.infra.Brokers, kafkaclient.Config(e.kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer saramaClient.Close()
	f := &faultRun{
		ctx: ctx, flog: &faultLog{start: time.Now(), log: e.log}, infra: e.infra, px: px, c: c, front: front,
		kafkaProxies: kafkaProxies, cassandraProxies: cassandraProxies, kafka: saramaClient,
		rawTopic: pipeline.Raw.Name(), simDone: make(chan struct{}), end: time.Now().Add(duration),
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13)),
	}
	probeDone := make(chan struct{})
	probes := startViewProbes(c, sim, probeDone)

	simStart := time.Now()
	var faults sync.WaitGroup
	faults.Go(f.replicaKills)
	faults.Go(f.kafkaTrack)
	faults.Go(f.cassandraTrack)
	faults.Go(func() { f.at(0.15*float64(duration), f.sigtermReplica) })
	faults.Go(func() { f.at(0.30*float64(duration), f.killEdge) })
	runErr := sim.Run(ctx)
	simTook := time.Since(simStart)
	close(f.simDone)
	faults.Wait() // every started fault cycle finishes, services restarted
	close(probeDone)
	viewProbes := probes.wait()
	if runErr != nil {
		t.Fatalf("simulator: %v", runErr)
	}
	for _, n := range c.Nodes() { // nothing stays held down
		if !n.Running() {
			_ = c.Release(n)
		}
	}
	truth := sim.Truth()
	sum := truth.Summary()
	t.Logf("simulator: %d packages answered, %d given up, %d uncertain attempts, answers %v", sum.Sent, sum.Unsent, sum.Uncertain, sum.Answers)
	// What the fleet offered, beside the rate it was asked for: a report
	// figure, not a check (a throughput, which the machine's load and the
	// outages decide).
	offeredRate := float64(sum.Sent+sum.Unsent) / simTook.Seconds()
	t.Logf("the simulator offered %.1f packages/s at a rate of %.0f", offeredRate, rate)

	// Drain: every process ready, then every group's lag zero. The wait
	// lasts as long as the lag keeps falling (a slow machine drains
	// slowly), within generous bounds. A process that does not recover,
	// or a group that does not drain, fails the test with the lag it saw;
	// the checks below still run, so that the report holds every figure.
	drainStart := time.Now()
	if err := c.WaitReady(ctx, 3*time.Minute); err != nil {
		t.Errorf("processes not ready 3 minutes after the faults: %v", err)
	}
	plan, err := pipeline.Topology.Build()
	if err != nil {
		t.Fatal(err)
	}
	// The lag of the groups the cluster runs (by default all): a group of
	// the pipeline it did not run would never drain.
	var running []string
	for _, g := range plan.Groups() {
		if c.RunsGroup(strings.TrimPrefix(g, pfx)) {
			running = append(running, g)
		}
	}
	lags := func(ctx context.Context) ([]topology.PartitionLag, error) {
		return plan.Lag(ctx, e.kafka, running)
	}
	lagZero := func() error {
		ls, err := lags(ctx)
		if err != nil {
			return err
		}
		return topology.Drained(ls)
	}
	drain, err := WaitDrained(ctx, drainBounds, lags)
	if err != nil {
		t.Errorf("the pipeline did not drain: %v", err)
	}
	drained := time.Since(drainStart)
	undrained := ""
	if !drain.Drained() {
		undrained = fmt.Sprintf(" (the pipeline had not drained: %d records of lag, so these may not be lost)", drain.Total)
	}

	// Answers and acceptance.
	offered, accepted := truth.Offered[202], truth.AsExpected[202]
	if truth.Unexpected != 0 {
		t.Errorf("unexpected answers: %d packages answered other than expected, first: %q", truth.Unexpected, truth.UnexpectedSamples)
	}
	if offered == 0 || float64(accepted) < 0.95*float64(offered) {
		t.Errorf("accepted %d of %d offered valid packages (%.1f%%), want at least 95%%", accepted, offered, pct(accepted, offered))
	}

	// Rows: none lost, none the truth does not have, per device. The sink's
	// audit is read before and after each read of the store, so that rows
	// a sink still catching up writes during the read are told from rows
	// the store lost; while there are such rows, the store is read again.
	var sc StoreCheck
	for round := 1; ; round++ {
		sc, err = CheckStore(ctx, store, truth, audit)
		if err != nil {
			t.Fatal(err)
		}
		if sc.WrittenDuringRead == 0 || round == 3 {
			break
		}
		t.Logf("store read %d: %d missing messages were written while it ran (the sink was still writing); reading again", round, sc.WrittenDuringRead)
	}
	lostIDs, extra, rows, extraDevices := sc.Lost, sc.Extra, sc.Rows, sc.ExtraDevices
	lost := len(lostIDs)
	if lost != 0 {
		t.Errorf("Cassandra: %d messages of accepted packages lost (%d of them written while the store was read)%s", lost, sc.WrittenDuringRead, undrained)
	}
	if extra != 0 {
		t.Errorf("Cassandra: %d rows the truth does not have, on devices %v", extra, extraDevices)
	}
	var lostDiagnosis LostDiagnosis
	if lost != 0 {
		lostDiagnosis, err = DiagnoseLost(ctx, testinfra.CassandraSession(t, e.infra.CassandraHosts, ""), keyspace, gocql.LocalQuorum, lostIDs, sc.Returned, sc.Audit)
		if err != nil {
			t.Errorf("diagnosis of the lost messages: %v", err)
		}
		t.Logf("lost messages: %s", lostDiagnosis)
	}

	// Duplicates where they can appear: in telemetry.normalized after
	// dedupe, and at the sink's write calls.
	norm, err := ReadNormalized(ctx, e.kafka, pipeline.Normalized.Name())
	if err != nil {
		t.Fatal(err)
	}
	normDups, replayed := norm.Duplicated()
	if len(normDups) != 0 {
		t.Errorf("telemetry.normalized: %d message identities came from more than one package (passed dedupe twice), first %v", len(normDups), first(normDups, 5))
	}
	sinkAudit := sc.Audit
	overwritten := sinkAudit.Overwritten()
	if len(overwritten) != 0 {
		t.Errorf("sink: %d message identities written more often than handed to the sink, first %v", len(overwritten), first(overwritten, 5))
	}
	unwritten := sc.Unwritten
	if unwritten != 0 {
		t.Errorf("sink: %d messages of accepted packages were never in an acknowledged write%s", unwritten, undrained)
	}
	// Lost messages that a write the store acknowledged before the read
	// did hold: lost by the store, or by its read path. Their message
	// times (the message clock's) place them among the faults.
	ackedLost := sc.AckedLost
	ackedLostSpan := ""
	if len(ackedLost) > 0 {
		lo, hi := ackedLost[0].TimeMs, ackedLost[0].TimeMs
		for _, id := range ackedLost {
			lo, hi = min(lo, id.TimeMs), max(hi, id.TimeMs)
		}
		at := func(ms uint64) float64 { return mc.Elapsed(time.UnixMilli(int64(ms))).Seconds() }
		ackedLostSpan = fmt.Sprintf("message times %.1fs..%.1fs after the run began", at(lo), at(hi))
		t.Errorf("Cassandra: %d lost messages were in writes the store acknowledged before it was read (%s), first %v", len(ackedLost), ackedLostSpan, first(ackedLost, 5))
	}

	// Dead letters, every record counted: by reason within the truth's
	// bounds, and no copy of an envelope (dead letters are written once,
	// also across replays: docs/reliability.md). Each copy is a mismatch.
	dlqByReason, dlqCopies, dlqSamples, err := DeadLetterCopies(ctx, e.kafka, pipeline.DeadLetters.Name())
	if err != nil {
		t.Fatal(err)
	}
	dlqBad := dlqMismatches(dlqByReason, truth)
	for range dlqCopies {
		dlqBad = append(dlqBad, "a copy of an envelope written before")
	}
	for _, m := range dlqBad {
		t.Errorf("dead-letter topic, counted per record: %s", m)
	}
	if len(dlqBad) > 0 {
		t.Logf("dead-letter error texts by reason: %q", dlqSamples)
	}

	// Hourly summaries: every closed window the truth knows exactly is
	// stored so in the summaries table (the sink writes
	// telemetry.summaries there), no window is stored that is open or that
	// the truth lacks, and an uncertain one holds no more messages than it
	// may. The truth's Settle bounds how far the faults may hold one
	// reading up behind a later one of its partition (MessageClock.Settle).
	sums, err := reconcile.CheckSummaries(ctx, truth, store, reconcile.TimeOptions{
		Partitions: partitions, MayCloseNone: !mc.Closes(duration),
		Summary: simulator.SummaryOptions{Grace: processors.SummaryGrace, Settle: mc.Settle()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sums.MismatchCount != 0 {
		t.Errorf("summaries: %d disagree with the truth (of %d closed windows known exactly, %d uncertain), first: %q%s",
			sums.MismatchCount, sums.Certain, sums.Uncertain, sums.Mismatches, undrained)
	}
	if mc.Closes(duration) && sums.Certain == 0 {
		t.Errorf("summaries: message time reached %v, past the close of the window ending %v, but no closed window is known exactly (%d uncertain)",
			mc.At(duration).Format(time.TimeOnly), mc.Hour.Format(time.TimeOnly), sums.Uncertain)
	}
	t.Logf("summaries: %d closed windows, %d known exactly and %d of them matched, %d uncertain; %d stored; message time %v..%v, settle %v",
		sums.Windows, sums.Certain, sums.Matched, sums.Uncertain, sums.Stored, mc.From.Format(time.TimeOnly), mc.At(duration).Format(time.TimeOnly), mc.Settle())

	// Every view server against the truth, and its probes during the run.
	dlqDistinct := reconcile.DeadLetterCounter(e.kafka, pipeline.DeadLetters.Name())
	var reports []reconcile.Report
	for _, v := range c.Views {
		src := reconcile.Sources{View: &HTTPView{BaseURL: v.URL, Key: viewKey, Ctx: ctx}, Store: store, DeadLetters: dlqDistinct}
		last, err := checkStable(ctx, truth, src)
		if err != nil {
			t.Fatalf("%s: %v", v.Name(), err)
		}
		if !last.OK {
			t.Errorf("%s disagrees with the truth: %d mismatches, first: %q%s", v.Name(), last.MismatchCount, last.Mismatches, undrained)
			if late := norm.LateCopies(); len(late) > 0 {
				t.Logf("telemetry.normalized holds copies too late for device-state to recognise; messages counted twice by device: %v; first copies %+v",
					late, norm.Unrecognised[:min(5, len(norm.Unrecognised))])
			}
		}
		reports = append(reports, last)
	}
	probesTotal, probesFailed := 0, 0
	for i, p := range viewProbes {
		probesTotal += p.total
		probesFailed += p.failed
		if p.total == 0 || float64(p.total-p.failed) < 0.99*float64(p.total) {
			t.Errorf("%s answered %d of %d probes during the run (%.2f%%), want at least 99%%; failures %v",
				c.Views[i].Name(), p.total-p.failed, p.total, pct(p.total-p.failed, p.total), p.errors)
		}
	}

	// Processes that died by themselves, and the faults themselves.
	selfExits := 0
	for _, n := range c.UnexpectedExits() {
		selfExits += n
	}
	if selfExits != 0 {
		t.Errorf("processes that died by themselves: %v", c.UnexpectedExits())
	}
	if err := lagZero(); err != nil {
		t.Errorf("lag after the checks: %v", err)
	}
	for _, msg := range f.flog.errs {
		t.Error(msg)
	}
	kinds := f.flog.counts()
	for _, k := range []string{"sigkill_broker_raw_leader", "sigkill_broker_controller", "kafka_latency", "kafka_reset", "kafka_blackhole",
		"cassandra_latency", "cassandra_reset", "cassandra_blackhole", "sigkill_cassandra_node", "cassandra_full_outage",
		"sigkill_replica", "sigterm_replica", "sigkill_edge"} {
		if kinds[k] == 0 {
			t.Errorf("fault %s was not injected", k)
		}
	}
	if f.edgeInFlight.Load() < 1 {
		t.Errorf("the edge was killed with %d requests in flight, want at least 1", f.edgeInFlight.Load())
	}

	netFaults := 0
	for _, k := range []string{"kafka_latency", "kafka_reset", "kafka_blackhole", "cassandra_latency", "cassandra_reset", "cassandra_blackhole"} {
		netFaults += kinds[k]
	}
	unexpected := truth.Unexpected
	report(t, map[string]any{
		"brokers": clusterKafkaNodes, "broker_sigkills": kinds["sigkill_broker_raw_leader"] + kinds["sigkill_broker_controller"],
		"network_faults": netFaults, "cassandra_nodes": len(cassandraProxies),
		"cassandra_node_kills": kinds["sigkill_cassandra_node"], "cassandra_full_outages": kinds["cassandra_full_outage"],
		"replica_sigkills": kinds["sigkill_replica"], "offered_packages": offered, "accepted_packages": accepted,
		"unexpected_answers": unexpected, "lost_messages": lost, "extra_rows": extra,
		"duplicated_messages":   len(normDups) + len(overwritten),
		"normalized_duplicates": len(normDups), "normalized_replayed_copies": replayed,
		"sink_overwritten": len(overwritten), "sink_unwritten": unwritten, "sink_write_calls": sinkAudit.WriteCalls,
		"lost_after_acknowledged_write": len(ackedLost), "lost_after_acknowledged_write_span": ackedLostSpan,
		"lost_written_during_read": sc.WrittenDuringRead, "lost_diagnosis": lostDiagnosis,
		"dlq_mismatches": len(dlqBad), "dlq_copies": dlqCopies, "dlq_by_reason": dlqByReason,
		"summaries_compared": sums.Certain, "summaries_mismatched": sums.MismatchCount, "summaries_matched": sums.Matched,
		"summaries_uncertain": sums.Uncertain, "summaries_closed_windows": sums.Windows, "summaries_stored": sums.Stored,
		"summaries_mismatches": sums.Mismatches, "summaries_settle_seconds": mc.Settle().Seconds(),
		"message_time_from": mc.From, "message_time_to": mc.At(simTook), "message_time_window_closes": mc.Closes(duration),
		"truth_dlq_by_reason": truth.DeadLetters, "truth_dlq_max_by_reason": truth.DeadLettersMax,
		"view_probes": probesTotal, "view_probes_failed": probesFailed,
		"self_exits": selfExits, "self_exits_by_process": c.UnexpectedExits(),
		"edge_requests_in_flight_at_kill": f.edgeInFlight.Load(),
		"duration_seconds":                simTook.Seconds(), "drain_seconds": drained.Seconds(),
		"drained": drain.Drained(), "lag_at_drain_end": drain.Total, "lagging_at_drain_end": drain.Lagging,
		"normalized_late_copies": len(norm.Unrecognised), "normalized_late_copy_messages_by_device": norm.LateCopies(),
		"rate": rate, "offered_rate": offeredRate, "replicas_per_group": replicas, "processes": len(c.Nodes()), "partitions": partitions,
		"packages_answered": sum.Sent, "packages_unsent": sum.Unsent, "uncertain_attempts": sum.Uncertain,
		"answers": sum.Answers, "attempts": sum.Attempts, "messages": sum.Messages, "rows": rows,
		"normalized_records": norm.Records, "faults_injected": kinds, "fault_events": f.flog.events,
		"views_ok": okViews(reports), "view_mismatches": viewMismatches(reports),
		"front": front.Stats(), "machine": machine(),
	})
}

// pct returns 100*a/b (0 when b is 0).
func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// first returns up to n elements of s.
func first[T any](s []T, n int) []T { return s[:min(n, len(s))] }

// viewProbeCounts is what one view server answered during the run.
type viewProbeCounts struct {
	total, failed int
	errors        map[string]int
}

type viewProbes struct {
	wg     sync.WaitGroup
	counts []viewProbeCounts
}

// startViewProbes asks every view server for a device every 500 ms until
// done closes. An answer is a device state or 404; anything else (503 while
// catching up, an error, a time-out of 2 s) is a failed probe.
func startViewProbes(c *Cluster, sim *simulator.Simulator, done <-chan struct{}) *viewProbes {
	p := &viewProbes{counts: make([]viewProbeCounts, len(c.Views))}
	for i, v := range c.Views {
		p.counts[i].errors = map[string]int{}
		p.wg.Go(func() {
			hv := &HTTPView{BaseURL: v.URL, Key: viewKey, Client: &http.Client{Timeout: 2 * time.Second}}
			devs := sim.Devices()
			for k := 0; ; k++ {
				select {
				case <-done:
					return
				case <-time.After(500 * time.Millisecond):
				}
				_, _, err := hv.Get(devs[k%len(devs)].ID)
				p.counts[i].total++
				if err != nil {
					p.counts[i].failed++
					msg := err.Error()
					if len(p.counts[i].errors) < 10 {
						p.counts[i].errors[msg[:min(len(msg), 120)]]++
					}
				}
			}
		})
	}
	return p
}

func (p *viewProbes) wait() []viewProbeCounts {
	p.wg.Wait()
	return p.counts
}

// faultRun injects the faults of TestIntegrationFaultsCluster.
type faultRun struct {
	ctx                            context.Context
	flog                           *faultLog
	infra                          *Infra
	px                             *Proxies
	c                              *Cluster
	front                          *Front
	kafka                          sarama.Client
	kafkaProxies, cassandraProxies []string
	rawTopic                       string
	simDone                        chan struct{}
	end                            time.Time // when the simulator stops
	edgeInFlight                   atomic.Int64

	rngMu sync.Mutex
	rng   *rand.Rand
}

// running reports whether the simulator still runs.
func (f *faultRun) running() bool {
	select {
	case <-f.simDone:
		return false
	default:
		return true
	}
}

// another reports whether a further fault cycle starts: the first always
// does (every fault is injected at least once); a later one only while the
// simulator will run for most of it, so that a run ends soon after its
// duration.
func (f *faultRun) another(cycle int, length time.Duration) bool {
	return cycle == 0 || (f.running() && time.Until(f.end) > length*2/3)
}

// sleep waits d, or less if the test's context ends.
func (f *faultRun) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-f.ctx.Done():
	}
}

// at runs fn after d unless the simulator finished first.
func (f *faultRun) at(d float64, fn func()) {
	select {
	case <-time.After(time.Duration(d)):
		fn()
	case <-f.simDone:
	case <-f.ctx.Done():
	}
}

func (f *faultRun) intn(n int) int {
	f.rngMu.Lock()
	defer f.rngMu.Unlock()
	return f.rng.IntN(n)
}

// toxic puts a toxic on the named proxies for d.
func (f *faultRun) toxic(kind string, t Toxic, d time.Duration, names ...string) {
	remove, err := f.px.Add(t, names...)
	if err != nil {
		f.flog.fail("%s: %v", kind, err)
		return
	}
	f.flog.add(kind, strings.Join(names, ","), fmt.Sprintf("%s for %v", t.Type, d))
	f.sleep(d)
	if err := remove(); err != nil {
		f.flog.fail("%s: %v", kind, err)
	}
}

// killBroker kills Kafka node id with SIGKILL, keeps it down for down, and
// resumes it on its data.
func (f *faultRun) killBroker(kind string, id int32, down time.Duration, why string) {
	name := fmt.Sprintf("kafka-%d", id)
	if err := f.infra.Kill(f.ctx, name); err != nil {
		f.flog.fail("kill %s: %v", name, err)
		return
	}
	f.flog.add(kind, name, why)
	f.sleep(down)
	start := time.Now()
	if err := f.infra.Resume(f.ctx, name); err != nil {
		f.flog.fail("resume %s: %v", name, err)
		return
	}
	f.flog.add("broker_resumed", name, fmt.Sprintf("answering again after %.1fs", time.Since(start).Seconds()))
}

// rawLeader returns the node leading partition part of the raw topic.
func (f *faultRun) rawLeader(part int32) (int32, error) {
	if err := f.kafka.RefreshMetadata(f.rawTopic); err != nil {
		return 0, err
	}
	b, err := f.kafka.Leader(f.rawTopic, part)
	if err != nil {
		return 0, err
	}
	return b.ID(), nil
}

// kafkaTrack cycles through the Kafka faults until the simulator is done:
// the raw leader killed, latency, resets, the active controller killed,
// one broker blackholed.
func (f *faultRun) kafkaTrack() {
	f.sleep(10 * time.Second)
	for cycle := 0; f.another(cycle, 2*time.Minute); cycle++ {
		part := int32(cycle % 4)
		if id, err := f.rawLeader(part); err != nil {
			f.flog.fail("leader of %s/%d: %v", f.rawTopic, part, err)
		} else {
			f.killBroker("sigkill_broker_raw_leader", id, 10*time.Second, fmt.Sprintf("leader of %s/%d", f.rawTopic, part))
		}
		f.sleep(5 * time.Second)
		f.toxic("kafka_latency", Latency(400, 100), 8*time.Second, f.kafkaProxies...)
		f.sleep(5 * time.Second)
		f.toxic("kafka_reset", Reset(), 4*time.Second, f.kafkaProxies...)
		f.sleep(5 * time.Second)
		ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
		id, err := probe.KafkaController(ctx, f.infra.Brokers)
		cancel()
		if err != nil {
			f.flog.fail("active controller: %v", err)
		} else {
			f.killBroker("sigkill_broker_controller", id, 10*time.Second, "active controller")
		}
		f.sleep(5 * time.Second)
		f.toxic("kafka_blackhole", Blackhole(), 8*time.Second, f.kafkaProxies[f.intn(len(f.kafkaProxies))])
		f.sleep(10 * time.Second)
	}
}

// cassandraTrack cycles through the Cassandra faults until the simulator
// is done: latency, resets, one node killed for 20 s (the cluster answers,
// LOCAL_QUORUM writes fail), a blackhole, then both nodes stopped for 20 s.
func (f *faultRun) cassandraTrack() {
	f.sleep(20 * time.Second)
	for cycle := 0; f.another(cycle, 3*time.Minute); cycle++ {
		f.toxic("cassandra_latency", Latency(300, 100), 6*time.Second, f.cassandraProxies...)
		f.sleep(4 * time.Second)
		f.toxic("cassandra_reset", Reset(), 3*time.Second, f.cassandraProxies...)
		f.sleep(4 * time.Second)
		node := fmt.Sprintf("cassandra-%d", 2-cycle%2)
		if err := f.infra.Kill(f.ctx, node); err != nil {
			f.flog.fail("kill %s: %v", node, err)
		} else {
			f.flog.add("sigkill_cassandra_node", node, "down 20s")
			f.sleep(20 * time.Second)
			start := time.Now()
			if err := f.infra.Resume(f.ctx, node); err != nil {
				f.flog.fail("resume %s: %v", node, err)
			}
			f.flog.add("cassandra_node_resumed", node, fmt.Sprintf("answering again after %.1fs", time.Since(start).Seconds()))
		}
		f.sleep(8 * time.Second)
		f.toxic("cassandra_blackhole", Blackhole(), 6*time.Second, f.cassandraProxies...)
		f.sleep(8 * time.Second)
		if err := f.infra.Stop(f.ctx, "cassandra-1"); err != nil {
			f.flog.fail("stop cassandra-1: %v", err)
		}
		if err := f.infra.Stop(f.ctx, "cassandra-2"); err != nil {
			f.flog.fail("stop cassandra-2: %v", err)
		}
		f.flog.add("cassandra_full_outage", "cassandra-1,cassandra-2", "both stopped for 20s")
		f.sleep(20 * time.Second)
		start := time.Now()
		for _, node := range []string{"cassandra-1", "cassandra-2"} {
			if err := f.infra.Resume(f.ctx, node); err != nil {
				f.flog.fail("resume %s: %v", node, err)
			}
		}
		f.flog.add("cassandra_resumed", "cassandra-1,cassandra-2", fmt.Sprintf("answering again after %.1fs", time.Since(start).Seconds()))
		f.sleep(10 * time.Second)
	}
}

// pick returns a running node of nodes that no other fault holds, held.
func (f *faultRun) pick(nodes []*Node) *Node {
	f.rngMu.Lock()
	perm := f.rng.Perm(len(nodes))
	f.rngMu.Unlock()
	for _, i := range perm {
		if n := nodes[i]; n.Running() && f.c.TryHold(n) {
			return n
		}
	}
	return nil
}

// replicaKills kills a random replica with SIGKILL every 4-7 s and
// restarts it 1-3 s later.
func (f *faultRun) replicaKills() {
	for f.running() {
		f.sleep(4*time.Second + time.Duration(f.intn(3000))*time.Millisecond)
		if !f.running() {
			return
		}
		n := f.pick(f.c.AllReplicas())
		if n == nil {
			continue
		}
		if err := n.Kill(); err != nil {
			f.flog.fail("kill %s: %v", n.Name(), err)
		}
		f.flog.add("sigkill_replica", n.Name(), "")
		f.sleep(time.Second + time.Duration(f.intn(2000))*time.Millisecond)
		if err := f.c.Release(n); err != nil {
			f.flog.fail("restart %s: %v", n.Name(), err)
		}
	}
}

// sigtermReplica stops a replica with SIGTERM: it must exit 0 in time.
func (f *faultRun) sigtermReplica() {
	n := f.pick(f.c.AllReplicas())
	if n == nil {
		f.flog.fail("no replica to stop with SIGTERM")
		return
	}
	ex, took, err := n.Terminate(60 * time.Second)
	f.flog.add("sigterm_replica", n.Name(), fmt.Sprintf("%s after %.1fs", ex, took.Seconds()))
	if err != nil {
		f.flog.fail("SIGTERM of %s: %v", n.Name(), err)
	} else if ex.Code != 0 {
		// The log goes with the test's folder: its end is kept here.
		f.flog.fail("SIGTERM of %s: %s, want exit 0 (log %s); its last lines:\n%s", n.Name(), ex, n.LogPath(),
			strings.Join(lastLines(n.LogPath(), 15), "\n"))
	}
	f.sleep(2 * time.Second)
	if err := f.c.Release(n); err != nil {
		f.flog.fail("restart %s: %v", n.Name(), err)
	}
}

// killEdge kills the second edge with SIGKILL while requests wait on it:
// 1.5 s of latency towards the brokers holds every acknowledged produce,
// so requests pile up; the kill comes once some are in flight, and the
// requests in flight at that moment that then lost their answer are
// counted (the test asserts at least one).
func (f *faultRun) killEdge() {
	n := f.c.Edges[1]
	for !f.c.TryHold(n) {
		f.sleep(50 * time.Millisecond)
	}
	remove, err := f.px.Add(Latency(1500, 0), f.kafkaProxies...)
	if err != nil {
		f.flog.fail("edge kill: %v", err)
		_ = f.c.Release(n)
		return
	}
	_ = Poll(f.ctx, 30*time.Second, 5*time.Millisecond, func() error {
		if f.front.InFlight(1) < 2 {
			return fmt.Errorf("fewer than 2 requests in flight")
		}
		return nil
	})
	w := f.front.Watch(1)
	if err := n.Kill(); err != nil {
		f.flog.fail("kill %s: %v", n.Name(), err)
	}
	if err := remove(); err != nil {
		f.flog.fail("edge kill: %v", err)
	}
	f.sleep(2 * time.Second)
	f.edgeInFlight.Store(int64(f.front.Failed(w)))
	f.flog.add("sigkill_edge", n.Name(), fmt.Sprintf("%d requests in flight lost their answer", f.front.Failed(w)))
	f.sleep(time.Second)
	if err := f.c.Release(n); err != nil {
		f.flog.fail("restart %s: %v", n.Name(), err)
	}
}

// simConcurrency bounds the simulator's packages in flight: room for a
// second's worth at the rate, since a package waiting to retry through an
// outage holds its place (a tighter bound made the full size's 200 packages
// a second 71).
func simConcurrency(rate float64) int { return max(8, int(rate)) }

// simDevices sizes the fleet: 60 devices, or one per package a second at
// higher rates. The edge lets a device hold two packages in flight, so 60
// devices at 200 packages a second (3.3 each) were shed with 429s whenever
// answers slowed (16,277 of them in a 10-minute run, 120 offered a second).
func simDevices(rate float64) int { return max(60, int(rate)) }
