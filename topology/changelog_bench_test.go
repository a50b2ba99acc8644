package topology

import (
	"log/slog"
	"strconv"
	"testing"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// BenchmarkTableWrite is a processor's table pattern per record once
// recovered: read the key, write it, and the table topic's acknowledgement
// through the write's promise (goka's callback stores the offset). "direct" is goka's own order (the store written
// before the topic answers); "changelog" holds the write until the
// acknowledgement applies it with its offset. The store is the batching
// one (the default), or goka's in-memory one, which leaves the changelog's
// own cost apparent.
func BenchmarkTableWrite(b *testing.B) {
	tp := New("t")
	p := tp.Processor("g")
	Persist(p, codecs.String{}, WithPartitions(1))
	value := make([]byte, 100)
	stores := []struct {
		name  string
		build func(dir string) storage.Builder
	}{
		{"batched", func(dir string) storage.Builder { return tablestore.Builder(dir, tablestore.Options{}) }},
		{"memory", func(string) storage.Builder { return storage.MemoryBuilder() }},
	}
	for _, store := range stores {
		for _, name := range []string{"direct", "changelog"} {
			b.Run(store.name+"/"+name, func(b *testing.B) { benchmarkTableWrite(b, store.build(b.TempDir()), p, name == "changelog", value) })
		}
	}
}

func benchmarkTableWrite(b *testing.B, build storage.Builder, p *Processor, withChangelog bool, value []byte) {
	var prod *changelogProducer
	if withChangelog {
		cl := newChangelog(p, slog.New(slog.DiscardHandler))
		build, prod = cl.storage(build), &changelogProducer{cl: cl}
	}
	st, err := build("g-table", 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Open(); err != nil {
		b.Fatal(err)
	}
	if err := st.MarkRecovered(); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		key := strconv.Itoa(i % 10_000)
		if _, err := st.Get(key); err != nil {
			b.Fatal(err)
		}
		if err := st.Set(key, value); err != nil {
			b.Fatal(err)
		}
		promise, finish := goka.NewPromiseWithFinisher()
		if prod != nil {
			prod.watch(promise, "g-table", key, value)
		}
		promise.ThenWithMessage(func(msg *sarama.ProducerMessage, err error) { // goka's
			if err == nil && msg.Offset != 0 {
				err = st.SetOffset(msg.Offset)
			}
			if err != nil {
				b.Fatal(err)
			}
		})
		finish(&sarama.ProducerMessage{Offset: int64(i)}, nil)
		i++
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
}
