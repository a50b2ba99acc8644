package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/views"
)

// Keys of the tests: one sees every device, one device 7 only.
const (
	fullKey   = "full-scope-test-key-0123456789"
	scopedKey = "scoped-test-key-0123456789abcd"
)

// Devices of the fake source: 7 (last seen at lastSeenMs) and 8.
const lastSeenMs = 1_773_500_600_000

type fakeSource struct {
	states map[uint64]records.DeviceState
}

func (f fakeSource) Get(id uint64) (records.DeviceState, bool, error) {
	s, ok := f.states[id]
	return s, ok, nil
}
func (fakeSource) Ready() error { return nil }

func newFakeSource() fakeSource {
	return fakeSource{states: map[uint64]records.DeviceState{
		7: {DeviceID: 7, Messages: 30, Version: 2, Firmware: 0x0203, LastSeenMs: lastSeenMs, Latest: []records.Reading{
			{DeviceID: 7, TimeMs: lastSeenMs, Type: protocol.TypeGPS, LatDeg: 52.5, LonDeg: 13.4, SpeedKmh: 50},
		}},
		8: {DeviceID: 8, Messages: 1, Version: 1, LastSeenMs: lastSeenMs},
	}}
}

// fakeStore answers readings of device 7 and can block its reads.
type fakeStore struct {
	rows  []records.Reading
	block chan struct{} // when set, Readings waits for it to close
	mu    sync.Mutex
	asked []sinks.Query
}

func (s *fakeStore) Write(context.Context, []records.Reading) error { return nil }
func (s *fakeStore) Close() error                                   { return nil }
func (s *fakeStore) Readings(ctx context.Context, q sinks.Query) ([]records.Reading, error) {
	s.mu.Lock()
	s.asked = append(s.asked, q)
	s.mu.Unlock()
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var out []records.Reading
	for _, r := range s.rows {
		t := int64(r.TimeMs)
		if r.DeviceID == q.DeviceID && (q.From.IsZero() || t >= q.From.UnixMilli()) && (q.To.IsZero() || t < q.To.UnixMilli()) {
			out = append(out, r)
		}
	}
	return out, nil
}

// track is device 7's history: a GPS fix and a battery reading a minute,
// for 90 minutes before it was last seen.
func track() []records.Reading {
	var rows []records.Reading
	for i := range 90 {
		t := uint64(lastSeenMs - (89-i)*60_000)
		rows = append(rows,
			records.Reading{DeviceID: 7, TimeMs: t, Type: protocol.TypeGPS, LatDeg: 52.5 + float64(i)*0.001, LonDeg: 13.4, SpeedKmh: float64(i)},
			records.Reading{DeviceID: 7, TimeMs: t + 1, Type: protocol.TypeBattery, BatteryV: 12 + float64(i)/100})
	}
	return rows
}

// newViews returns the view API's server with the test keys.
func newViews(t *testing.T, src views.Source) *views.Server {
	t.Helper()
	keys, err := views.NewKeys(map[string]views.Scope{fullKey: {All: true}, scopedKey: {Devices: []uint64{7}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := views.New(views.Options{Source: src, Keys: keys, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newTestServer returns a console over the fakes; edit changes the
// options first.
func newTestServer(t *testing.T, edit func(*Options)) (*Server, *httptest.Server) {
	t.Helper()
	src := newFakeSource()
	opts := Options{
		Topology: processors.New(processors.Config{}).Topology.Describe(),
		Auth:     newViews(t, src), Devices: src, Store: &fakeStore{rows: track()},
		Logger: slog.New(slog.DiscardHandler),
	}
	if edit != nil {
		edit(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, hs
}

// get sends a request with key ("" for none) and returns the status and
// body.
func do(t *testing.T, method, url, key, contentType, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	code, _, body := do(t, http.MethodGet, url, key, "", "")
	return code, body
}

// waitAsked waits until a request reached the store.
func (s *fakeStore) waitAsked(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.asked)
		s.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the store")
		}
	}
}
