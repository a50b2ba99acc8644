package topology_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/watershed-io/watershed/topology"
)

// A group that fails the same way every time it starts, for a reason a
// restart in place cannot mend (here its tables' folder cannot be made: a
// file is in the way), ends Run with that error after RestartLimit
// restarts in a row, instead of restarting with backoff for ever behind a
// "restarting" readiness: the process exits and its supervisor shows it.
func TestRunnerStopsAGroupThatKeepsFailingTheSameWay(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	c := newCounter(4)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tables"), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := startRunner(t, c.t, topology.RunnerOptions{Kafka: k, DataDir: dir, Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: time.Millisecond, Max: 5 * time.Second}, RestartLimit: 3})
	select {
	case err := <-run.done:
		if err == nil || !errors.Is(err, topology.ErrRestartLimit) || !strings.Contains(err.Error(), syscall.ENOTDIR.Error()) {
			t.Errorf("Run returned %v, want the restart limit and the group's error (%v)", err, syscall.ENOTDIR)
		}
		if !strings.Contains(err.Error(), "count") || !strings.Contains(err.Error(), "3 times") {
			t.Errorf("Run's error %q does not name the group and how often it failed", err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the runner still restarts the group after a minute: %v", run.r.Ready())
	}
}
