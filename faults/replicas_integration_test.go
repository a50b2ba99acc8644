//go:build integration

package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/internal/reconcile"
	"github.com/watershed-io/watershed/simulator"
)

// TestIntegrationFaultsReplicas is issue 6's test: two edges, Replicas
// replicas of every processor group writing to Cassandra, and two view
// servers, as separate processes; the simulator plays a fleet with every
// fault kind for Duration while replicas are killed with SIGKILL every few
// seconds and restarted, one is stopped with SIGTERM, an edge is killed
// with requests in flight, the Kafka broker is restarted and Cassandra is
// stopped for 20 seconds. After the pipeline drained, every message of
// every accepted package is in Cassandra exactly once, every view server
// agrees with the ground truth, the dead-letter topic holds exactly the
// injected bad records, and the consumer lag is zero.
func TestIntegrationFaultsReplicas(t *testing.T) {
	duration := envDuration(t, EnvDuration, 75*time.Second)
	replicas := int(envNumber(t, EnvReplicas, 2))
	rate := envNumber(t, EnvRate, 25)
	const partitions = 4
	e := setup(t)
	pfx := prefix(t)
	pipeline := e.ensureTopics(t, pfx, partitions)
	store, keyspace := e.openStore(t)
	c := e.cluster(t, Config{
		Prefix: pfx, Partitions: partitions, Replicas: replicas, Edges: 2, Views: 2,
		SinkArgs: []string{"--store", "cassandra", "--cassandra-hosts", joinHosts(e.infra.CassandraHosts), "--cassandra-keyspace", keyspace},
	})
	t.Logf("%d processes ready: %d edges, %d replicas of each of %d groups, %d views; simulating %v at %.0f packages/s",
		len(c.Nodes()), len(c.Edges), replicas, len(c.Replicas), len(c.Views), duration, rate)

	front, err := NewFront(nil, c.EdgeURLs()...)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := simulator.New(simulator.Options{
		IngestURL: c.Edges[0].URL, Secret: []byte(deviceSecret), Devices: 60, Rate: rate, Duration: duration,
		Seed: time.Now().UnixNano(), Faults: simulator.DefaultFaultMix(), Concurrency: 8,
		HTTPClient: &http.Client{Transport: front}, Logger: e.log.With("component", "simulator"),
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), duration+15*time.Minute)
	defer cancel()
	flog := &faultLog{start: time.Now(), log: e.log}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 6))
	var rngMu sync.Mutex
	pick := func(nodes []*Node) *Node {
		rngMu.Lock()
		defer rngMu.Unlock()
		for _, i := range rng.Perm(len(nodes)) {
			if n := nodes[i]; n.Running() && c.TryHold(n) {
				return n
			}
		}
		return nil
	}
	simDone := make(chan struct{})
	var faults sync.WaitGroup
	// SIGKILL of a random replica every few seconds, restarted 1-3 s later.
	faults.Add(1)
	go func() {
		defer faults.Done()
		for {
			select {
			case <-simDone:
				return
			case <-time.After(4*time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))):
			}
			n := pick(c.AllReplicas())
			if n == nil {
				continue
			}
			if err := n.Kill(); err != nil {
				flog.fail("kill %s: %v", n.Name(), err)
			}
			flog.add("sigkill_replica", n.Name(), "")
			time.Sleep(time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))) // the replica stays down a while
			if err := c.Release(n); err != nil {
				flog.fail("restart %s: %v", n.Name(), err)
			}
		}
	}()
	at := func(frac float64, f func()) {
		faults.Add(1)
		go func() {
			defer faults.Done()
			select {
			case <-time.After(time.Duration(frac * float64(duration))):
				f()
			case <-ctx.Done():
			}
		}()
	}
	var termExit Exit
	var termTook time.Duration
	at(0.15, func() {
		n := pick(c.AllReplicas())
		if n == nil {
			flog.fail("no replica to stop with SIGTERM")
			return
		}
		ex, took, err := n.Terminate(60 * time.Second)
		termExit, termTook = ex, took
		flog.add("sigterm_replica", n.Name(), fmt.Sprintf("%s after %.1fs", ex, took.Seconds()))
		if err != nil {
			flog.fail("SIGTERM of %s: %v", n.Name(), err)
		} else if ex.Code != 0 {
			flog.fail("SIGTERM of %s: %s, want exit 0 (log %s)", n.Name(), ex, n.LogPath())
		}
		time.Sleep(2 * time.Second)
		if err := c.Release(n); err != nil {
			flog.fail("restart %s: %v", n.Name(), err)
		}
	})
	at(0.30, func() {
		n := c.Edges[1]
		for !c.TryHold(n) {
			time.Sleep(50 * time.Millisecond)
		}
		inflight := 0
		_ = Poll(ctx, 20*time.Second, 5*time.Millisecond, func() error {
			if inflight = front.InFlight(1); inflight == 0 {
				return fmt.Errorf("no request in flight")
			}
			return nil
		})
		if err := n.Kill(); err != nil {
			flog.fail("kill %s: %v", n.Name(), err)
		}
		flog.add("sigkill_edge", n.Name(), fmt.Sprintf("%d requests in flight", inflight))
		time.Sleep(3 * time.Second)
		if err := c.Release(n); err != nil {
			flog.fail("restart %s: %v", n.Name(), err)
		}
	})
	at(0.45, func() {
		start := time.Now()
		if err := e.infra.Restart(ctx, "kafka"); err != nil {
			flog.fail("restart Kafka: %v", err)
		}
		flog.add("kafka_restart", "kafka", fmt.Sprintf("broker answering again after %.1fs", time.Since(start).Seconds()))
	})
	at(0.60, func() {
		start := time.Now()
		if err := e.infra.Stop(ctx, "cassandra"); err != nil {
			flog.fail("stop Cassandra: %v", err)
		}
		time.Sleep(20 * time.Second) // the outage itself
		if err := e.infra.Resume(ctx, "cassandra"); err != nil {
			flog.fail("resume Cassandra: %v", err)
		}
		flog.add("cassandra_outage", "cassandra", fmt.Sprintf("down 20s, answering again after %.1fs", time.Since(start).Seconds()))
	})

	// The view servers keep answering meanwhile.
	probeDone := make(chan struct{})
	viewAnswers := make([]map[string]int, len(c.Views))
	var probes sync.WaitGroup
	for i, v := range c.Views {
		viewAnswers[i] = map[string]int{}
		probes.Add(1)
		go func() {
			defer probes.Done()
			hv := &HTTPView{BaseURL: v.URL, Key: viewKey, Client: &http.Client{Timeout: 2 * time.Second}}
			devs := sim.Devices()
			for k := 0; ; k++ {
				select {
				case <-probeDone:
					return
				case <-time.After(500 * time.Millisecond):
				}
				_, _, err := hv.Get(devs[k%len(devs)].ID)
				key := "answered"
				if err != nil {
					key = "error"
				}
				viewAnswers[i][key]++
			}
		}()
	}

	simStart := time.Now()
	runErr := sim.Run(ctx)
	simTook := time.Since(simStart)
	close(simDone)
	faults.Wait()
	close(probeDone)
	probes.Wait()
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

	// Drain: every process ready, then every group's lag zero.
	drainStart := time.Now()
	if err := c.WaitReady(ctx, 5*time.Minute); err != nil {
		t.Fatalf("processes not ready after the faults: %v", err)
	}
	lagZero := func() error {
		lags, err := pipeline.Topology.Lag(ctx, e.kafka, nil)
		if err != nil {
			return err
		}
		for _, l := range lags {
			if l.Lag != 0 {
				return fmt.Errorf("group %s lags %d on %s/%d", l.Group, l.Lag, l.Topic, l.Partition)
			}
		}
		return nil
	}
	if err := Poll(ctx, 5*time.Minute, 500*time.Millisecond, lagZero); err != nil {
		t.Fatalf("the pipeline did not drain: %v", err)
	}
	drained := time.Since(drainStart)

	// Every view server against the truth, the store and the dead-letter
	// topic. The views follow the device-state table a moment behind.
	dlq := reconcile.DeadLetterCounter(e.kafka, pipeline.DeadLetters.Name())
	var reports []reconcile.Report
	for _, v := range c.Views {
		src := reconcile.Sources{View: &HTTPView{BaseURL: v.URL, Key: viewKey, Ctx: ctx}, Store: store, DeadLetters: dlq}
		last, err := checkStable(ctx, truth, src)
		if err != nil {
			t.Fatalf("%s: %v", v.Name(), err)
		}
		if !last.OK {
			t.Errorf("%s disagrees with the truth: %d mismatches, first: %q", v.Name(), last.MismatchCount, last.Mismatches)
		}
		reports = append(reports, last)
	}
	// The dead-letter topic against the injected bad records, reason by
	// reason (within bounds where attempts were uncertain).
	byReason, err := dlq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dlqMismatches := dlqMismatches(byReason, truth)
	for _, m := range dlqMismatches {
		t.Errorf("dead-letter topic: %s", m)
	}
	// Exactly once in Cassandra, counted by identity.
	lostIDs, extra, rows, _, err := countRows(ctx, store, truth)
	lost := len(lostIDs)
	if err != nil {
		t.Fatal(err)
	}
	if lost != 0 {
		t.Errorf("Cassandra: %d messages of accepted packages lost", lost)
	}
	if err := lagZero(); err != nil {
		t.Errorf("lag after the checks: %v", err)
	}
	for _, msg := range flog.errs {
		t.Error(msg)
	}
	kinds := flog.counts()
	for _, k := range []string{"sigkill_replica", "sigterm_replica", "sigkill_edge", "kafka_restart", "cassandra_outage"} {
		if kinds[k] == 0 {
			t.Errorf("fault %s was not injected", k)
		}
	}
	if termExit.Code != 0 || termTook <= 0 {
		t.Errorf("SIGTERM: %s after %v, want exit 0", termExit, termTook)
	}

	report(t, map[string]any{
		"duration_s": simTook.Seconds(), "drain_s": drained.Seconds(), "rate": rate, "replicas_per_group": replicas,
		"processes": len(c.Nodes()), "partitions": partitions,
		"packages_answered": sum.Sent, "packages_unsent": sum.Unsent, "uncertain_attempts": sum.Uncertain,
		"answers": sum.Answers, "attempts": sum.Attempts,
		"messages": sum.Messages, "messages_max": sum.Max.Messages, "duplicates": sum.Duplicates,
		"invalid": sum.Invalid, "packages_rejected": sum.PackagesRejected, "dead_letters": sum.DeadLetters,
		"simulated_faults": sum.Faults,
		"rows":             rows, "lost": lost, "rows_from_uncertain_packages": extra,
		"faults_injected": kinds, "fault_events": flog.events,
		"sigterm_exit": termExit.String(), "sigterm_seconds": termTook.Seconds(),
		"unexpected_exits": c.UnexpectedExits(), "front": front.Stats(), "view_probes": viewAnswers,
		"views_ok": okViews(reports), "view_mismatches": viewMismatches(reports),
		"dead_letters_by_reason": byReason, "truth_dead_letters_by_reason": truth.DeadLetters,
		"dead_letter_mismatches": dlqMismatches,
		"machine":                machine(),
	})
}
