package tablestore

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/lovoo/goka/storage"
)

// BenchmarkWrite is goka's write pattern, a value and then the offset, on
// goka's leveldb storage and on the batching one, while recovering a table
// (goka's storage then stores the offset only every 30 s) and once
// recovered (an offset write per value).
func BenchmarkWrite(b *testing.B) {
	for _, recovered := range []bool{false, true} {
		name := "recovering"
		if recovered {
			name = "recovered"
		}
		b.Run(name, func(b *testing.B) { benchmarkWrite(b, recovered) })
	}
}

func benchmarkWrite(b *testing.B, recovered bool) {
	value := make([]byte, 100)
	for name, open := range map[string]func(path string) storage.Storage{
		"goka-leveldb": func(path string) storage.Storage {
			st, err := storage.DefaultBuilder(path)("t", 0)
			if err != nil {
				b.Fatal(err)
			}
			return st
		},
		"batched": func(path string) storage.Storage {
			st, err := Open(path, Options{})
			if err != nil {
				b.Fatal(err)
			}
			return st
		},
	} {
		b.Run(name, func(b *testing.B) {
			st := open(filepath.Join(b.TempDir(), "db"))
			if err := st.Open(); err != nil {
				b.Fatal(err)
			}
			if recovered {
				if err := st.MarkRecovered(); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			for b.Loop() {
				if err := st.Set(strconv.Itoa(i%10_000), value); err != nil {
					b.Fatal(err)
				}
				if err := st.SetOffset(int64(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if err := st.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
