package faults

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/views"
)

// stateSource is a views.Source over fixed states.
type stateSource map[uint64]records.DeviceState

func (s stateSource) Get(id uint64) (records.DeviceState, bool, error) {
	st, ok := s[id]
	return st, ok, nil
}

func (stateSource) Ready() error { return nil }

// TestHTTPViewRoundTrip serves device states with the real view API and
// reads them back: every field reconcile compares survives the JSON.
func TestHTTPViewRoundTrip(t *testing.T) {
	v1 := records.DeviceState{
		DeviceID: 42, Messages: 10, Duplicates: 2, Invalid: 1, PackagesRejected: 3, LastSeenMs: 1_700_000_000_123, Version: 1,
		Latest: []records.Reading{
			{DeviceID: 42, TimeMs: 1_700_000_000_001, Type: protocol.TypeGPS, LatDeg: 52.5123456, LonDeg: 13.3987654, SpeedKmh: 88.5, HeadingDeg: 270},
			{DeviceID: 42, TimeMs: 1_700_000_000_002, Type: protocol.TypeAccel, XG: 0.012, YG: -1.5, ZG: 0.981},
			{DeviceID: 42, TimeMs: 1_700_000_000_003, Type: protocol.TypeEngine, RPM: 2100, CoolantC: 87, FuelPct: 55},
			{DeviceID: 42, TimeMs: 1_700_000_000_004, Type: protocol.TypeEvent, EventCode: 3, Severity: 2},
		},
	}
	v2 := records.DeviceState{
		DeviceID: 18446744073709551615, Messages: 1, LastSeenMs: 1_700_000_000_999, Version: 2, Firmware: 0x0203,
		Latest: []records.Reading{
			{DeviceID: 18446744073709551615, TimeMs: 1_700_000_000_005, Type: protocol.TypeGPS, LatDeg: -33.9, LonDeg: 151.2, SpeedKmh: 0, HeadingDeg: 0, Hdop: 0.9, Satellites: 11},
			{DeviceID: 18446744073709551615, TimeMs: 1_700_000_000_006, Type: protocol.TypeBattery, BatteryV: 12.612},
		},
	}
	keys, err := views.FullScopeKey("test-key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := views.New(views.Options{Source: stateSource{42: v1, v2.DeviceID: v2}, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(views.DevicesPath, srv.Handler())
	ts := httptest.NewServer(mux)
	defer ts.Close()

	v := &HTTPView{BaseURL: ts.URL, Key: "test-key-0123456789abcdef"}
	for _, want := range []records.DeviceState{v1, v2} {
		got, ok, err := v.Get(want.DeviceID)
		if err != nil || !ok {
			t.Fatalf("Get(%d) = %v, %v", want.DeviceID, ok, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Get(%d):\n got %+v\nwant %+v", want.DeviceID, got, want)
		}
	}
	if _, ok, err := v.Get(7); ok || err != nil {
		t.Errorf("unknown device: found %v, err %v; want not found, no error", ok, err)
	}
	bad := &HTTPView{BaseURL: ts.URL, Key: "wrong"}
	if _, _, err := bad.Get(42); err == nil {
		t.Error("a wrong key gave no error")
	}
}

// TestHTTPViewNotCaughtUp: a 503 is an error wrapping ErrNotCaughtUp.
func TestHTTPViewNotCaughtUp(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"not ready"}`, http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	_, _, err := (&HTTPView{BaseURL: ts.URL, Key: "k"}).Get(1)
	if !errors.Is(err, ErrNotCaughtUp) {
		t.Fatalf("err = %v, want ErrNotCaughtUp", err)
	}
}

// TestFrontRoundRobinAndFailover: requests alternate between the edges,
// and one that cannot connect goes to the next edge with its body.
func TestFrontRoundRobinAndFailover(t *testing.T) {
	var hits [2]int
	var bodies [][]byte
	mk := func(i int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			bodies = append(bodies, b)
			hits[i]++
			w.WriteHeader(http.StatusAccepted)
		}))
	}
	a, b := mk(0), mk(1)
	defer a.Close()
	defer b.Close()
	f, err := NewFront(nil, a.URL, b.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: f}
	post := func() {
		t.Helper()
		resp, err := c.Post(a.URL+"/v1/packages", "application/octet-stream", bytes.NewReader([]byte("pkg")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range 4 {
		post()
	}
	if hits != [2]int{2, 2} {
		t.Fatalf("hits %v, want 2 and 2", hits)
	}
	b.Close() // the second edge is down: everything goes to the first
	for range 4 {
		post()
	}
	if hits[0] != 6 {
		t.Fatalf("hits %v, want 6 on the first edge", hits)
	}
	for _, body := range bodies {
		if string(body) != "pkg" {
			t.Fatalf("an edge got body %q", body)
		}
	}
	st := f.Stats()
	if st[1].DialErrors == 0 || st[0].Requests != 6 || st[0].Codes[http.StatusAccepted] != 6 {
		t.Errorf("stats %+v", st)
	}

	// Every edge down: the dial error comes back, so the sender knows
	// nothing was sent.
	a.Close()
	_, err = c.Post(a.URL+"/v1/packages", "application/octet-stream", bytes.NewReader([]byte("pkg")))
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("err = %v, want a dial error", err)
	}
}

// Ports come from below the ephemeral range (where outgoing connections
// take their local ports), are free, and are never handed out twice.
func TestPortsAvoidTheEphemeralRange(t *testing.T) {
	p := NewPorts()
	seen := map[int]bool{}
	for range 300 {
		port, err := p.Free()
		if err != nil {
			t.Fatal(err)
		}
		if port < p.low || port >= p.high || port < 1024 {
			t.Fatalf("port %d outside [%d, %d)", port, p.low, p.high)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
	// A port in use is not handed out: in a span of three free ports, hold
	// two, and the third is what comes back, then nothing.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	low := -1
	for cand := p.low; cand+3 <= p.high && low < 0; cand += 3 {
		var ls []net.Listener
		for port := cand; port < cand+3; port++ {
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				ls = append(ls, l)
			}
		}
		if len(ls) == 3 {
			low = cand
			held = append(held, ls[0], ls[1])
			ls[2].Close()
			continue
		}
		for _, l := range ls {
			l.Close()
		}
	}
	if low < 0 {
		t.Fatal("no three free ports in a row below the ephemeral range")
	}
	tiny := &Ports{low: low, high: low + 3, given: map[int]bool{}, rng: p.rng}
	if port, err := tiny.Free(); err != nil || port != low+2 {
		t.Fatalf("Free() = %d, %v; want %d, the one port not in use", port, err, low+2)
	}
	if _, err := tiny.Free(); err == nil {
		t.Fatal("Free() found a port in a span whose ports are all in use or given")
	}
}

// TestFrontWatch: requests in flight at an edge when it is watched and
// then lose their answer (the server closes their connections) are
// counted; a request begun after the watch, or one answered, is not.
func TestFrontWatch(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusAccepted)
	}))
	defer ts.Close()
	f, err := NewFront(nil, ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: f}
	errs := make(chan error, 3)
	post := func() {
		resp, err := c.Post(ts.URL+"/v1/packages", "application/octet-stream", bytes.NewReader([]byte("pkg")))
		if err == nil {
			resp.Body.Close()
		}
		errs <- err
	}
	go post()
	go post()
	<-entered
	<-entered
	if n := f.InFlight(0); n != 2 {
		t.Fatalf("in flight %d, want 2", n)
	}
	w := f.Watch(0)
	ts.CloseClientConnections() // the edge dies under both requests
	for range 2 {
		if err := <-errs; err == nil {
			t.Fatal("a request whose connection was closed succeeded")
		}
	}
	close(release)
	go post() // after the watch: answered, not counted
	if err := <-errs; err != nil {
		t.Fatalf("request after the watch: %v", err)
	}
	if got := f.Failed(w); got != 2 {
		t.Fatalf("Failed = %d, want 2", got)
	}
}

// TestSinkAuditRoundTrip: what sinks.Audit writes, ReadSinkAudit reads: a
// record handed over twice (a replay) may be written twice, a row written
// more often than handed over is reported, a line cut by a kill is
// counted and skipped.
func TestSinkAuditRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	a := sinks.NewAudit(f)
	r1 := records.Reading{DeviceID: 18446744073709551615, TimeMs: 1_700_000_000_001, ContentCRC: 4294967295}
	r2 := records.Reading{DeviceID: 7, TimeMs: 1_700_000_000_002, ContentCRC: 1}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Delivered(0, 10, []records.Reading{r1, r2}))
	must(a.Wrote([]records.Reading{r1, r2}))
	must(a.Delivered(0, 10, []records.Reading{r1, r2})) // replayed
	must(a.Wrote([]records.Reading{r1}))
	must(a.Wrote([]records.Reading{r2}))
	must(a.Wrote([]records.Reading{r2}))               // one write too many
	if _, err := f.WriteString("w 7:17"); err != nil { // cut by a kill
		t.Fatal(err)
	}
	must(f.Close())
	got, err := ReadSinkAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	id1 := simulator.Identity{DeviceID: r1.DeviceID, TimeMs: r1.TimeMs, ContentCRC: r1.ContentCRC}
	id2 := simulator.Identity{DeviceID: r2.DeviceID, TimeMs: r2.TimeMs, ContentCRC: r2.ContentCRC}
	if got.WriteCalls != 4 || got.Cut != 1 || got.Delivered[id1] != 2 || got.Written[id1] != 2 || got.Written[id2] != 3 {
		t.Fatalf("audit %+v", got)
	}
	if ow := got.Overwritten(); len(ow) != 1 || ow[0] != id2 {
		t.Fatalf("Overwritten = %v, want [%v]", ow, id2)
	}
}
