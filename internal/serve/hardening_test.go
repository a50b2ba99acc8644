package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/views"
)

// The hostile requests of these tests go to the edge and the view API
// served as `watershed ingest` and `watershed view` serve them: the API
// handler and the operational endpoints on one serve.Server. The edge's
// own tests cover its answers to oversized and endless bodies in detail;
// here every hostile request is followed by a /healthz that must answer.

const (
	hardeningSecret = "hardening-device-secret-0123456789"
	hardeningKey    = "hardening-view-key-0123456789"
	// maxRequests is the servers' MaxConcurrentRequests.
	maxRequests = 4
)

// target is a running server under attack.
type target struct {
	name string
	srv  *serve.Server
	reg  *prometheus.Registry
	// request writes the start of a legitimate API request, up to and
	// including the headers' end, with extra header lines.
	request func(w io.Writer, extra string)
	// method and path are those of the API.
	method, path string
	// okCode is the answer to a complete legitimate request.
	okCode int
	// complete sends a complete legitimate request and returns the code.
	complete func(t *testing.T) int
	// held reports how many requests are held in the API's handler.
	held func(t *testing.T) int
	// pkg is the edge's legitimate package.
	pkg []byte
}

// serveFor starts srv until the test ends.
func serveFor(t *testing.T, srv *serve.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

func hardenedOptions(reg prometheus.Registerer) serve.Options {
	return serve.Options{
		Addr:                  "127.0.0.1:0",
		ReadHeaderTimeout:     300 * time.Millisecond,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          5 * time.Second,
		MaxConcurrentRequests: maxRequests,
		ShutdownTimeout:       time.Second,
		Registerer:            reg,
		Logger:                slog.New(slog.DiscardHandler),
	}
}

func edgeTarget(t *testing.T) *target {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	k := topology.Kafka{Brokers: b.Addrs(), ClientID: "hardening"}
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{edge.DefaultRawTopic, edge.DefaultDeadLetterTopic} {
		if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	_ = admin.Close()
	reg := prometheus.NewRegistry()
	// The held requests of TestConcurrentRequestsAreBounded are all of one
	// device: it may have them all in flight.
	e, err := edge.New(edge.Options{Kafka: k, Secret: []byte(hardeningSecret), Registerer: reg, Logger: slog.New(slog.DiscardHandler),
		MaxDeviceInFlight: 2 * maxRequests})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(edge.Path, e.Handler())
	serve.Health(mux, e.Ready)
	opts := hardenedOptions(reg)
	opts.DeferAdmission = edge.DefersAdmission // as `watershed ingest` serves it
	srv, err := serve.Listen(mux, opts)
	if err != nil {
		t.Fatal(err)
	}
	serveFor(t, srv)
	t.Cleanup(func() { _ = e.Close() }) // after the server stopped
	const id = 42
	pkg, err := protocol.Encode(protocol.Header{Version: 1, DeviceID: id, BaseTimeMs: 1_773_500_000_000},
		[]protocol.Message{{Type: protocol.TypeAccel, TimeMs: 1_773_500_000_000, ZMg: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	auth := "Bearer " + edge.Token([]byte(hardeningSecret), id)
	return &target{
		name: "edge", srv: srv, reg: reg, okCode: http.StatusAccepted, method: http.MethodPost, path: edge.Path, pkg: pkg,
		request: func(w io.Writer, extra string) {
			fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: edge\r\nAuthorization: %s\r\n%s\r\n", edge.Path, auth, extra)
		},
		held: func(t *testing.T) int {
			// Each held request has taken budget for its 100 bytes.
			return int(gauge(t, reg, "watershed_edge_inflight_bytes") / 100)
		},
		complete: func(t *testing.T) int {
			req, err := http.NewRequest(http.MethodPost, srv.URL()+edge.Path, bytes.NewReader(pkg))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", auth)
			return do(t, req)
		},
	}
}

// gatedSource answers one device once its gate is open.
type gatedSource struct {
	gate    chan struct{}
	waiting *atomic.Int64
}

func (s gatedSource) Get(id uint64) (records.DeviceState, bool, error) {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	<-s.gate
	return records.DeviceState{}, id == 7, nil
}

func (gatedSource) Ready() error { return nil }

func viewTarget(t *testing.T, gate chan struct{}) *target {
	t.Helper()
	keys, err := views.FullScopeKey(hardeningKey)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	waiting := new(atomic.Int64)
	v, err := views.New(views.Options{Source: gatedSource{gate, waiting}, Keys: keys, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(views.DevicesPath, v.Handler())
	serve.Health(mux, func() error { return nil })
	srv, err := serve.Listen(mux, hardenedOptions(reg))
	if err != nil {
		t.Fatal(err)
	}
	serveFor(t, srv)
	return &target{
		name: "view", srv: srv, reg: reg, okCode: http.StatusOK, method: http.MethodGet, path: views.DevicesPath + "7",
		request: func(w io.Writer, extra string) {
			fmt.Fprintf(w, "GET %s7 HTTP/1.1\r\nHost: view\r\nAuthorization: Bearer %s\r\n%s\r\n", views.DevicesPath, hardeningKey, extra)
		},
		held: func(*testing.T) int { return int(waiting.Load()) },
		complete: func(t *testing.T) int {
			req, err := http.NewRequest(http.MethodGet, srv.URL()+views.DevicesPath+"7", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+hardeningKey)
			return do(t, req)
		},
	}
}

// do sends req on a fresh connection and returns the status code.
func do(t *testing.T, req *http.Request) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// healthy checks that the server still answers /healthz.
func healthy(t *testing.T, tg *target, after string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, tg.srv.URL()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := do(t, req); code != http.StatusOK {
		t.Fatalf("%s: /healthz after %s = %d, want 200", tg.name, after, code)
	}
}

// dial opens a connection to the target, closed when the test ends.
func dial(t *testing.T, tg *target) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", tg.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Only a broken server lets this deadline pass; no answer depends on it.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

// readAnswer reads one response from conn.
func readAnswer(t *testing.T, conn net.Conn) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestHostileRequests(t *testing.T) {
	gate := make(chan struct{})
	close(gate)
	for _, tg := range []*target{edgeTarget(t), viewTarget(t, gate)} {
		t.Run(tg.name, func(t *testing.T) {
			if code := tg.complete(t); code != tg.okCode {
				t.Fatalf("legitimate request = %d, want %d", code, tg.okCode)
			}
			healthy(t, tg, "a legitimate request")

			t.Run("headers byte by byte", func(t *testing.T) {
				conn := dial(t, tg)
				// An endless header, one byte at a time: the server must
				// close the connection, which ends the writes.
				wrote := make(chan error, 1)
				go func() {
					if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
						wrote <- err
						return
					}
					for {
						if _, err := conn.Write([]byte{'a'}); err != nil {
							wrote <- err
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				}()
				_, err := io.ReadAll(conn)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the server kept a connection trickling its headers open")
				}
				if err := <-wrote; err == nil {
					t.Fatal("writes went on")
				}
				healthy(t, tg, "headers sent byte by byte")
			})

			t.Run("headers over the limit", func(t *testing.T) {
				conn := dial(t, tg)
				go tg.request(conn, "X-Big: "+strings.Repeat("b", 64<<10)+"\r\n")
				if resp := readAnswer(t, conn); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
					t.Fatalf("64 KiB of headers = %d, want 431", resp.StatusCode)
				}
				healthy(t, tg, "oversized headers")
			})

			t.Run("huge Content-Length", func(t *testing.T) {
				conn := dial(t, tg)
				// Only the headers: an answer proves the body was not awaited.
				tg.request(conn, "Content-Length: 1099511627776\r\n")
				resp := readAnswer(t, conn)
				if tg.name == "edge" && resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Errorf("a 1 TiB Content-Length = %d, want 413", resp.StatusCode)
				}
				if !resp.Close {
					t.Error("the server keeps the connection of an unread 1 TiB body")
				}
				healthy(t, tg, "a huge Content-Length")
			})

			t.Run("endless chunked body", func(t *testing.T) {
				conn := dial(t, tg)
				tg.request(conn, "Transfer-Encoding: chunked\r\n")
				if tg.name == "edge" {
					// A package header that authenticates: the edge reads
					// on. (Bytes that are not one are answered 400 at once.)
					h := protocol.AppendHeader(nil, protocol.Header{Version: 1, DeviceID: 42, MessageCount: 1, BodyLen: protocol.MaxBodyLen})
					fmt.Fprintf(conn, "%x\r\n%s\r\n", len(h), h)
				}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					chunk := fmt.Sprintf("%x\r\n%s\r\n", 16<<10, bytes.Repeat([]byte{0xA5}, 16<<10))
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := io.WriteString(conn, chunk); err != nil {
							return
						}
					}
				}()
				resp := readAnswer(t, conn)
				if tg.name == "edge" && resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Errorf("an endless chunked body = %d, want 413", resp.StatusCode)
				}
				if !resp.Close {
					t.Error("the server keeps the connection of an endless body")
				}
				close(stop)
				conn.Close()
				wg.Wait()
				healthy(t, tg, "an endless chunked body")
			})
		})
	}
}

// Requests beyond MaxConcurrentRequests are answered 503 at once, while
// /healthz still answers; once the held requests end, requests are served
// again.
func TestConcurrentRequestsAreBounded(t *testing.T) {
	gate := make(chan struct{})
	for _, tg := range []*target{edgeTarget(t), viewTarget(t, gate)} {
		t.Run(tg.name, func(t *testing.T) {
			// Hold every slot: the edge waits for bodies that do not come,
			// the view for its source's gate.
			var held []net.Conn
			for range maxRequests {
				conn := dial(t, tg)
				if tg.name == "edge" {
					// An authenticated request: its package header
					// arrives, the rest of its 100 bytes does not. (One
					// that has not authenticated holds no slot.)
					tg.request(conn, "Content-Length: 100\r\n")
					conn.Write(protocol.AppendHeader(nil, protocol.Header{Version: 1, DeviceID: 42, MessageCount: 1, BodyLen: 100 - protocol.HeaderLenV1}))
				} else {
					tg.request(conn, "")
				}
				held = append(held, conn)
			}
			// The held requests reach their handlers in their own time.
			for tg.held(t) < maxRequests {
				time.Sleep(5 * time.Millisecond)
			}
			// The view sheds a request without a key, which would be
			// answered 401 at once; the edge a complete, authenticated one
			// (it takes its slot only after the token was checked).
			conn := dial(t, tg)
			if tg.name == "edge" {
				tg.request(conn, fmt.Sprintf("Content-Length: %d\r\n", len(tg.pkg)))
				conn.Write(tg.pkg)
			} else {
				fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", tg.method, tg.path)
			}
			shed := readAnswer(t, conn)
			if shed.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("request beyond the limit = %d, want 503", shed.StatusCode)
			}
			if got := shedCount(t, tg.reg); got < 1 {
				t.Errorf("watershed_http_requests_shed_total = %v after a shed request", got)
			}
			if shed.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			healthy(t, tg, "a saturated API")
			// Free the slots: the edge's requests end when their
			// connections close, the view's when the gate opens.
			for _, c := range held {
				c.Close()
			}
			if tg.name == "view" {
				close(gate)
			}
			for {
				code := tg.complete(t)
				if code == tg.okCode {
					break
				}
				if code != http.StatusServiceUnavailable {
					t.Fatalf("after the held requests ended: %d", code)
				}
			}
		})
	}
}

// shedCount reads watershed_http_requests_shed_total.
func shedCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return gauge(t, reg, "watershed_http_requests_shed_total")
}

// gauge reads the unlabelled counter or gauge name (0 when absent).
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}
