package serve_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/internal/serve"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startServer serves s until the test ends; err is the error of making s.
func startServer(t *testing.T, s *serve.Server, err error) *serve.Server {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

// notReady is a reason for not being ready that names a topic and carries
// error text, as the runner's and the view's do.
var notReady = errors.New("group decode: table telemetry.raw-table partition 3 recovering: dial tcp 10.1.2.3:9092: connection refused")

// The public listener says whether the process is alive and ready, and
// nothing more: no reason, no topic, no metrics, no profiler.
func TestPublicListenerSaysNoMore(t *testing.T) {
	var ready atomic.Pointer[error]
	ready.Store(&notReady)
	mux := http.NewServeMux()
	serve.Health(mux, func() error { return *ready.Load() })
	pub, err := serve.Listen(mux, serve.Options{Addr: "127.0.0.1:0"})
	s := startServer(t, pub, err)

	if code, body := get(t, s.URL()+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz = %d %q", code, body)
	}
	if code, body := get(t, s.URL()+"/readyz"); code != 503 || body != "not ready\n" {
		t.Errorf("readyz while not ready = %d %q, want 503 \"not ready\" and no detail", code, body)
	}
	if code, body := get(t, s.URL()+"/readyz?verbose"); code != 503 || body != "not ready\n" {
		t.Errorf("readyz?verbose while not ready = %d %q, want no detail", code, body)
	}
	var none error
	ready.Store(&none)
	if code, body := get(t, s.URL()+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("readyz when ready = %d %q", code, body)
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
		if code, body := get(t, s.URL()+path); code != 404 {
			t.Errorf("public %s = %d %q, want 404", path, code, body)
		}
	}
}

// The operators' listener serves the metrics, the reason a process is not
// ready, and the profiler, but not the command line.
func TestOpsListener(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "watershed_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Pointer[error]
	ready.Store(&notReady)
	ops, err := serve.ListenOps("127.0.0.1:0", reg, func() error { return *ready.Load() }, nil)
	s := startServer(t, ops, err)

	if code, body := get(t, s.URL()+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz = %d %q", code, body)
	}
	if code, body := get(t, s.URL()+"/readyz"); code != 503 || body != "not ready: "+notReady.Error()+"\n" {
		t.Errorf("ops readyz while not ready = %d %q, want the reason", code, body)
	}
	var none error
	ready.Store(&none)
	if code, _ := get(t, s.URL()+"/readyz"); code != 200 {
		t.Errorf("readyz when ready = %d", code)
	}
	if code, body := get(t, s.URL()+"/metrics"); code != 200 || !strings.Contains(body, "watershed_test_total 3") {
		t.Errorf("metrics = %d %q", code, body)
	}
	if code, body := get(t, s.URL()+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof index = %d", code)
	}
	if code, _ := get(t, s.URL()+"/debug/pprof/goroutine?debug=1"); code != 200 {
		t.Errorf("goroutine profile = %d", code)
	}
	if code, _ := get(t, s.URL()+"/debug/pprof/cmdline"); code != 404 {
		t.Errorf("cmdline = %d, want 404: a command line may hold a secret", code)
	}
}

// A client that never finishes its headers is cut off.
func TestSlowHeadersAreCutOff(t *testing.T) {
	s, err := serve.Listen(http.NewServeMux(), serve.Options{Addr: "127.0.0.1:0", ReadHeaderTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx) }()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	// The server closes the connection; the read ends well before this
	// deadline, which only keeps a broken server from hanging the test.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept a connection with unfinished headers open")
	}
}

func TestListenRefusesBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := serve.Listen(http.NewServeMux(), serve.Options{Addr: ln.Addr().String()}); err == nil {
		t.Fatal("listening on a busy address succeeded")
	}
}
