package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/cassandra"
	"github.com/watershed-io/watershed/sinks/local"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A sink replica started while Cassandra is unreachable waits for it, not
// ready, instead of exiting; stopped, it exits 0.
func TestRunWaitsForUnreachableStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- runRun(ctx, registry(), []string{"--brokers", closedAddr(t), "--groups", "sink,sink-retry",
			"--data-dir", t.TempDir(), "--ops-addr", "127.0.0.1:0",
			"--store", "cassandra", "--cassandra-hosts", closedAddr(t)}, nil, io.Discard, &stderr)
	}()
	// Two failed attempts logged, then the operators' listener is asked.
	for strings.Count(stderr.String(), "store not reachable") < 2 {
		select {
		case c := <-code:
			t.Fatalf("run exited %d while the store is unreachable; want it to wait\n%s", c, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	m := regexp.MustCompile(`"url":"(http://[^"]+)"`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no operators' listener logged:\n%s", stderr.String())
	}
	resp, err := http.Get(m[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("/readyz %d %q while the store is unreachable, want not ready", resp.StatusCode, body)
	}
	resp, err = http.Get(m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^watershed_store_open_failures_total [1-9]`).Match(body) {
		t.Errorf("/metrics has no failed store opening counted:\n%s", body)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run stopped while waiting for the store exited %d, want 0\n%s", c, stderr.String())
	}
}

// A refused login is permanent: run exits at once.
func TestOpenWaitingPermanent(t *testing.T) {
	calls := 0
	errAuth := fmt.Errorf("cassandra: connect: %w", cassandra.ErrAuthentication)
	_, err := openWaiting(context.Background(), func(context.Context) (sinks.Store, error) {
		calls++
		return nil, errAuth
	}, storeWait{min: time.Millisecond, max: time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	if !errors.Is(err, cassandra.ErrAuthentication) || calls != 1 {
		t.Errorf("after a refused login: %v, %d attempts; want ErrAuthentication after 1", err, calls)
	}
}

// A store that becomes reachable is opened.
func TestOpenWaitingUntilReachable(t *testing.T) {
	calls := 0
	want, err := local.Open(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	got, err := openWaiting(context.Background(), func(context.Context) (sinks.Store, error) {
		if calls++; calls < 3 {
			return nil, fmt.Errorf("cassandra: connect: %w", sinks.ErrUnavailable)
		}
		return want, nil
	}, storeWait{min: time.Millisecond, max: 2 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	if err != nil || got != want || calls != 3 {
		t.Errorf("openWaiting: %v, %v after %d attempts; want the store after 3", got, err, calls)
	}
}
