package topology_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// The dead-letter tests replay a record that was dead-lettered (and whose
// other output the broker refuses) before its commit: the group restarted
// in place, the process killed with SIGKILL, or another replica taking the
// partition over. The dead-letter topic must hold its envelope once.

// deadOnceChildEnv makes this test binary the killed child process of
// TestDeadLetterOnceAfterKill: "DIR,BROKER".
const deadOnceChildEnv = "WATERSHED_DEAD_ONCE_CHILD"

// TestMain runs the kill test's child when the environment asks for it.
func TestMain(m *testing.M) {
	if spec := os.Getenv(deadOnceChildEnv); spec != "" {
		if err := deadOnceChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1) // only a kill ends the child well
	}
	os.Exit(m.Run())
}

// splitTopo copies `in` (one partition) to `out`; a value starting with
// "bad" is also dead-lettered (as the decode stage dead-letters one bad
// message of a good package). Each record takes longer than the
// producer's flush interval, so that each output goes in a request of its
// own and the one of `bad3` can be refused alone.
type splitTopo struct {
	t   *topology.Topology
	in  topology.Stream[string]
	out topology.Stream[string]
}

func newSplitTopo() *splitTopo {
	s := &splitTopo{t: topology.New("dl")}
	s.in = topology.NewStream(s.t, "in", codecs.String{}, topology.External("test"), topology.WithPartitions(1))
	s.out = topology.NewStream(s.t, "out", codecs.String{}, topology.WithPartitions(1))
	p := s.t.Processor("split")
	emit := topology.Produce(p, s.out)
	topology.Consume(p, s.in, func(ctx *topology.Context, key, v string) error {
		time.Sleep(30 * time.Millisecond)
		if strings.HasPrefix(v, "bad") {
			ctx.DeadLetter("bad_value", errors.New("a bad value"), []byte(v))
		}
		return emit.Emit(ctx, key, v)
	})
	return s
}

// splitValues are the records sent: the fourth (offset 3) is dead-lettered.
var splitValues = []string{"v0", "v1", "v2", "bad3", "v4", "v5"}

func (s *splitTopo) send(t *testing.T, k topology.Kafka) {
	t.Helper()
	var kv []string
	for i, v := range splitValues {
		kv = append(kv, fmt.Sprintf("k%d", i), v)
	}
	produce(t, k, s.in.Name(), kv...)
}

// refuseBad3 refuses the produce of bad3's output to `out` (the fourth
// record its producer sends there), count times (-1: until removed).
func (s *splitTopo) refuseBad3(b *embedded.Broker, err *kerr.Error, count int) *kfake.FaultHandle {
	return b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: s.out.Name(), Err: err, Count: count,
		When: producesSequence(s.out.Name(), 3)})
}

// startSplit starts an embedded broker for a splitTopo.
func startSplit(t *testing.T) (*embedded.Broker, topology.Kafka, *splitTopo) {
	t.Helper()
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, topology.Kafka{Brokers: b.Addrs()}, newSplitTopo()
}

// waitRefused waits until the broker refused bad3's output once.
func waitRefused(t *testing.T, fault *kfake.FaultHandle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := fault.Wait(ctx, 1); err != nil {
		t.Fatalf("the fault never answered: %v", err)
	}
}

func (s *splitTopo) options(k topology.Kafka, dir string) topology.RunnerOptions {
	return topology.RunnerOptions{Kafka: k, DataDir: dir, Logger: slog.New(slog.DiscardHandler),
		RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}}
}

// deadLetters reads every envelope of the dead-letter topic up to its
// current end.
func deadLetters(t *testing.T, k topology.Kafka, topic string) []records.Envelope {
	t.Helper()
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []records.Envelope
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				e, err := records.EnvelopeCodec{}.Decode(m.Value)
				if err != nil {
					t.Fatalf("dead letter %d/%d: %v", p, m.Offset, err)
				}
				out = append(out, e)
				done = m.Offset+1 >= end
			case <-time.After(10 * time.Second):
				t.Fatalf("dead-letter partition %d not read to its end %d", p, end)
			}
		}
		pc.Close()
	}
	return out
}

// bad3Letters counts the envelopes of bad3 (offset 3 of `in`).
func (s *splitTopo) bad3Letters(t *testing.T, k topology.Kafka) int {
	t.Helper()
	n := 0
	for _, e := range deadLetters(t, k, s.t.DeadLetterTopic()) {
		if e.Stage != "split" || e.Topic != s.in.Name() || e.Partition != 0 || e.Reason != "bad_value" {
			t.Errorf("unexpected dead letter %s %s %s/%d@%d", e.Stage, e.Reason, e.Topic, e.Partition, e.Offset)
			continue
		}
		if e.Offset != 3 || string(e.Value) != "bad3" {
			t.Errorf("dead letter of %s/%d@%d value %q, want only bad3 at offset 3", e.Topic, e.Partition, e.Offset, e.Value)
			continue
		}
		n++
	}
	return n
}

// waitBad3Letter waits until bad3's envelope is in the dead-letter topic.
func (s *splitTopo) waitBad3Letter(t *testing.T, k topology.Kafka) {
	t.Helper()
	waitFor(t, 60*time.Second, func() error {
		if n := s.bad3Letters(t, k); n == 0 {
			return errors.New("no dead letter of bad3 yet")
		}
		return nil
	})
}

// checkDone waits until every record is committed, then checks that `out`
// holds every value and the dead-letter topic bad3's envelope once.
func (s *splitTopo) checkDone(t *testing.T, k topology.Kafka) {
	t.Helper()
	waitCommitted(t, s.t, k, "split")
	got := map[string]bool{}
	readUntil(t, k, s.out.Name(), 10*time.Second, func(msgs []*sarama.ConsumerMessage) bool {
		for _, m := range msgs {
			got[string(m.Value)] = true
		}
		return len(got) == len(splitValues)
	})
	for _, v := range splitValues {
		if !got[v] {
			t.Errorf("out lacks %s", v)
		}
	}
	if n := s.bad3Letters(t, k); n != 1 {
		t.Errorf("the dead-letter topic holds %d envelopes of bad3, want 1", n)
	}
}

// A record dead-lettered whose other output the broker refuses once stays
// uncommitted; the runner restarts the group, which replays it and must
// not write its dead letter again.
func TestDeadLetterOnceAfterGroupRestart(t *testing.T) {
	b, k, s := startSplit(t)
	fault := s.refuseBad3(b, kerr.TopicAuthorizationFailed, 1)
	run := runWith(t, s.t, s.options(k, t.TempDir()))
	s.send(t, k)
	waitRefused(t, fault)
	s.checkDone(t, k)
	run.stop(t)
}

// A process whose record was dead-lettered, and whose other output is
// being refused, is killed with SIGKILL; a new process on the same folder
// replays the record.
func TestDeadLetterOnceAfterKill(t *testing.T) {
	b, k, s := startSplit(t)
	dir := t.TempDir()
	fault := s.refuseBad3(b, kerr.NotEnoughReplicas, -1)

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), deadOnceChildEnv+"="+dir+","+k.Brokers[0])
	child.Stderr = os.Stderr
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
	s.send(t, k)
	s.waitBad3Letter(t, k)
	waitRefused(t, fault)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killed = true
	fault.Remove()

	run := startRunner(t, s.t, s.options(k, dir))
	s.checkDone(t, k)
	run.stop(t)
}

// deadOnceChild runs the split group with the data folder and broker of
// spec ("DIR,BROKER") until it is killed; it prints "ready" once it
// processes.
func deadOnceChild(spec string) error {
	dir, broker, _ := strings.Cut(spec, ",")
	s := newSplitTopo()
	plan, err := s.t.Build()
	if err != nil {
		return err
	}
	r, err := topology.NewRunner(plan, s.options(topology.Kafka{Brokers: []string{broker}}, dir))
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	for r.Ready() != nil {
		select {
		case err := <-done:
			return fmt.Errorf("child run: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Println("ready")
	return <-done
}

// A replica whose record was dead-lettered, and whose other output is
// being refused, hands the partition to another replica on another
// folder, which replays the record.
func TestDeadLetterOnceAfterReplicaTakeover(t *testing.T) {
	b, k, s := startSplit(t)
	fault := s.refuseBad3(b, kerr.NotEnoughReplicas, -1)
	first := runWith(t, s.t, s.options(k, t.TempDir()))
	s.send(t, k)
	s.waitBad3Letter(t, k)
	waitRefused(t, fault)
	second := startRunner(t, s.t, s.options(k, t.TempDir()))
	first.cancel()
	// Its group may be failing on the refused output as it stops.
	if err := <-first.done; err != nil && !topology.Recoverable(err) {
		t.Fatalf("first replica: %v", err)
	}
	fault.Remove()
	s.checkDone(t, k)
	second.stop(t)
}
