package probe

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// closedPort returns a loopback address on which nothing listens: it binds a
// free port and releases it.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// The probes must fail, within their deadline, with a message that names the
// service, the address and the cause, when nothing listens.
func TestProbesFailClearlyWhenServiceIsDown(t *testing.T) {
	addr := closedPort(t)
	for _, tc := range []struct {
		service string
		probe   func(context.Context, []string) error
	}{
		{"kafka", func(ctx context.Context, a []string) error { _, err := Kafka(ctx, a); return err }},
		{"cassandra", func(ctx context.Context, a []string) error { _, err := Cassandra(ctx, a); return err }},
	} {
		t.Run(tc.service, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := tc.probe(ctx, []string{addr})
			if err == nil {
				t.Fatalf("probe of %s succeeded with nothing listening on %s", tc.service, addr)
			}
			if took := time.Since(start); took > 1500*time.Millisecond+AttemptTimeout {
				t.Errorf("probe took %s, past its deadline", took)
			}
			msg := err.Error()
			for _, want := range []string{tc.service + " at " + addr + " not ready after", "attempts", "connection refused"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
		})
	}
}

func TestProbesNeedAnAddress(t *testing.T) {
	if _, err := Kafka(context.Background(), nil); err == nil {
		t.Error("Kafka probe without address succeeded")
	}
	if _, err := Cassandra(context.Background(), nil); err == nil {
		t.Error("Cassandra probe without address succeeded")
	}
}
