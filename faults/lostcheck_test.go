package faults

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
)

// memStore is a sinks.Store in memory whose Readings calls afterRead
// with the device once it has taken the rows it returns.
type memStore struct {
	mu        sync.Mutex
	rows      map[uint64][]records.Reading
	afterRead func(dev uint64)
}

func (m *memStore) Write(_ context.Context, rs []records.Reading) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rs {
		m.rows[r.DeviceID] = append(m.rows[r.DeviceID], r)
	}
	return nil
}

func (m *memStore) Readings(_ context.Context, q sinks.Query) ([]records.Reading, error) {
	m.mu.Lock()
	rs := slices.Clone(m.rows[q.DeviceID])
	m.mu.Unlock()
	if m.afterRead != nil {
		m.afterRead(q.DeviceID)
	}
	return rs, nil
}

func (m *memStore) Close() error { return nil }

// sinkWrite writes rows to st and records them in audit, as the sink does.
func sinkWrite(t *testing.T, st sinks.Store, audit *sinks.Audit, rows []records.Reading) {
	t.Helper()
	if err := st.Write(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	if err := audit.Wrote(rows); err != nil {
		t.Fatal(err)
	}
}

// TestCheckStoreTellsLateWritesFromLostOnes: a sink still writing while
// the check reads the store (the pipeline had not drained, as in the first
// full-size run) acknowledges rows after the store was read. Those are
// missing from the read, and in the audit by the time the check reads it,
// but the store did not lose them: they must not count as lost after an
// acknowledged write. A row acknowledged before the read and missing is.
func TestCheckStoreTellsLateWritesFromLostOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	audit := sinks.NewAudit(f)

	row := func(dev, ms uint64) records.Reading {
		return records.Reading{DeviceID: dev, TimeMs: ms, ContentCRC: uint32(ms), Type: protocol.TypeBattery}
	}
	st := &memStore{rows: map[uint64][]records.Reading{}}
	truth := simulator.Truth{Devices: map[uint64]*simulator.DeviceTruth{}}
	var all []records.Reading
	for dev := uint64(1); dev <= 2; dev++ {
		truth.Devices[dev] = &simulator.DeviceTruth{ID: dev, Stored: map[simulator.Identity]simulator.StoredMessage{}}
		for ms := uint64(1000); ms < 1010; ms++ {
			r := row(dev, ms)
			all = append(all, r)
			truth.Devices[dev].Stored[simulator.Identity{DeviceID: dev, TimeMs: ms, ContentCRC: uint32(ms)}] = simulator.StoredMessage{}
		}
	}
	// Written and acknowledged before the check: all but device 1's last
	// three, one of which the store then loses.
	var early, late []records.Reading
	for _, r := range all {
		if r.DeviceID == 1 && r.TimeMs >= 1007 {
			late = append(late, r)
		} else {
			early = append(early, r)
		}
	}
	sinkWrite(t, st, audit, early)
	st.mu.Lock()
	st.rows[2] = slices.DeleteFunc(st.rows[2], func(r records.Reading) bool { return r.TimeMs == 1004 })
	st.mu.Unlock()
	// The sink catches up right after the check has read device 1.
	st.afterRead = func(dev uint64) {
		if dev == 1 {
			sinkWrite(t, st, audit, late)
		}
	}
	c, err := CheckStore(context.Background(), st, truth, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AckedLost) != 1 || c.AckedLost[0] != (simulator.Identity{DeviceID: 2, TimeMs: 1004, ContentCRC: 1004}) {
		t.Errorf("lost after an acknowledged write: %v, want only device 2's message at 1004 (written before the read, then lost)", c.AckedLost)
	}
	if c.Unwritten != 0 {
		t.Errorf("unwritten %d, want 0", c.Unwritten)
	}
	if got := len(c.Lost) - len(c.AckedLost); got != c.WrittenDuringRead {
		t.Errorf("written during the read %d, want the %d lost ones not acknowledged before it", c.WrittenDuringRead, got)
	}
}

// TestAnalyzeLostRuns: missing messages group per device into runs that
// no returned row interrupts, largest first, with the returned rows
// around each; the audit tells those in acknowledged writes.
func TestAnalyzeLostRuns(t *testing.T) {
	id := func(dev, ms uint64) simulator.Identity {
		return simulator.Identity{DeviceID: dev, TimeMs: ms, ContentCRC: 1}
	}
	returned := map[uint64][]simulator.Identity{
		1: {id(1, 10), id(1, 20), id(1, 60)},
		2: {},
	}
	// Device 1: 30, 40, 50 between 20 and 60 (one run), 5 before 10 (a
	// run of one); device 2: everything, 4 messages (one run).
	lost := []simulator.Identity{id(1, 50), id(1, 30), id(1, 5), id(1, 40), id(2, 1), id(2, 2), id(2, 3), id(2, 4)}
	audit := SinkAudit{Written: map[simulator.Identity]int{id(1, 30): 1, id(2, 4): 2}}
	d := AnalyzeLost(lost, returned, audit)
	if d.Lost != 8 || d.InAckedWrite != 2 || d.ByDevice[1] != 4 || d.ByDevice[2] != 4 || d.RunCount != 3 {
		t.Fatalf("diagnosis %+v: want 8 lost, 2 in acknowledged writes, 4 and 4 by device, 3 runs", d)
	}
	want := []LostRun{
		{DeviceID: 2, Count: 4, FromMs: 1, ToMs: 4},
		{DeviceID: 1, Count: 3, FromMs: 30, ToMs: 50, BeforeMs: 20, AfterMs: 60},
		{DeviceID: 1, Count: 1, FromMs: 5, ToMs: 5, AfterMs: 10},
	}
	if !slices.Equal(d.Runs, want) {
		t.Errorf("runs %+v, want %+v", d.Runs, want)
	}
}
