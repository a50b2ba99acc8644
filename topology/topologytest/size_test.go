package topologytest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// recordBytes is a record's size as the producer counts it against
// topology.MaxRecordBytes: key, value and headers, with room for framing.
func recordBytes(key string, value []byte, headers map[string][]byte) int {
	n := 36 + len(key) + len(value)
	for k, v := range headers {
		n += len(k) + len(v) + 10
	}
	return n
}

// An output too large for Kafka is refused where it is queued: the input
// record goes to the dead-letter topic as too_large, instead of failing the
// producer, and the group, on every restart.
func TestOversizeEmitIsDeadLettered(t *testing.T) {
	topo := topology.New("big")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.External("test"))
	out := topology.NewStream(topo, "out", codecs.Bytes{})
	p := topo.Processor("blow-up")
	emit := topology.Produce(p, out)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		return emit.Emit(c, key, make([]byte, topology.MaxRecordBytes))
	})
	d := topologytest.New(t, topo)
	topologytest.Send(d, in, "k", "x")
	if got := topologytest.Read(d, out); len(got) != 0 {
		t.Errorf("%d oversize records emitted", len(got))
	}
	dls := d.DeadLetters()
	if len(dls) != 1 || dls[0].Reason != topology.ReasonTooLarge {
		t.Fatalf("dead letters %+v, want one too_large", dls)
	}
}

// The dead letter of a record with a huge key fits in a Kafka record: its
// Kafka key is cut as the envelope's is.
func TestDeadLetterOfHugeKeyFits(t *testing.T) {
	topo := topology.New("keys")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.External("test"))
	p := topo.Processor("refuse")
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		return topology.Reject("refused", errors.New("no"))
	})
	d := topologytest.New(t, topo)
	key := strings.Repeat("k", topology.MaxRecordBytes*3/4)
	topologytest.Send(d, in, key, "x")
	dls := topologytest.Read(d, topo.DeadLetters())
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	b, err := topo.DeadLetters().Codec().Encode(dls[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if n := recordBytes(dls[0].Key, b, dls[0].Headers); n > topology.MaxRecordBytes {
		t.Errorf("the dead letter takes %d bytes, over MaxRecordBytes (%d): key %d bytes, envelope %d", n, topology.MaxRecordBytes, len(dls[0].Key), len(b))
	}
	if !strings.HasPrefix(key, dls[0].Key) || dls[0].Key == "" {
		t.Errorf("the dead letter's key (%d bytes) is not a prefix of the record's", len(dls[0].Key))
	}
}
