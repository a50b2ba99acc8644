package topology_test

import (
	"fmt"

	"github.com/IBM/sarama"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// The default partitioner is goka's, as topology.Partition computes it.
func TestGokaHashIsTheDefault(t *testing.T) {
	tp := topology.New("x")
	s := topology.NewStream(tp, "a", codecs.String{}, topology.External("me"))
	m := topology.NewStream(tp, "b", codecs.String{}, topology.External("connect"), topology.PartitionedBy(topology.Murmur2))
	if s.Partitioner() != topology.GokaHash || m.Partitioner() != topology.Murmur2 || tp.PartitionerOf(m.Name()) != topology.Murmur2 || tp.PartitionerOf("unknown") != topology.GokaHash {
		t.Fatal("declared partitioners")
	}
	for i := range 200 {
		key := []byte(fmt.Sprint("device-", i))
		if got, want := topology.GokaHash.Partition(key, 7), topology.Partition(key, 7); got != want {
			t.Fatalf("GokaHash.Partition(%s) = %d, Partition %d", key, got, want)
		}
	}
	if topology.GokaHash.String() != "goka" || topology.Murmur2.String() != "murmur2" {
		t.Error("names")
	}
}

// namesTable declares a group table written from a stream that kcat
// writes, both partitioned by Murmur2.
func namesTable(tp *topology.Topology) topology.Table[string] {
	murmur := topology.PartitionedBy(topology.Murmur2)
	names := topology.NewStream(tp, "names", codecs.String{}, topology.External("kcat"), murmur)
	owner := tp.Processor("names")
	tb := topology.Persist(owner, codecs.String{}, murmur)
	topology.Consume(owner, names, nop[string])
	return tb
}

func TestValidatePartitioners(t *testing.T) {
	murmur := topology.PartitionedBy(topology.Murmur2)
	for _, c := range []struct {
		name  string
		build func(tp *topology.Topology)
		want  []string // substrings of the problem; none: valid
	}{
		{"join across partitioners", func(tp *topology.Topology) {
			tb := namesTable(tp)
			orders := topology.NewStream(tp, "orders", codecs.String{}, topology.External("shop"))
			p := tp.Processor("enrich")
			topology.Join(p, tb)
			topology.Consume(p, orders, nop[string])
		}, []string{`processor "x.enrich"`, `table "x.names-table" is partitioned by murmur2`, `stream "x.orders" by goka`, "same partitioner"}},
		{"join on one partitioner", func(tp *topology.Topology) {
			tb := namesTable(tp)
			orders := topology.NewStream(tp, "orders", codecs.String{}, topology.External("java producer"), murmur)
			p := tp.Processor("enrich")
			topology.Join(p, tb)
			topology.Consume(p, orders, nop[string])
		}, nil},
		{"group table and input differ", func(tp *topology.Topology) {
			in := topology.NewStream(tp, "in", codecs.String{}, topology.External("connect"), murmur)
			p := tp.Processor("p")
			topology.Persist(p, codecs.String{})
			topology.Consume(p, in, nop[string])
		}, []string{`processor "x.p"`, `"x.p-table" is partitioned by goka`, `"x.in" by murmur2`}},
		{"inputs differ", func(tp *topology.Topology) {
			a := topology.NewStream(tp, "a", codecs.String{}, topology.External("connect"), murmur)
			b := topology.NewStream(tp, "b", codecs.String{}, topology.External("edge"))
			p := tp.Processor("p")
			topology.Consume(p, a, nop[string])
			topology.Consume(p, b, nop[string])
		}, []string{`processor "x.p"`, `"x.b" is partitioned by goka`}},
		{"lookup of a murmur2 table", func(tp *topology.Topology) {
			tb := namesTable(tp)
			orders := topology.NewStream(tp, "orders", codecs.String{}, topology.External("shop"))
			p := tp.Processor("enrich")
			topology.Lookup(p, tb)
			topology.Consume(p, orders, nop[string])
		}, []string{`processor "x.enrich" looks up table "x.names-table", partitioned by murmur2`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := topology.New("x", topology.WithPrefix("x."))
			c.build(tp)
			err := tp.Validate()
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("validated")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problem lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestDescribeShowsPartitioner(t *testing.T) {
	tp := topology.New("x")
	s := topology.NewStream(tp, "connect", codecs.String{}, topology.External("kafka connect"), topology.PartitionedBy(topology.Murmur2))
	topology.Consume(tp.Processor("p"), s, nop[string])
	var out strings.Builder
	if err := tp.Describe().Write(&out, topology.FormatJSON); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"partitioner": "murmur2"`) || strings.Count(out.String(), `"partitioner"`) != 1 {
		t.Errorf("description:\n%s", out.String())
	}
	out.Reset()
	if err := tp.Describe().Write(&out, topology.FormatText); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "key=key by murmur2") || strings.Count(out.String(), "murmur2") != 1 {
		t.Errorf("text description:\n%s", out.String())
	}
}

// A processor emitting to a stream declared Murmur2 writes each record to
// the partition Kafka's default partitioner would (where a Java consumer
// of that topic's partitions, or a join with a table written by Kafka
// Connect, expects it); its other outputs stay on goka's hash.
func TestRunnerProducesWithDeclaredPartitioner(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	tp := topology.New("part")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.WithPartitions(4), topology.External("test producer"))
	toJava := topology.NewStream(tp, "to-java", codecs.String{}, topology.WithPartitions(12), topology.PartitionedBy(topology.Murmur2))
	native := topology.NewStream(tp, "native", codecs.String{}, topology.WithPartitions(12))
	p := tp.Processor("fanout")
	outJava, outNative := topology.Produce(p, toJava), topology.Produce(p, native)
	topology.Consume(p, in, func(c *topology.Context, key, v string) error {
		for i := range 10 {
			k := fmt.Sprintf("%s-%d", v, i)
			if err := outJava.Emit(c, k, v); err != nil {
				return err
			}
			if err := outNative.Emit(c, k, v); err != nil {
				return err
			}
		}
		return nil
	})
	defer runTopo(t, tp, k, nil, nil).stop(t)
	produce(t, k, in.Name(), "a", "device", "b", "vehicle")
	for _, c := range []struct {
		name string
		p    topology.Partitioner
	}{{toJava.Name(), topology.Murmur2}, {native.Name(), topology.GokaHash}} {
		msgs := readAll(t, k, c.name, 20, 30*time.Second)
		moved := 0
		for _, m := range msgs {
			if want := c.p.Partition(m.Key, 12); m.Partition != want {
				t.Errorf("%s: key %s in partition %d, want %d (%s)", c.name, m.Key, m.Partition, want, c.p)
			}
			if topology.Murmur2.Partition(m.Key, 12) != topology.GokaHash.Partition(m.Key, 12) {
				moved++
			}
		}
		if moved == 0 {
			t.Fatalf("bad test: the two partitioners agree on every key")
		}
	}
}

// A join of topics that a Kafka producer wrote with its default
// partitioner: the names (a Murmur2 stream into a Murmur2 group table)
// and the orders (a Murmur2 stream) meet in the same partitions, so every
// order finds its name.
func TestJoinOfMurmur2Topics(t *testing.T) {
	k := topology.Kafka{Brokers: startBroker(t)}
	murmur := topology.PartitionedBy(topology.Murmur2)
	tp := topology.New("kjoin")
	names := topology.NewStream(tp, "names", codecs.String{}, topology.WithPartitions(6), topology.External("java producer"), murmur)
	orders := topology.NewStream(tp, "orders", codecs.String{}, topology.WithPartitions(6), topology.External("java producer"), murmur)
	enriched := topology.NewStream(tp, "enriched", codecs.String{}, topology.WithPartitions(6))
	owner := tp.Processor("names")
	table := topology.Persist(owner, codecs.String{}, topology.WithPartitions(6), murmur)
	topology.Consume(owner, names, func(c *topology.Context, key, v string) error { return table.Set(c, v) })
	p := tp.Processor("enrich")
	joined := topology.Join(p, table)
	out := topology.Produce(p, enriched)
	topology.Consume(p, orders, func(c *topology.Context, key, v string) error {
		name, ok, err := joined.Get(c)
		if err != nil {
			return err
		}
		if !ok {
			name = "?"
		}
		return out.Emit(c, key, v+" for "+name)
	})
	defer runTopo(t, tp, k, nil, nil).stop(t)

	var keys []string
	moved := 0
	for i := range 40 {
		keys = append(keys, fmt.Sprint(500+i))
		if topology.Murmur2.Partition([]byte(keys[i]), 6) != topology.GokaHash.Partition([]byte(keys[i]), 6) {
			moved++
		}
	}
	if moved < 20 {
		t.Fatalf("bad test: goka's hash agrees with murmur2 on %d of 40 keys", 40-moved)
	}
	produceWith(t, kafkaclient.ProducerConfigFor(k, topology.Murmur2), k.Brokers, names.Name(), keys, func(key string) string { return "name-" + key })
	// The orders follow once every name is in its table.
	readAll(t, k, table.Name(), len(keys), 30*time.Second)
	produceWith(t, kafkaclient.ProducerConfigFor(k, topology.Murmur2), k.Brokers, orders.Name(), keys, func(key string) string { return "order-" + key })
	for _, m := range readAll(t, k, enriched.Name(), len(keys), 30*time.Second) {
		if want := "order-" + string(m.Key) + " for name-" + string(m.Key); string(m.Value) != want {
			t.Errorf("key %s enriched to %q, want %q", m.Key, m.Value, want)
		}
	}
}

// produceWith sends a record per key, its value value(key), to topic with
// a producer of cfg.
func produceWith(t *testing.T, cfg *sarama.Config, brokers []string, topic string, keys []string, value func(string) string) {
	t.Helper()
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, key := range keys {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value(key))}); err != nil {
			t.Fatal(err)
		}
	}
}
