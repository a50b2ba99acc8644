package serve_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
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

func TestOpsEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "watershed_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var ready error = errors.New("tables recovering")
	mux := http.NewServeMux()
	serve.Ops(mux, reg, func() error { return ready })
	s, err := serve.Listen(mux, serve.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	if code, body := get(t, s.URL()+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz = %d %q", code, body)
	}
	if code, body := get(t, s.URL()+"/readyz"); code != 503 || !strings.Contains(body, "tables recovering") {
		t.Errorf("readyz while not ready = %d %q", code, body)
	}
	ready = nil
	if code, _ := get(t, s.URL()+"/readyz"); code != 200 {
		t.Errorf("readyz when ready = %d", code)
	}
	if code, body := get(t, s.URL()+"/metrics"); code != 200 || !strings.Contains(body, "watershed_test_total 3") {
		t.Errorf("metrics = %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
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
