package processors_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
)

// The kill test runs device-state in a child process (this test binary,
// started again with killChildEnv set) and kills it with SIGKILL while the
// table topic refuses its write: the record is then replayed on the same
// folder by a new process.

const killChildEnv = "WATERSHED_TABLE_KILL_CHILD"

// TestMain runs the kill test's child when the environment asks for it.
func TestMain(m *testing.M) {
	if spec := os.Getenv(killChildEnv); spec != "" {
		if err := killChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1) // only a kill ends the child well
	}
	os.Exit(m.Run())
}

// killChild runs device-state with the data folder and brokers of spec
// ("DIR,BROKER") until it is killed; it prints "ready" once it processes.
func killChild(spec string) error {
	dir, broker, _ := strings.Cut(spec, ",")
	p := processors.New(processors.Config{Partitions: 1, Now: func() time.Time { return received }})
	plan, err := p.Topology.Build()
	if err != nil {
		return err
	}
	r, err := topology.NewRunner(plan, topology.RunnerOptions{Kafka: topology.Kafka{Brokers: []string{broker}},
		DataDir: dir, Groups: []string{processors.GroupDeviceState}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	// Bounded, so that a child that never gets ready exits and the
	// parent's read of "ready" fails instead of waiting forever.
	deadline := time.Now().Add(time.Minute)
	for err := r.Ready(); err != nil; err = r.Ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("child not ready within a minute: %w", err)
		}
		select {
		case err := <-done:
			return fmt.Errorf("child run: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Println("ready")
	return <-done
}

// A process whose table write is being retried is killed after its table
// store had time to flush; a new process on the same folder replays the
// record. The table topic must end up holding what the local table holds.
func TestDeviceStateReplayAfterKill(t *testing.T) {
	b, k, p := startPipeline(t)
	dir, key := t.TempDir(), strconv.Itoa(device)

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), killChildEnv+"="+dir+","+k.Brokers[0])
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	}()
	if lines := bufio.NewScanner(out); !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the child did not start: %q %v", lines.Text(), lines.Err())
	}
	send(t, k, p.Normalized, key, oneReading(1), oneReading(2))
	waitLag(t, k, p, processors.GroupDeviceState)

	// The producer retries the refused write with 100 ms between
	// attempts; the storage flushes every 50 ms.
	refused := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: p.DeviceState.Name(), Err: kerr.NotLeaderForPartition, Count: -1})
	send(t, k, p.Normalized, key, oneReading(3))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := refused.Wait(ctx, 3); err != nil {
		t.Fatalf("the table write was not refused: %v", err)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killed = true
	refused.Remove()

	run := startGroup(t, k, p, processors.GroupDeviceState, dir)
	waitCommitted(t, context.Background(), run.r)
	run.stop(t)
	checkDeviceState(t, k, p, dir, key, 3)
}

// waitLag waits until group committed every record of its inputs.
func waitLag(t *testing.T, k topology.Kafka, p *processors.Pipeline, group string) {
	t.Helper()
	waitNoLag(t, func() ([]topology.PartitionLag, error) {
		return builtPlan(t, p.Topology).Lag(context.Background(), k, []string{group})
	})
}
