//go:build integration

package faults

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/testinfra"
)

// TestIntegrationStoreKeepsAcknowledgedWrites isolates the store from the
// pipeline: the Cassandra faults of the cluster fault test (a node
// SIGKILLed and resumed, both nodes stopped and resumed) against a writer
// that retries every Write until the store acknowledges it, as the sink
// does, on the cluster's keyspace (replication 2, LOCAL_QUORUM). Each
// device's day holds more rows than a driver page, as at full size. Then
// every acknowledged row must read back at LOCAL_QUORUM, and (Diagnose)
// from each node alone: a row missing there is lost by Cassandra or by
// the read path, not by the pipeline.
func TestIntegrationStoreKeepsAcknowledgedWrites(t *testing.T) {
	if os.Getenv(envInfraMode) != "cluster" {
		t.Fatalf("%s is not 'cluster': this test needs the cluster of `scripts/infra/infra.sh start cluster`; run it with `make faults-ci`", envInfraMode)
	}
	e := setup(t)
	store, keyspace := e.openStore(t, clusterCassandraRF)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	const devices, perWrite = 3, 300
	var (
		mu    sync.Mutex
		acked []records.Reading
		fails int
	)
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		base := uint64(time.Now().UnixMilli()) - 3_600_000
		for n := uint64(0); ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			rows := make([]records.Reading, 0, devices*perWrite)
			for d := uint64(1); d <= devices; d++ {
				for i := range uint64(perWrite) {
					ms := base + (n*perWrite+i)*3
					rows = append(rows, records.Reading{DeviceID: 9000 + d, TimeMs: ms, ContentCRC: uint32(ms*d) ^ 0x5bd1e995,
						Type: protocol.TypeBattery, BatteryV: 12})
				}
			}
			for { // as the sink: the same rows until acknowledged
				wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
				err := store.Write(wctx, rows)
				wcancel()
				if err == nil {
					break
				}
				mu.Lock()
				fails++
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			mu.Lock()
			acked = append(acked, rows...)
			mu.Unlock()
		}
	})
	progress := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		t.Logf("%s: %d rows acknowledged, %d failed writes", what, len(acked), fails)
	}
	// Each step: what to do to which nodes, then a pause with writes.
	steps := []struct {
		op    func(context.Context, string) error
		name  string
		nodes []string
		pause time.Duration
	}{
		{nil, "writes alone", nil, 10 * time.Second},
		{e.infra.Kill, "kill", []string{"cassandra-2"}, 10 * time.Second},
		{e.infra.Resume, "resume", []string{"cassandra-2"}, 10 * time.Second},
		{e.infra.Stop, "stop", []string{"cassandra-1", "cassandra-2"}, 5 * time.Second},
		{e.infra.Resume, "resume", []string{"cassandra-1", "cassandra-2"}, 10 * time.Second},
		{e.infra.Kill, "kill", []string{"cassandra-1"}, 10 * time.Second},
		{e.infra.Resume, "resume", []string{"cassandra-1"}, 15 * time.Second},
	}
	for _, st := range steps {
		for _, n := range st.nodes {
			if err := st.op(ctx, n); err != nil {
				t.Errorf("%s %s: %v", st.name, n, err)
			}
		}
		time.Sleep(st.pause)
		progress(strings.TrimSpace(fmt.Sprintf("after %s %s", st.name, strings.Join(st.nodes, " "))))
	}
	close(stop)
	writer.Wait()
	progress("at the end")

	truth := map[uint64]map[simulator.Identity]bool{}
	for _, r := range acked {
		if truth[r.DeviceID] == nil {
			truth[r.DeviceID] = map[simulator.Identity]bool{}
		}
		truth[r.DeviceID][simulator.Identity{DeviceID: r.DeviceID, TimeMs: r.TimeMs, ContentCRC: r.ContentCRC}] = true
	}
	for dev, want := range truth {
		if len(want) <= 5000 {
			t.Errorf("device %d: %d rows acknowledged, want more than a driver page (5,000)", dev, len(want))
		}
		got, err := store.Readings(ctx, sinks.Query{DeviceID: dev})
		if err != nil {
			t.Fatalf("read back device %d: %v", dev, err)
		}
		seen := map[simulator.Identity]bool{}
		returned := map[uint64][]simulator.Identity{}
		for _, r := range got {
			id := simulator.Identity{DeviceID: r.DeviceID, TimeMs: r.TimeMs, ContentCRC: r.ContentCRC}
			seen[id] = true
			returned[dev] = append(returned[dev], id)
		}
		var lost []simulator.Identity
		for id := range want {
			if !seen[id] {
				lost = append(lost, id)
			}
		}
		if len(lost) > 0 {
			d, err := DiagnoseLost(ctx, testinfra.CassandraSession(t, e.infra.CassandraHosts, ""), keyspace, gocql.LocalQuorum, lost, returned, SinkAudit{})
			if err != nil {
				t.Errorf("diagnose: %v", err)
			}
			t.Errorf("device %d: %d of %d acknowledged rows not read back at LOCAL_QUORUM: %s", dev, len(lost), len(want), fmt.Sprint(d))
		}
	}

	// The diagnosis itself, on rows whose fate is known: one acknowledged
	// (Cassandra holds it), one never written, on a day of its own.
	held := acked[len(acked)/2]
	heldID := simulator.Identity{DeviceID: held.DeviceID, TimeMs: held.TimeMs, ContentCRC: held.ContentCRC}
	never := simulator.Identity{DeviceID: held.DeviceID, TimeMs: held.TimeMs + 3*cassandra.DayMs, ContentCRC: 1}
	d, err := DiagnoseLost(ctx, testinfra.CassandraSession(t, e.infra.CassandraHosts, ""), keyspace, gocql.LocalQuorum,
		[]simulator.Identity{heldID, never}, nil, SinkAudit{Written: map[simulator.Identity]int{heldID: 1}})
	if err != nil {
		t.Fatalf("diagnose: %v", err)
	}
	if d.Looked != 2 || d.FoundByKey != 1 || d.FoundAtAll != 1 || d.DaysMissing != 1 || d.InAckedWrite != 1 {
		t.Errorf("diagnosis of a held row and a row never written: %s; want 2 looked up, 1 found at LOCAL_QUORUM and at ALL, 1 on a day devices_days lacks, 1 in an acknowledged write", d)
	}
}
