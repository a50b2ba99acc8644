package reconcile_test

import (
	"context"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/internal/reconcile"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
)

type fakeView map[uint64]records.DeviceState

func (v fakeView) Get(id uint64) (records.DeviceState, bool, error) {
	st, ok := v[id]
	return st, ok, nil
}

type fakeStore struct{ rows []records.Reading }

func (s *fakeStore) Write(context.Context, []records.Reading) error { return nil }
func (s *fakeStore) Close() error                                   { return nil }
func (s *fakeStore) Readings(_ context.Context, q sinks.Query) ([]records.Reading, error) {
	var out []records.Reading
	for _, r := range s.rows {
		if r.DeviceID == q.DeviceID {
			out = append(out, r)
		}
	}
	return out, nil
}

// fixture is one device with two stored messages, one duplicate, one
// invalid message (dead-lettered as out_of_range), and the pipeline's
// matching answers.
func fixture() (simulator.Truth, fakeView, *fakeStore, map[string]int) {
	gps := protocol.Message{Type: protocol.TypeGPS, TimeMs: 2000, LatE7: 10, LonE7: 20}
	eng := protocol.Message{Type: protocol.TypeEngine, TimeMs: 1000, RPM: 900, CoolantRaw: 130}
	id1 := simulator.Identity{DeviceID: 7, TimeMs: 2000, ContentCRC: 11}
	id2 := simulator.Identity{DeviceID: 7, TimeMs: 1000, ContentCRC: 22}
	counts := simulator.Counts{Messages: 2, Duplicates: 1, Invalid: 1, DeadLetters: 1}
	dev := &simulator.DeviceTruth{
		ID: 7, Counts: counts, Max: counts, LastSeenMs: 2000,
		Latest: map[protocol.MsgType]simulator.Reading{
			protocol.TypeGPS:    {TimeMs: 2000, Message: gps},
			protocol.TypeEngine: {TimeMs: 1000, Message: eng},
		},
		Stored: map[simulator.Identity]simulator.StoredMessage{
			id1: {Identity: id1, Type: protocol.TypeGPS, Message: gps},
			id2: {Identity: id2, Type: protocol.TypeEngine, Message: eng},
		},
	}
	truth := simulator.Truth{
		Totals: counts, Max: counts,
		DeadLetters: map[string]int{"out_of_range": 1}, DeadLettersMax: map[string]int{"out_of_range": 1},
		Devices: map[uint64]*simulator.DeviceTruth{7: dev},
	}
	st := records.DeviceState{DeviceID: 7, Messages: 2, Duplicates: 1, Invalid: 1, LastSeenMs: 2000}
	st.Observe(records.NewReading(7, &gps))
	st.Observe(records.NewReading(7, &eng))
	store := &fakeStore{rows: []records.Reading{
		{DeviceID: 7, TimeMs: 2000, ContentCRC: 11, Type: protocol.TypeGPS},
		{DeviceID: 7, TimeMs: 1000, ContentCRC: 22, Type: protocol.TypeEngine},
	}}
	return truth, fakeView{7: st}, store, map[string]int{"out_of_range": 1}
}

func check(t *testing.T, truth simulator.Truth, v fakeView, s *fakeStore, dl map[string]int) reconcile.Report {
	t.Helper()
	r, err := reconcile.Check(context.Background(), truth, reconcile.Sources{
		View: v, Store: s, DeadLetters: func(context.Context) (map[string]int, error) { return dl, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckAgrees(t *testing.T) {
	truth, v, s, dl := fixture()
	if r := check(t, truth, v, s, dl); !r.OK || r.MismatchCount != 0 || r.Sink.Messages != 2 || r.View.Duplicates != 1 || r.DeadLetterTopic.Invalid != 1 {
		t.Fatalf("report = %+v", r)
	}
}

// Each kind of disagreement is caught and named.
func TestCheckFindsEachDisagreement(t *testing.T) {
	cases := map[string]func(simulator.Truth, fakeView, *fakeStore, map[string]int){
		"view duplicates": func(_ simulator.Truth, v fakeView, _ *fakeStore, _ map[string]int) {
			st := v[7]
			st.Duplicates = 3
			v[7] = st
		},
		"view last_seen": func(_ simulator.Truth, v fakeView, _ *fakeStore, _ map[string]int) {
			st := v[7]
			st.LastSeenMs = 1000
			v[7] = st
		},
		"latest engine": func(_ simulator.Truth, v fakeView, _ *fakeStore, _ map[string]int) {
			st := v[7]
			st.Latest[1].RPM = 1
			v[7] = st
		},
		"missing from the store": func(_ simulator.Truth, _ fakeView, s *fakeStore, _ map[string]int) {
			s.rows = s.rows[:1]
		},
		"the truth does not have": func(_ simulator.Truth, _ fakeView, s *fakeStore, _ map[string]int) {
			s.rows = append(s.rows, records.Reading{DeviceID: 7, TimeMs: 5, ContentCRC: 5})
		},
		"dead letters \"panic\"": func(_ simulator.Truth, _ fakeView, _ *fakeStore, dl map[string]int) {
			dl["panic"] = 1
		},
		"no state in the view": func(_ simulator.Truth, v fakeView, _ *fakeStore, _ map[string]int) {
			delete(v, 7)
		},
	}
	for want, spoil := range cases {
		t.Run(want, func(t *testing.T) {
			truth, v, s, dl := fixture()
			spoil(truth, v, s, dl)
			r := check(t, truth, v, s, dl)
			if r.OK || !strings.Contains(strings.Join(r.Mismatches, "\n"), want) {
				t.Fatalf("mismatches %v do not name %q", r.Mismatches, want)
			}
		})
	}
}

// With uncertain attempts the truth gives bounds, and a count inside them
// agrees.
func TestCheckWithinBounds(t *testing.T) {
	truth, v, s, dl := fixture()
	truth.Uncertain = 1
	truth.Devices[7].Uncertain = 1
	truth.Devices[7].Max.Duplicates = 3
	truth.Max.Duplicates = 3
	st := v[7]
	st.Duplicates = 3
	v[7] = st
	if r := check(t, truth, v, s, dl); !r.OK || r.Exact {
		t.Fatalf("report = %+v", r)
	}
	st.Duplicates = 4
	v[7] = st
	if r := check(t, truth, v, s, dl); r.OK {
		t.Fatal("a count above the bound agreed")
	}
}
