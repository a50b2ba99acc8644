package views

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/local"
	"github.com/watershed-io/watershed/topology"
)

// historyNow is the server's clock in the history tests: t0 + 1 h.
var historyNow = time.UnixMilli(t0 + 3600_000).UTC()

// historyHarness is a server whose readings and summaries come from a
// local store holding rows, and whose open windows come from open.
func historyHarness(t *testing.T, keys Keys, open OpenWindows, readings []records.Reading, summaries []records.Summary) *harness {
	t.Helper()
	st, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Write(context.Background(), readings); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteSummaries(context.Background(), summaries); err != nil {
		t.Fatal(err)
	}
	hs := newHarnessWith(t, keys, func(o *Options) {
		o.Readings, o.Summaries, o.OpenWindows = st, st, open
	})
	hs.srv.now = func() time.Time { return historyNow }
	return hs
}

// batteryReadings returns n battery readings of device id, one every
// minute back from historyNow, two sharing each odd minute.
func batteryReadings(id uint64, n int) []records.Reading {
	var rs []records.Reading
	for i := 0; i < n; i++ {
		ms := uint64(historyNow.UnixMilli()) - uint64(i/2+1)*60_000
		rs = append(rs, records.Reading{DeviceID: id, TimeMs: ms, ContentCRC: uint32(i % 2 * math.MaxUint32), Type: protocol.TypeBattery, BatteryV: float64(i)})
	}
	return rs
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return v
}

// pageAll follows the cursors from path (which has a query string),
// checking that every page but the last is full, and returns the readings
// and the number of pages.
func pageAll(t *testing.T, hs *harness, path string, limit int) ([]ReadingJSON, int) {
	t.Helper()
	var got []ReadingJSON
	next := path
	for pages := 1; ; pages++ {
		w := hs.get(t, next, testKey)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", next, w.Code, w.Body)
		}
		p := decode[readingsJSON](t, w.Body.Bytes())
		got = append(got, p.Readings...)
		if p.NextCursor == nil {
			if len(p.Readings) > limit || len(p.Readings) == 0 && pages > 1 {
				t.Errorf("last page has %d readings (limit %d)", len(p.Readings), limit)
			}
			return got, pages
		}
		if len(p.Readings) != limit {
			t.Errorf("page %d has %d readings, want %d", pages, len(p.Readings), limit)
		}
		if pages > 1000 {
			t.Fatal("too many pages")
		}
		next = path + "&cursor=" + url.QueryEscape(*p.NextCursor)
	}
}

// newestFirst checks that rs are newest first, each once.
func newestFirst(t *testing.T, rs []ReadingJSON) {
	t.Helper()
	for i := 1; i < len(rs); i++ {
		a, b := rs[i-1], rs[i]
		if a.TimeMs < b.TimeMs || a.TimeMs == b.TimeMs && a.ContentCRC <= b.ContentCRC {
			t.Fatalf("readings %d and %d not newest first: %+v, %+v", i-1, i, a, b)
		}
	}
}

// TestReadingsPaging pages through a device's readings newest first: every
// reading comes once, in order, in full pages but the last, and the last
// page has no cursor.
func TestReadingsPaging(t *testing.T) {
	rs := batteryReadings(1001, 25)
	other := batteryReadings(1002, 3)
	hs := historyHarness(t, Keys{}, nil, append(rs, other...), nil)
	got, pages := pageAll(t, hs, "/v1/devices/1001/readings?limit=10", 10)
	if pages != 3 || len(got) != len(rs) {
		t.Fatalf("%d pages, %d readings; want 3, %d", pages, len(got), len(rs))
	}
	newestFirst(t, got)
	for _, r := range got {
		if r.DeviceID != "1001" || r.Type != "battery" || r.BatteryV == nil {
			t.Fatalf("reading %+v", r)
		}
	}
}

// TestReadingsRangeAndDefaults: from inclusive, to exclusive; without
// bounds the last 24 hours up to now; one bound gives the other 24 hours
// away; the range and the page size are echoed.
func TestReadingsRangeAndDefaults(t *testing.T) {
	rs := batteryReadings(7, 10) // minutes -1 (two), -2 (two), ..., -5 (two)
	old := records.Reading{DeviceID: 7, TimeMs: uint64(historyNow.Add(-25 * time.Hour).UnixMilli()), Type: protocol.TypeBattery}
	hs := historyHarness(t, Keys{}, nil, append(rs, old), nil)
	at := func(minutes int) string {
		return historyNow.Add(time.Duration(minutes) * time.Minute).Format(time.RFC3339)
	}
	for _, c := range []struct {
		query    string
		n        int
		from, to string
	}{
		{"", 10, historyNow.Add(-24 * time.Hour).Format(time.RFC3339Nano), historyNow.Format(time.RFC3339Nano)},
		{"from=" + at(-4) + "&to=" + at(-2), 4, at(-4), at(-2)},
		{"from=" + at(-4) + "&to=" + at(-4), 0, at(-4), at(-4)},
		{"to=" + at(-3), 4, historyNow.Add(-3*time.Minute - 24*time.Hour).Format(time.RFC3339), at(-3)},
		{"from=" + at(-26*60), 1, at(-26 * 60), at(-2 * 60)},
		{"from=" + url.QueryEscape("2024-05-01T14:56:00+02:00"), 8, at(-4), historyNow.Add(-4*time.Minute + 24*time.Hour).Format(time.RFC3339)},
		{"limit=3", 3, historyNow.Add(-24 * time.Hour).Format(time.RFC3339Nano), historyNow.Format(time.RFC3339Nano)},
		{"from=" + at(-31*24*60) + "&to=" + at(0), 11, at(-31 * 24 * 60), at(0)},
		{"limit=10000", 10, historyNow.Add(-24 * time.Hour).Format(time.RFC3339Nano), historyNow.Format(time.RFC3339Nano)},
	} {
		w := hs.get(t, "/v1/devices/7/readings?"+c.query, testKey)
		if w.Code != http.StatusOK {
			t.Errorf("%q: %d %s", c.query, w.Code, w.Body)
			continue
		}
		p := decode[readingsJSON](t, w.Body.Bytes())
		var raw map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &raw)
		if len(p.Readings) != c.n || raw["from"] != c.from || raw["to"] != c.to {
			t.Errorf("%q: %d readings from %v to %v; want %d from %s to %s", c.query, len(p.Readings), raw["from"], raw["to"], c.n, c.from, c.to)
		}
		if _, ok := raw["next_cursor"]; !ok {
			t.Errorf("%q: no next_cursor field", c.query)
		}
	}
}

// TestHistoryBadRequests: every malformed parameter is a 400 saying what
// is wrong, before the scope is looked at.
func TestHistoryBadRequests(t *testing.T) {
	hs := historyHarness(t, scopedKeys(t), nil, batteryReadings(1001, 3), nil)
	now := historyNow.Format(time.RFC3339)
	for _, c := range []struct {
		path, want string
	}{
		{"/v1/devices/1001/readings?from=yesterday", "malformed from"},
		{"/v1/devices/1001/readings?to=2024-05-01", "malformed to"},
		{"/v1/devices/1001/readings?from=2024-05-01T12:00:00", "malformed from"},
		{"/v1/devices/1001/readings?from=1714564800000", "malformed from"},
		{"/v1/devices/1001/readings?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "reversed range"},
		{"/v1/devices/1001/readings?from=2024-04-01T00:00:00Z&to=2024-05-02T00:00:00.001Z", "range over 31 days"},
		{"/v1/devices/1001/summaries?from=2024-01-01T00:00:00Z&to=2024-03-01T00:00:00Z", "range over 31 days"},
		{"/v1/devices/1001/summaries?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "reversed range"},
		{"/v1/devices/1001/summaries?to=noon", "malformed to"},
		{"/v1/devices/1001/readings?limit=10001", "limit must be"},
		{"/v1/devices/1001/readings?limit=0", "limit must be"},
		{"/v1/devices/1001/readings?limit=-5", "limit must be"},
		{"/v1/devices/1001/readings?limit=ten", "limit must be"},
		{"/v1/devices/1001/readings?limit=", "limit must be"},
		{"/v1/devices/1001/readings?cursor=nonsense", "malformed cursor"},
		{"/v1/devices/1001/readings?cursor=" + cursor(sinks.Position{TimeMs: 1})[1:], "malformed cursor"},
		{"/v1/devices/1001/readings?page=2", `unexpected query parameter \"page\"`},
		{"/v1/devices/1001/summaries?limit=2", `unexpected query parameter \"limit\"`},
		{"/v1/devices/1001/readings?from=" + now + "&from=" + now, `\"from\" given 2 times`},
		{"/v1/devices/1001/readings?from=%zz", "malformed query string"},
		// Outside the north key's scope: still 400 first.
		{"/v1/devices/2001/readings?limit=0", "limit must be"},
	} {
		w := hs.get(t, c.path, "north-key-0123456789abcdef")
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s: %d %s, want 400 with %q", c.path, w.Code, w.Body, c.want)
		}
	}
}

// TestHistoryScopesAndAuth: the device endpoint's keys, scopes and error
// rules: 401 without a key, out of scope exactly as unknown, a malformed id
// 400, a method but GET 405.
func TestHistoryScopesAndAuth(t *testing.T) {
	hs := historyHarness(t, scopedKeys(t), nil, append(batteryReadings(1001, 3), batteryReadings(2001, 3)...), nil)
	const north = "north-key-0123456789abcdef"
	for _, sub := range []string{"readings", "summaries"} {
		if w := hs.get(t, "/v1/devices/1001/"+sub, ""); w.Code != http.StatusUnauthorized {
			t.Errorf("%s without a key: %d", sub, w.Code)
		}
		if w := hs.get(t, "/v1/devices/1001/"+sub, north); w.Code != http.StatusOK {
			t.Errorf("%s in scope: %d %s", sub, w.Code, w.Body)
		}
		out := hs.get(t, "/v1/devices/2001/"+sub, north)
		if out.Code != http.StatusNotFound || out.Body.String() != bodyUnknownDevice {
			t.Errorf("%s out of scope: %d %s", sub, out.Code, out.Body)
		}
		for _, bad := range []string{"01", "x", "18446744073709551616"} {
			if w := hs.get(t, "/v1/devices/"+bad+"/"+sub, north); w.Code != http.StatusBadRequest || w.Body.String() != bodyMalformedID {
				t.Errorf("%s of device %q: %d %s", sub, bad, w.Code, w.Body)
			}
		}
		r, _ := http.NewRequest(http.MethodPost, "/v1/devices/1001/"+sub, nil)
		r.Header.Set("Authorization", "Bearer "+north)
		if w := hs.do(t, r); w.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d", sub, w.Code)
		}
	}
	for _, p := range []string{"/v1/devices/1001/readings/", "/v1/devices/1001/reading", "/v1/devices/1001/summaries/x"} {
		if w := hs.get(t, p, north); w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
	// The device endpoint still refuses a query string.
	if w := hs.get(t, "/v1/devices/1001?from=2024-05-01T00:00:00Z", north); w.Code != http.StatusBadRequest || w.Body.String() != bodyQuery {
		t.Errorf("device endpoint with a query: %d %s", w.Code, w.Body)
	}
}

// TestHistoryNotConfigured: a server without stores answers 404 not found
// on the history paths.
func TestHistoryNotConfigured(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	for _, sub := range []string{"readings", "summaries"} {
		if w := hs.get(t, "/v1/devices/1001/"+sub, testKey); w.Code != http.StatusNotFound || w.Body.String() != bodyNotFound {
			t.Errorf("%s: %d %s", sub, w.Code, w.Body)
		}
	}
}

// failingStore fails every call with err.
type failingStore struct{ err error }

func (f failingStore) Readings(context.Context, sinks.Query) ([]records.Reading, error) {
	return nil, f.err
}

func (f failingStore) Summaries(context.Context, sinks.SummaryQuery) ([]records.Summary, error) {
	return nil, f.err
}

func (f failingStore) OpenSummary(context.Context, uint64) (records.Summary, bool, error) {
	return records.Summary{}, false, f.err
}

// TestHistoryStoreErrors: an unavailable store is 503 with Retry-After,
// any other failure 500; the detail is logged, not answered.
func TestHistoryStoreErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
		body string
	}{
		{fmt.Errorf("cassandra: readings: %w: no hosts", sinks.ErrUnavailable), http.StatusServiceUnavailable, bodyUnavailable},
		{errors.New("local: corrupted row"), http.StatusInternalServerError, bodyInternal},
	} {
		f := failingStore{c.err}
		hs := newHarnessWith(t, Keys{}, func(o *Options) { o.Readings, o.Summaries = f, f })
		hsOpen := newHarnessWith(t, Keys{}, func(o *Options) { o.Readings, o.Summaries, o.OpenWindows = f, emptySummaries{}, f })
		for _, w := range []*httptest.ResponseRecorder{
			hs.get(t, "/v1/devices/1/readings", testKey),
			hs.get(t, "/v1/devices/1/summaries", testKey),
			hsOpen.get(t, "/v1/devices/1/summaries", testKey),
		} {
			if w.Code != c.code || w.Body.String() != c.body {
				t.Errorf("%v: %d %s, want %d %s", c.err, w.Code, w.Body, c.code, c.body)
			}
			if got := w.Header().Get("Retry-After"); (c.code == http.StatusServiceUnavailable) != (got != "") {
				t.Errorf("%v: Retry-After %q", c.err, got)
			}
		}
		if !strings.Contains(hs.log.String(), c.err.Error()) {
			t.Errorf("the error %q is not logged: %s", c.err, hs.log)
		}
	}
}

// emptySummaries is a summary store without summaries.
type emptySummaries struct{}

func (emptySummaries) Summaries(context.Context, sinks.SummaryQuery) ([]records.Summary, error) {
	return nil, nil
}

// openWindow is an OpenWindows holding one window per device.
type openWindow map[uint64]records.Summary

func (o openWindow) OpenSummary(_ context.Context, id uint64) (records.Summary, bool, error) {
	s, ok := o[id]
	return s, ok, nil
}

// windowBase is the start of the hour before historyNow (the open one).
var windowBase = historyNow.Add(-time.Minute).Truncate(time.Hour)

// window returns device id's summary of the hour starting h hours before
// windowBase.
func window(id uint64, h int, messages uint64) records.Summary {
	start := uint64(windowBase.Add(time.Duration(-h) * time.Hour).UnixMilli())
	return records.Summary{DeviceID: id, WindowStartMs: start, WindowEndMs: start + records.SummaryWindowMs,
		Messages: messages, GPSFixes: 2, DistanceM: 1500.5, MaxSpeedKmh: 80, AvgSpeedKmh: 45.25,
		Harsh:   map[protocol.EventCode]uint64{protocol.EventHarshBrake: 2},
		FirstMs: start + 1000, LastMs: start + 2000}
}

// TestSummaries: the closed windows of the range from the store, oldest
// first, then the open one from OpenWindows marked closed false; an open
// window outside the range, or one the store already holds, is left out.
func TestSummaries(t *testing.T) {
	closed := []records.Summary{window(5, 3, 30), window(5, 2, 20), window(5, 1, 10), window(6, 1, 1)}
	open := openWindow{5: window(5, 0, 4), 6: window(6, 1, 99)}
	hs := historyHarness(t, Keys{}, open, nil, closed)
	type page struct {
		Summaries []struct {
			Messages uint64 `json:"messages"`
			Closed   bool   `json:"closed"`
		} `json:"summaries"`
	}
	hour := func(h int) string { return windowBase.Add(time.Duration(-h) * time.Hour).Format(time.RFC3339) }
	for _, c := range []struct {
		path     string
		messages []uint64
		closed   []bool
	}{
		{"/v1/devices/5/summaries", []uint64{30, 20, 10, 4}, []bool{true, true, true, false}},
		{"/v1/devices/5/summaries?from=" + hour(2) + "&to=" + hour(0), []uint64{20, 10}, []bool{true, true}},
		{"/v1/devices/5/summaries?from=" + hour(1), []uint64{10, 4}, []bool{true, false}},
		{"/v1/devices/6/summaries", []uint64{1}, []bool{true}},
		{"/v1/devices/7/summaries", nil, nil},
	} {
		w := hs.get(t, c.path, testKey)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", c.path, w.Code, w.Body)
		}
		p := decode[page](t, w.Body.Bytes())
		if len(p.Summaries) != len(c.messages) {
			t.Errorf("%s: %d summaries, want %d: %s", c.path, len(p.Summaries), len(c.messages), w.Body)
			continue
		}
		for i, s := range p.Summaries {
			if s.Messages != c.messages[i] || s.Closed != c.closed[i] {
				t.Errorf("%s: summary %d: messages %d closed %v; want %d, %v", c.path, i, s.Messages, s.Closed, c.messages[i], c.closed[i])
			}
		}
	}
	// Every field of one window.
	w := hs.get(t, "/v1/devices/5/summaries?from="+hour(1)+"&to="+hour(0), testKey)
	want := compact(t, `{"device_id":"5","from":"`+hour(1)+`","to":"`+hour(0)+`","summaries":[{"window_start":"2024-05-01T11:00:00.000Z",
		"window_end":"2024-05-01T12:00:00.000Z","closed":true,"messages":10,"distance_m":1500.5,"max_speed_kmh":80,"avg_speed_kmh":45.25,
		"harsh_events":{"harsh_brake":2},"first_message":"2024-05-01T11:00:01.000Z","last_message":"2024-05-01T11:00:02.000Z"}]}`)
	if w.Body.String() != want {
		t.Errorf("body\n%s\nwant\n%s", w.Body, want)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, p := range []sinks.Position{{}, {TimeMs: math.MaxUint64, ContentCRC: math.MaxUint32}, {TimeMs: t0, ContentCRC: 0xdeadbeef}} {
		got, ok := parseCursor(cursor(p))
		if !ok || got != p {
			t.Errorf("cursor of %+v: %+v, %v", p, got, ok)
		}
	}
}

// recoveringWindows is an OpenWindows whose windows are still being read
// back (topology.WindowView before it caught up).
type recoveringWindows struct{}

func (recoveringWindows) OpenSummary(context.Context, uint64) (records.Summary, bool, error) {
	return records.Summary{}, false, fmt.Errorf("open windows: %w", topology.ErrRecovering)
}

// TestSummariesWhileWindowsRecover: a view whose open windows are still
// recovering answers 503 with Retry-After, as for an unavailable store, not
// 500 and not a page without the open window.
func TestSummariesWhileWindowsRecover(t *testing.T) {
	hs := historyHarness(t, Keys{}, recoveringWindows{}, nil, []records.Summary{window(5, 1, 10)})
	w := hs.get(t, "/v1/devices/5/summaries", testKey)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("%d (Retry-After %q) %s, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
}
