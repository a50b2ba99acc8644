package topology

import (
	"math"
	"testing"

	"github.com/IBM/sarama"
)

// murmur2Vectors are keys with the value of Kafka's
// org.apache.kafka.common.utils.Utils.murmur2 (as a signed int), and the
// partition its default partitioner gives them among 8 and 12 partitions
// (toPositive(murmur2) % n). The first six are the cases of Kafka's own
// tests of the function; all were computed with kafka-clients 4.1.2.
var murmur2Vectors = []struct {
	key     string
	murmur2 int32
	p8, p12 int32
}{
	{"21", -973932308, 4, 0},
	{"foobar", -790332482, 6, 6},
	{"a-little-bit-long-string", -985981536, 0, 8},
	{"a-little-bit-longer-string", -1486304829, 3, 11},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, 5, 5},
	{"abc", 479470107, 3, 3},
	{"", 275646681, 1, 9},
	{"1", -1993445489, 7, 3},
	{"4711", -1914427126, 2, 10},
	{"device-123456789", 1429956075, 3, 3},
}

func TestMurmur2KafkaVectors(t *testing.T) {
	for _, v := range murmur2Vectors {
		if got := int32(murmur2([]byte(v.key))); got != v.murmur2 {
			t.Errorf("murmur2(%q) = %d, want %d", v.key, got, v.murmur2)
		}
		if p8, p12 := Murmur2.Partition([]byte(v.key), 8), Murmur2.Partition([]byte(v.key), 12); p8 != v.p8 || p12 != v.p12 {
			t.Errorf("Murmur2.Partition(%q) = %d of 8, %d of 12; want %d, %d", v.key, p8, p12, v.p8, v.p12)
		}
	}
}

// The producers' partitioner places a topic's records by its declared
// partitioner, and goka's view hash (int32 of Sum32, negated when
// negative, modulo n) agrees with it.
func TestByTopicPartitioner(t *testing.T) {
	parts := map[string]Partitioner{"connect": Murmur2}
	ctor := originPartitioner(byTopicPartitioner(parts, Hasher))
	for _, v := range murmur2Vectors {
		for _, c := range []struct {
			topic string
			p     Partitioner
		}{{"connect", Murmur2}, {"native", GokaHash}} {
			m := &sarama.ProducerMessage{Topic: c.topic, Key: sarama.StringEncoder(v.key)}
			got, err := ctor(c.topic).Partition(m, 12)
			if want := c.p.Partition([]byte(v.key), 12); err != nil || got != want {
				t.Errorf("%s: key %q to partition %d (%v), want %d", c.topic, v.key, got, err, want)
			}
			h := c.p.hasher()()
			_, _ = h.Write([]byte(v.key))
			view := int32(h.Sum32())
			if view < 0 {
				view = -view
			}
			if view%12 != c.p.Partition([]byte(v.key), 12) {
				t.Errorf("%s: a view finds %q in partition %d, the producer puts it in %d", c.topic, v.key, view%12, c.p.Partition([]byte(v.key), 12))
			}
		}
	}
	if GokaHash.Partition([]byte("k"), 0) != 0 || Murmur2.Partition([]byte("k"), math.MinInt32) != 0 {
		t.Error("no partitions: not 0")
	}
}

// A group table placed by Murmur2 has its writes tracked by the storage
// of the partition Murmur2 puts the key in, where goka's processor of
// that partition writes it.
func TestChangelogFindsKeysByTablePartitioner(t *testing.T) {
	tp := New("x")
	in := NewStream(tp, "in", stringCodec{}, External("connect"), PartitionedBy(Murmur2), WithPartitions(12))
	p := tp.Processor("p")
	Persist(p, stringCodec{}, PartitionedBy(Murmur2), WithPartitions(12))
	Consume(p, in, func(*Context, string, string) error { return nil })
	if err := tp.Validate(); err != nil {
		t.Fatal(err)
	}
	cl := newChangelog(p, nil)
	for i := range cl.parts {
		cl.parts[i].Store(&changelogStorage{cl: cl, partition: int32(i)})
	}
	moved := 0
	for _, v := range murmur2Vectors {
		if got := cl.writer(v.key).partition; got != v.p12 {
			t.Errorf("key %q tracked by partition %d, Murmur2 puts it in %d", v.key, got, v.p12)
		}
		if GokaHash.Partition([]byte(v.key), 12) != v.p12 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("bad test: goka's hash agrees on every key")
	}
}
