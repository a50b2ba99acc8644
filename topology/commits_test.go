package topology_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/promhooks"
)

// copyTopo copies `in` (one partition) to `out`. Each record takes longer
// than the producer's flush interval, so that every output goes in a
// request of its own and one of them can be refused alone.
type copyTopo struct {
	t   *topology.Topology
	in  topology.Stream[string]
	out topology.Stream[string]
}

func newCopyTopo(outPartitions int32) *copyTopo {
	c := &copyTopo{t: topology.New("cp")}
	c.in = topology.NewStream(c.t, "in", codecs.String{}, topology.External("test"), topology.WithPartitions(1))
	c.out = topology.NewStream(c.t, "out", codecs.String{}, topology.WithPartitions(outPartitions))
	p := c.t.Processor("copy")
	emit := topology.Produce(p, c.out)
	topology.Consume(p, c.in, func(ctx *topology.Context, key, v string) error {
		time.Sleep(30 * time.Millisecond)
		return emit.Emit(ctx, key, v)
	})
	return c
}

// producesSequence matches a produce request whose batch for partition 0
// of topic holds the record with producer sequence seq: with one producer
// writing the partition, the seq-th record it sent there.
func producesSequence(topic string, seq int32) func(kmsg.Request) bool {
	return func(r kmsg.Request) bool {
		req, ok := r.(*kmsg.ProduceRequest)
		if !ok {
			return false
		}
		for _, rt := range req.Topics {
			if rt.Topic != topic {
				continue
			}
			for _, rp := range rt.Partitions {
				var b kmsg.RecordBatch
				if rp.Partition != 0 || b.ReadFrom(rp.Records) != nil {
					continue
				}
				if b.FirstSequence <= seq && seq < b.FirstSequence+b.NumRecords {
					return true
				}
			}
		}
		return false
	}
}

// keysAvoiding returns n keys: with more than one partition, the one at
// index hit maps to partition part of parts, and no earlier one does.
func keysAvoiding(n, hit int, parts, part int32) []string {
	keys := make([]string, 0, n)
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("k%d", i)
		onPart := parts == 1 && len(keys) == hit || parts > 1 && topology.Partition([]byte(k), parts) == part
		if (len(keys) < hit && onPart) || (len(keys) == hit && !onPart) {
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// A record whose output is refused by the broker (past the producer's
// retries) while later records of its partition are emitted is never
// committed past: the group restarts with backoff, processes it again,
// and `out` ends with every record. Today goka commits each record as its
// own emits finish, so later records commit past the failed one, and the
// runner stops every group on the producer's error.
func TestFailedEmitIsNotCommittedPast(t *testing.T) {
	for _, c := range []struct {
		name  string
		parts int32
		fault func(out string) kfake.Fault
	}{
		{"refused once", 1, func(out string) kfake.Fault {
			return kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out, Err: kerr.TopicAuthorizationFailed,
				When: producesSequence(out, 3)}
		}},
		{"not enough replicas past the retries", 1, func(out string) kfake.Fault {
			return kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out, Err: kerr.NotEnoughReplicas, Count: 11,
				When: producesSequence(out, 3)}
		}},
		{"one output partition refused once", 4, func(out string) kfake.Fault {
			return kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: out, Err: kerr.TopicAuthorizationFailed,
				Partitions: []int32{2}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := embedded.Start(embedded.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			k := topology.Kafka{Brokers: b.Addrs()}
			cp := newCopyTopo(c.parts)
			keys := keysAvoiding(10, 3, c.parts, 2)
			fault := b.Fault(c.fault(cp.out.Name()))

			reg := prometheus.NewRegistry()
			m, err := promhooks.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			opts := topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Hooks: []topology.Hook{m}, Logger: slog.New(slog.DiscardHandler),
				RestartBackoff: topology.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}}
			run := runWith(t, cp.t, opts)
			var kv []string
			for i, key := range keys {
				kv = append(kv, key, fmt.Sprintf("v%d", i))
			}
			produce(t, k, cp.in.Name(), kv...)

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := fault.Wait(ctx, 1); err != nil {
				t.Fatalf("the fault never answered: %v", err)
			}
			// Until every record is committed: a runner that stopped is
			// started again, as a process supervisor would.
			restarted := false
			waitFor(t, 90*time.Second, func() error {
				select {
				case err := <-run.done:
					t.Errorf("runner stopped after a refused emit instead of restarting the group: %v", err)
					if err := run.r.Ready(); err == nil || strings.Contains(err.Error(), "recovering") {
						t.Errorf("ready after the runner stopped says %v", err)
					}
					opts.Hooks, opts.DataDir = nil, t.TempDir()
					run, restarted = startRunner(t, cp.t, opts), true
				default:
				}
				if n := lagOf(t, cp.t, k, "copy"); n != 0 {
					return fmt.Errorf("lag %d", n)
				}
				return nil
			})
			// Every output was acknowledged before its input committed:
			// what is missing now is lost.
			got := map[string]bool{}
			readUntil(t, k, cp.out.Name(), 10*time.Second, func(msgs []*sarama.ConsumerMessage) bool {
				for _, m := range msgs {
					got[string(m.Value)] = true
				}
				return len(got) == len(keys)
			})
			for i := range keys {
				if v := fmt.Sprintf("v%d", i); !got[v] {
					t.Errorf("out lacks %s after every input was committed", v)
				}
			}
			if !restarted {
				if n := counterValue(t, reg, "watershed_group_restarts_total"); n < 1 {
					t.Errorf("%v group restarts, want at least one", n)
				}
				waitFor(t, 60*time.Second, run.r.Ready)
			}
			run.stop(t)
		})
	}
}
