package simulator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

var testSecret = []byte("s3cret")

// fastRetry retries at once, so that tests need not wait.
var fastRetry = RetryPolicy{MaxAttempts: 5, BaseBackoff: time.Microsecond, MaxBackoff: time.Millisecond}

func testOptions(url string, packages int, mix FaultMix) Options {
	return Options{
		IngestURL: url, Secret: testSecret, Devices: 20, Packages: packages, Seed: 9,
		Faults: mix, Concurrency: 1, Retry: fastRetry, Now: frozen(testNow),
	}
}

// sameFleet returns the first n packages that a Simulator of opts sends.
func sameFleet(t *testing.T, opts Options, n int) []*Package {
	t.Helper()
	f, err := NewFleet(FleetConfig{Seed: opts.Seed, Devices: opts.Devices, Secret: opts.Secret, Faults: opts.Faults, Now: opts.Now})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*Package, n)
	for i := range out {
		out[i] = next(t, f)
	}
	return out
}

type answer struct {
	code       int
	retryAfter string
}

// scripted is an edge that gives the scripted answers in turn and records
// each request.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	bodies  [][]byte
	auth    []string
	paths   []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies = append(s.bodies, body)
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.paths = append(s.paths, r.Method+" "+r.URL.Path)
	a := answer{code: 202}
	if len(s.answers) > 0 {
		a, s.answers = s.answers[0], s.answers[1:]
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.code)
}

func TestSenderRetriesAndFollowsAnswers(t *testing.T) {
	edge := &scripted{answers: []answer{
		{429, "1"}, {503, "0"}, {202, ""}, // package 1: retried twice, then accepted
		{400, ""},            // package 2: dropped, no retry
		{422, ""},            // package 3: rejected, no retry
		{503, ""}, {202, ""}, // package 4
	}}
	srv := httptest.NewServer(edge)
	defer srv.Close()
	opts := testOptions(srv.URL, 4, NoFaults())
	sim, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	pkgs := sameFleet(t, opts, 4)
	if len(edge.bodies) != 7 {
		t.Fatalf("%d requests, want 7", len(edge.bodies))
	}
	for i, want := range []int{0, 0, 0, 1, 2, 3, 3} {
		if string(edge.bodies[i]) != string(pkgs[want].Bytes) {
			t.Fatalf("request %d is not package %d", i, want+1)
		}
		if edge.auth[i] != "Bearer "+Token(testSecret, pkgs[want].Device) {
			t.Fatalf("request %d: authorization %q", i, edge.auth[i])
		}
		if edge.paths[i] != "POST /v1/packages" {
			t.Fatalf("request %d: %s", i, edge.paths[i])
		}
	}
	tr := sim.Truth()
	v1, _, _ := pkgs[0].Expect.Counts()
	v4, _, _ := pkgs[3].Expect.Counts()
	want := Counts{Messages: v1 + v4, PackagesRejected: 1, DeadLetters: 1}
	if tr.Totals != want {
		t.Fatalf("totals %+v, want %+v", tr.Totals, want)
	}
	if tr.Sent != 4 || tr.Unsent != 0 || tr.Unexpected != 2 || tr.Uncertain != 2 {
		t.Fatalf("sent %d unsent %d unexpected %d uncertain %d", tr.Sent, tr.Unsent, tr.Unexpected, tr.Uncertain)
	}
	if tr.Answers[202] != 2 || tr.Answers[400] != 1 || tr.Answers[422] != 1 {
		t.Fatalf("answers %v", tr.Answers)
	}
	if tr.Attempts["429"] != 1 || tr.Attempts["503"] != 2 || tr.Attempts["202"] != 2 {
		t.Fatalf("attempts %v", tr.Attempts)
	}
	// Each 503 may have stored its package: every valid message a
	// duplicate more, no new message (both were accepted in the end).
	if tr.Max.Messages != want.Messages || tr.Max.Duplicates != v1+v4 {
		t.Fatalf("max %+v", tr.Max)
	}
	if d := tr.Devices[pkgs[2].Device]; d == nil || d.PackagesRejected != 1 {
		t.Fatalf("device of the 422: %+v", d)
	}
	if _, ok := tr.Devices[pkgs[1].Device]; ok && pkgs[1].Device != pkgs[0].Device && pkgs[1].Device != pkgs[2].Device && pkgs[1].Device != pkgs[3].Device {
		t.Fatal("the device of the 400 has a truth")
	}
}

func TestSenderGivesUp(t *testing.T) {
	edge := &scripted{answers: []answer{{429, ""}, {429, ""}, {429, ""}, {429, ""}, {429, ""}}}
	srv := httptest.NewServer(edge)
	defer srv.Close()
	sim, err := New(testOptions(srv.URL, 1, NoFaults()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := sim.Truth()
	if tr.Unsent != 1 || tr.Sent != 0 || tr.Attempts["429"] != 5 || !tr.Exact() || tr.Max != (Counts{}) {
		t.Fatalf("truth %+v", tr)
	}
}

func TestSenderTimeoutIsUncertain(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			<-r.Context().Done() // never answers: the client times out
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	opts := testOptions(srv.URL, 1, NoFaults())
	opts.RequestTimeout = 50 * time.Millisecond
	sim, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := sameFleet(t, opts, 1)[0]
	valid, _, _ := p.Expect.Counts()
	tr := sim.Truth()
	if tr.Uncertain != 1 || tr.Exact() || tr.Attempts["error"] != 1 || tr.Answers[202] != 1 {
		t.Fatalf("truth %+v", tr)
	}
	if tr.Totals.Messages != valid || tr.Totals.Duplicates != 0 || tr.Max.Duplicates != valid || tr.Max.Messages != valid {
		t.Fatalf("totals %+v max %+v", tr.Totals, tr.Max)
	}
	if d := tr.Devices[p.Device]; d.Uncertain != 1 || d.Exact() {
		t.Fatalf("device %+v", d)
	}
}

func TestSenderCancelledWhileRetryingIsUnsent(t *testing.T) {
	asked := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
		once.Do(func() { close(asked) })
	}))
	defer srv.Close()
	opts := testOptions(srv.URL, 1, NoFaults())
	opts.Retry = RetryPolicy{MaxAttempts: 5, BaseBackoff: time.Hour, MaxBackoff: time.Hour}
	sim, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sim.Run(ctx) }()
	<-asked
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	p := sameFleet(t, opts, 1)[0]
	valid, _, _ := p.Expect.Counts()
	tr := sim.Truth()
	if tr.Unsent != 1 || tr.Sent != 0 || tr.Uncertain != 1 || tr.Totals != (Counts{}) || tr.Max.Messages != valid {
		t.Fatalf("truth %+v", tr)
	}
}

// fakeEdge answers as DESIGN.md's edge contract says, using only
// codecs/protocol's header checks, and keeps the accepted bodies.
type fakeEdge struct {
	mu       sync.Mutex
	accepted [][]byte
	rejected map[uint64]map[string]int // 422s by device and reason
}

func (e *fakeEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h, err := protocol.CheckHeader(body)
	var pe *protocol.PackageError
	if errors.As(err, &pe) && !pe.HeaderTrusted() {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+Token(testSecret, h.DeviceID) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case pe != nil && pe.Reason == protocol.ReasonTooLarge:
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	case pe != nil:
		if e.rejected[h.DeviceID] == nil {
			e.rejected[h.DeviceID] = map[string]int{}
		}
		e.rejected[h.DeviceID][pe.Reason.String()]++
		w.WriteHeader(http.StatusUnprocessableEntity)
	default:
		e.accepted = append(e.accepted, body)
		w.WriteHeader(http.StatusAccepted)
	}
}

// TestSenderAgainstFakePipeline sends the default fault mix to a fake edge
// and checks the truth against a small pipeline built from codecs/protocol's
// decoder: every answer as expected, and the same counts, stored messages,
// last_seen and latest readings.
func TestSenderAgainstFakePipeline(t *testing.T) {
	edge := &fakeEdge{rejected: map[uint64]map[string]int{}}
	srv := httptest.NewServer(edge)
	defer srv.Close()
	opts := testOptions(srv.URL+"/v1/packages", 400, DefaultFaultMix())
	opts.Concurrency = 8
	opts.Rate = 0
	sim, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := sim.Truth()
	if tr.Unexpected != 0 || !tr.Exact() || tr.Sent != 400 {
		t.Fatalf("unexpected %d %v, uncertain %d, sent %d", tr.Unexpected, tr.UnexpectedSamples, tr.Uncertain, tr.Sent)
	}
	for _, c := range []int{202, 400, 401, 413, 422} {
		if tr.Answers[c] == 0 {
			t.Errorf("no %d answer: %v", c, tr.Answers)
		}
	}

	// The fake pipeline.
	type dev struct {
		Counts
		stored map[Identity]protocol.Message
		last   uint64
		latest map[protocol.MsgType]uint64
	}
	devs := map[uint64]*dev{}
	get := func(id uint64) *dev {
		if devs[id] == nil {
			devs[id] = &dev{stored: map[Identity]protocol.Message{}, latest: map[protocol.MsgType]uint64{}}
		}
		return devs[id]
	}
	dlq := map[string]int{}
	for id, byReason := range edge.rejected {
		for r, n := range byReason {
			get(id).PackagesRejected += n
			dlq[r] += n
		}
	}
	now := nowMs(opts.Now)
	for _, b := range edge.accepted {
		p, err := protocol.Decode(b)
		if err != nil {
			var pe *protocol.PackageError
			errors.As(err, &pe)
			h, _ := protocol.CheckHeader(b)
			get(h.DeviceID).PackagesRejected++
			dlq[pe.Reason.String()]++
			continue
		}
		d := get(p.Header.DeviceID)
		d.Duplicates += p.IntraPackageDuplicates
		for _, r := range p.Rejected {
			d.Invalid++
			dlq[r.Reason.String()]++
		}
		for _, m := range p.Messages {
			if r := validate(&m, now); r != protocol.ReasonNone {
				d.Invalid++
				dlq[r.String()]++
				continue
			}
			id := Identity{DeviceID: p.Header.DeviceID, TimeMs: m.TimeMs, ContentCRC: m.ContentCRC}
			if _, ok := d.stored[id]; ok {
				d.Duplicates++
				continue
			}
			d.Messages++
			d.stored[id] = m
			d.last = max(d.last, m.TimeMs)
			d.latest[m.Type] = max(d.latest[m.Type], m.TimeMs)
		}
	}
	for r, n := range dlq {
		if tr.DeadLetters[r] != n {
			t.Errorf("dead letters %s: truth %d, pipeline %d", r, tr.DeadLetters[r], n)
		}
	}
	if len(devs) != len(tr.Devices) {
		t.Errorf("%d devices, truth %d", len(devs), len(tr.Devices))
	}
	var total Counts
	for id, d := range devs {
		td := tr.Devices[id]
		if td == nil {
			t.Errorf("device %d not in the truth", id)
			continue
		}
		total.add(d.Counts)
		if td.Messages != d.Messages || td.Duplicates != d.Duplicates || td.Invalid != d.Invalid || td.PackagesRejected != d.PackagesRejected {
			t.Errorf("device %d: truth %+v, pipeline %+v", id, td.Counts, d.Counts)
		}
		if td.LastSeenMs != d.last {
			t.Errorf("device %d: last_seen %d, pipeline %d", id, td.LastSeenMs, d.last)
		}
		for typ, tm := range d.latest {
			if td.Latest[typ].TimeMs != tm || td.Latest[typ].Message != d.stored[Identity{id, tm, td.Latest[typ].Message.ContentCRC}] {
				t.Errorf("device %d: latest %v at %d, pipeline %d", id, typ, td.Latest[typ].TimeMs, tm)
			}
		}
		for ident := range d.stored {
			if _, ok := td.Stored[ident]; !ok {
				t.Errorf("device %d: stored %+v not in the truth", id, ident)
			}
		}
	}
	if total.Messages != tr.Totals.Messages || total.Duplicates != tr.Totals.Duplicates ||
		total.Invalid != tr.Totals.Invalid || total.PackagesRejected != tr.Totals.PackagesRejected {
		t.Errorf("totals: truth %+v, pipeline %+v", tr.Totals, total)
	}
	if n := len(tr.StoredMessages()); n != tr.Totals.Messages {
		t.Errorf("%d stored messages listed, %d counted", n, tr.Totals.Messages)
	}
	for _, f := range AllFaults() {
		if tr.Faults[f] == 0 {
			t.Errorf("fault %s never sent", f)
		}
	}
	sum := tr.Summary()
	t.Logf("summary: %+v", sum)
	if !sum.Exact || sum.Messages != tr.Totals.Messages || sum.Answers["202"] != tr.Answers[202] {
		t.Errorf("summary %+v", sum)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "3": 3 * time.Second, " 7 ": 7 * time.Second, "-1": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{IngestURL: "ftp://x"},
		{IngestURL: "http://"},
		{IngestURL: "http://x", Devices: -1},
		{IngestURL: "http://x", MessagesPerPackage: IntRange{Min: 5, Max: 2}},
	} {
		if _, err := New(o); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v): %v", o, err)
		}
	}
	s, err := New(Options{IngestURL: "http://127.0.0.1:1/custom/path"})
	if err != nil || !strings.HasSuffix(s.url, "/custom/path") {
		t.Fatalf("url %v %v", s, err)
	}
}

func TestSenderConnectionRefusedIsCertain(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	sim, err := New(testOptions(url, 2, NoFaults()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := sim.Truth()
	if tr.Unsent != 2 || tr.Attempts["error"] != 2*fastRetry.MaxAttempts || !tr.Exact() || tr.Max != (Counts{}) {
		t.Fatalf("truth %+v", tr)
	}
}

// A package answered 202 after a 503 may have been stored by the 503's
// attempt: its messages' receipt is bounded from the send of the first
// attempt that may have reached Kafka (a 429 never did), not from the
// accepted attempt's, so that the truth in time never calls a message
// received later than a stored copy was.
func TestSenderReceiptCoversUncertainAttempts(t *testing.T) {
	var tick atomic.Int64
	now := func() time.Time { return testNow.Add(time.Duration(tick.Add(1)) * time.Second) }
	var served []time.Time // when the edge answered each request
	edge := &scripted{answers: []answer{{429, "0"}, {503, "0"}, {503, "0"}, {202, ""}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served = append(served, now())
		edge.ServeHTTP(w, r)
	}))
	defer srv.Close()
	opts := testOptions(srv.URL, 1, NoFaults())
	opts.Now = now
	sim, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(served) != 4 {
		t.Fatalf("%d requests, want 4", len(served))
	}
	tr := sim.Truth()
	n := 0
	for _, d := range tr.Devices {
		for _, m := range d.Stored {
			n++
			if r := m.Received; !r.Contains(served[1].UnixMilli()) || !r.Contains(served[3].UnixMilli()) {
				t.Fatalf("message received within %d..%d, want it to cover the first 503 (%d) to the 202 (%d)",
					r.FromMs, r.ToMs, served[1].UnixMilli(), served[3].UnixMilli())
			}
			if r := m.Received; r.Contains(served[0].UnixMilli()) {
				t.Fatalf("message received within %d..%d, which covers the 429 (%d) that stored nothing", r.FromMs, r.ToMs, served[0].UnixMilli())
			}
		}
	}
	if n == 0 {
		t.Fatal("no message stored")
	}
}
