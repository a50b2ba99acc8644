package topology_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// Issue 13, hole 4: the topics a runner creates take records up to
// MaxRecordBytes (the embedded broker, like Kafka, refuses batches over a
// topic's max.message.bytes, 1,048,588 bytes by default), and the
// dead-letter envelope of such a record, too large for any producer, is
// cut to fit with its reason kept and counted, instead of failing the
// group's emit forever.
func TestLargestRecordIsDeadLetteredCutToFit(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	tp := topology.New("big")
	in := topology.NewStream(tp, "in", codecs.Bytes{}, topology.External("test"), topology.WithPartitions(1))
	p := tp.Processor("refuse")
	topology.Consume(p, in, func(c *topology.Context, key string, v []byte) error {
		return topology.Reject("too_odd", fmt.Errorf("%d bytes", len(v)))
	})
	reg := prometheus.NewRegistry()
	run := runTopo(t, tp, k, nil, reg)
	defer run.stop(t)

	value := make([]byte, topology.MaxRecordBytes-1024) // incompressible
	_, _ = rand.Read(value)
	produce(t, k, in.Name(), "k", string(value))
	msgs := readAll(t, k, tp.DeadLetterTopic(), 1, 60*time.Second)
	e, err := records.EnvelopeCodec{}.Decode(msgs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if e.Reason != "too_odd" || e.Stage != "refuse" || e.Topic != in.Name() || e.Offset != 0 {
		t.Errorf("envelope %s/%s %s@%d", e.Stage, e.Reason, e.Topic, e.Offset)
	}
	var marker []byte
	for _, h := range e.Headers {
		if h.Key == topology.HeaderValueTruncated {
			marker = h.Value
		}
	}
	if string(marker) != strconv.Itoa(len(value)) || len(e.Value) >= len(value) || !bytes.Equal(e.Value, value[:len(e.Value)]) {
		t.Errorf("marker %q, %d value bytes of %d: want a marked prefix", marker, len(e.Value), len(value))
	}
	if n := counterValue(t, reg, "watershed_dead_letters_truncated_total"); n != 1 {
		t.Errorf("watershed_dead_letters_truncated_total = %v, want 1", n)
	}
}
