package topology

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology/windowstore"
)

// The cost of a session start: bringing the claimed partitions' windows
// and timers up to their changelogs (read from the embedded broker,
// applied to stores on disk), each partition holding n windows and n
// timers (n/10 keys, ten hourly windows each, one timer a window). With
// fresh, a takeover on an empty folder: every change is read. Without, a
// restart on the same folder with nothing new in the changelogs: only the
// copy of the checkpointed stores. The time is per session start;
// ns/change divides it by the changes the changelogs hold.
func BenchmarkRestoreSessionState(b *testing.B) {
	for _, c := range []struct{ parts, n int }{{1, 10_000}, {1, 100_000}, {8, 1_000}} {
		for _, fresh := range []bool{true, false} {
			b.Run(fmt.Sprintf("partitions=%d/windows=%d/fresh=%v", c.parts, c.n, fresh), func(b *testing.B) { benchRestore(b, int32(c.parts), c.n, fresh) })
		}
	}
}

func benchRestore(b *testing.B, parts int32, n int, fresh bool) {
	br, err := embedded.Start(embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	topo := New("bench")
	p := topo.Processor("g")
	td := p.timeState()
	windows := td.addState("aggregate-windows", stateWindows, "int", "json", 0)
	windows.size, windows.segment, windows.retention = time.Hour.Milliseconds(), 6*time.Hour.Milliseconds(), 48*time.Hour.Milliseconds()
	td.timers = td.addState("timers", stateTimers, "timers", "framework", 0)

	k := Kafka{Brokers: br.Addrs()}
	admin, err := sarama.NewClusterAdmin(k.Brokers, k.config())
	if err != nil {
		b.Fatal(err)
	}
	for _, st := range td.states {
		if err := admin.CreateTopic(st.topic.name, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: 1}, false); err != nil {
			b.Fatal(err)
		}
	}
	_ = admin.Close()
	cfg := k.producerConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(k.Brokers, cfg)
	if err != nil {
		b.Fatal(err)
	}
	base := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC).UnixMilli()
	hour := time.Hour.Milliseconds()
	var msgs []*sarama.ProducerMessage
	add := func(topic string, p int32, c windowstore.Change) {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: p,
			Key: sarama.ByteEncoder(windowstore.ChangeKey(c)), Value: sarama.ByteEncoder(windowstore.ChangeValue(c))})
	}
	for i := range int(parts) * n {
		p := int32(i % int(parts))
		key := []byte("device-" + strconv.Itoa(i/10))
		start := base + int64(i%10)*hour
		add(windows.topic.name, p, windowstore.Change{Key: key, Start: start, End: start + hour,
			Value: encodeState(stateValue{end: start + hour, payload: []byte(strconv.Itoa(i))})})
		due := start + 10*time.Minute.Milliseconds()
		add(td.timers.topic.name, p, windowstore.Change{Key: timerKey(timerWall, "silent", string(key)+"/"+strconv.Itoa(i%10)), End: due,
			Value: encodeState(stateValue{end: due, payload: []byte("x")})})
		if len(msgs) >= 2000 {
			if err := prod.SendMessages(msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	if err := prod.SendMessages(msgs); err != nil {
		b.Fatal(err)
	}
	_ = prod.Close()

	rt := td.newRuntime(b.TempDir(), &k, nil, slog.New(slog.DiscardHandler))
	b.ResetTimer()
	for range b.N {
		// A session's client, whose connection no fetch of the last
		// session's restore holds any more (not timed).
		b.StopTimer()
		client, err := sarama.NewClient(k.Brokers, k.config())
		if err != nil {
			b.Fatal(err)
		}
		consumer, err := sarama.NewConsumerFromClient(client)
		if err != nil {
			b.Fatal(err)
		}
		var owned []int32
		committed := map[int32]map[string]int64{}
		for p := range parts {
			owned = append(owned, p)
			committed[p] = map[string]int64{"in": -1}
		}
		if fresh {
			if err := os.RemoveAll(rt.dir); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		states, err := rt.restorePartitions(context.Background(), client, consumer, owned, committed)
		if err != nil {
			b.Fatal(err)
		}
		closeParts(states)
		b.StopTimer()
		_ = consumer.Close()
		_ = client.Close()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*n*int(parts)), "ns/change")
}
