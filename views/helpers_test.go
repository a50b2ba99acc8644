package views

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs/records"
)

// fakeSource is an in-memory Source for testing the HTTP layer.
type fakeSource struct {
	mu       sync.Mutex
	states   map[uint64]records.DeviceState
	notReady error
	getErr   error
}

func newFakeSource(states ...records.DeviceState) *fakeSource {
	f := &fakeSource{states: make(map[uint64]records.DeviceState)}
	for _, s := range states {
		f.states[s.DeviceID] = s
	}
	return f
}

func (f *fakeSource) Get(id uint64) (records.DeviceState, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return records.DeviceState{}, false, f.getErr
	}
	s, ok := f.states[id]
	return s, ok, nil
}

func (f *fakeSource) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notReady
}

func (f *fakeSource) setReady(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notReady = err
}

// testKey sees every device.
const testKey = "full-scope-test-key-0123456789"

// harness is a server on a fake source with its registry and log.
type harness struct {
	src *fakeSource
	srv *Server
	reg *prometheus.Registry
	log *bytes.Buffer
	h   http.Handler
}

func newHarness(t testing.TB, keys Keys, states ...records.DeviceState) *harness {
	t.Helper()
	return newHarnessWith(t, keys, nil, states...)
}

// newHarnessWith is newHarness with the options that configure sets.
func newHarnessWith(t testing.TB, keys Keys, configure func(*Options), states ...records.DeviceState) *harness {
	t.Helper()
	if keys.Len() == 0 {
		var err error
		if keys, err = FullScopeKey(testKey); err != nil {
			t.Fatal(err)
		}
	}
	hs := &harness{src: newFakeSource(states...), reg: prometheus.NewRegistry(), log: &bytes.Buffer{}}
	opts := Options{
		Source:     hs.src,
		Keys:       keys,
		Logger:     slog.New(slog.NewTextHandler(&lockedWriter{w: hs.log}, nil)),
		Registerer: hs.reg,
	}
	if configure != nil {
		configure(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs.srv, hs.h = srv, srv.Handler()
	return hs
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// get sends GET path with key (none when empty) and returns the recorder.
func (hs *harness) get(t testing.TB, path, key string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	return hs.do(t, r)
}

// do serves r and checks what every answer must have.
func (hs *harness) do(t testing.TB, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	hs.h.ServeHTTP(w, r)
	checkJSONAnswer(t, w)
	return w
}

// checkJSONAnswer checks the content type and that the body is one JSON
// object, with a non-empty "error" unless the code is 200.
func checkJSONAnswer(t testing.TB, w *httptest.ResponseRecorder) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	if w.Code != http.StatusOK {
		if e, _ := body["error"].(string); e == "" || len(body) != 1 {
			t.Errorf("%d body %q: want only a non-empty error", w.Code, w.Body.String())
		}
	}
}

// compact returns the compacted JSON of s and a newline.
func compact(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String() + "\n"
}
