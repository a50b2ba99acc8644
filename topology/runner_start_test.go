package topology_test

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
)

// A runner started while no broker answers waits for one, not ready, and
// runs once it comes, instead of returning at once (which ends the
// process).
func TestRunnerWaitsForBrokers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cp := newCopyTopo(1)
	run := startRunner(t, cp.t, topology.RunnerOptions{Kafka: topology.Kafka{Brokers: []string{addr}},
		DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}})
	// Several attempts fail meanwhile.
	deadline := time.After(2 * time.Second)
	for waiting := true; waiting; {
		select {
		case err := <-run.done:
			t.Fatalf("Run returned while no broker answers: %v", err)
		case <-deadline:
			waiting = false
		case <-time.After(50 * time.Millisecond):
			if err := run.r.Ready(); err == nil {
				t.Fatal("ready while no broker answers")
			}
		}
	}
	b, err := embedded.Start(embedded.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	waitFor(t, 60*time.Second, run.r.Ready)
	run.stop(t)
}
