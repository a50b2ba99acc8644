package tablestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"
	lstorage "github.com/syndtr/goleveldb/leveldb/storage"

	"github.com/watershed-io/watershed/internal/poll"
)

// quiet flushes only when told to (Close, MarkRecovered, Iterator) or when
// its buffer is full, so tests see what is buffered and what is stored.
var quiet = Options{FlushInterval: time.Hour, MaxOps: 1 << 20}

func openT(t *testing.T, path string, opts Options) *Storage {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	return s
}

func gokaLevelDB(t *testing.T, path string) storage.Storage {
	t.Helper()
	db, err := leveldb.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := storage.New(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	return s
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, it storage.Iterator, err error) []string {
	t.Helper()
	must(t, err)
	defer it.Release()
	var out []string
	for it.Next() {
		v, err := it.Value()
		must(t, err)
		out = append(out, string(it.Key())+"="+string(v))
	}
	must(t, it.Err())
	return out
}

// conformance checks the behaviour goka relies on; it runs against goka's
// own leveldb storage too, so that the two are known to agree.
func conformance(t *testing.T, st storage.Storage) {
	if off, err := st.GetOffset(-2); err != nil || off != -2 {
		t.Fatalf("GetOffset of a new storage = %d, %v; want the default -2", off, err)
	}
	if v, err := st.Get("missing"); err != nil || v != nil {
		t.Fatalf("Get(missing) = %q, %v; want nil", v, err)
	}
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}} {
		must(t, st.Set(kv[0], []byte(kv[1])))
	}
	must(t, st.Set("e", nil))
	must(t, st.Delete("b"))
	must(t, st.Set("c", []byte("33")))
	must(t, st.Delete("never-set"))
	must(t, st.SetOffset(7))

	for k, want := range map[string]string{"a": "1", "b": "", "c": "33", "d": "4"} {
		v, err := st.Get(k)
		if err != nil || string(v) != want || (want == "") != (v == nil) {
			t.Errorf("Get(%q) = %q, %v; want %q", k, v, err, want)
		}
		has, err := st.Has(k)
		if err != nil || has != (want != "") {
			t.Errorf("Has(%q) = %v, %v", k, has, err)
		}
	}
	if v, err := st.Get("e"); err != nil || v == nil || len(v) != 0 {
		t.Errorf("Get(e) set to nil = %#v, %v; want an empty, non-nil value", v, err)
	}
	v, _ := st.Get("a")
	v[0] = 'x' // the caller owns what Get returns
	if v, _ := st.Get("a"); string(v) != "1" {
		t.Errorf("Get(a) after changing an earlier result = %q", v)
	}
	if off, err := st.GetOffset(-2); err != nil || off != 7 {
		t.Errorf("GetOffset = %d, %v; want 7", off, err)
	}
	must(t, st.MarkRecovered())
	must(t, st.SetOffset(9))
	if off, _ := st.GetOffset(-2); off != 9 {
		t.Errorf("GetOffset after recovery = %d, want 9", off)
	}

	it, err := st.Iterator()
	got := keys(t, it, err)
	if want := []string{"a=1", "c=33", "d=4", "e="}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Iterator = %q, want %q (the offset hidden)", got, want)
	}
	it, err = st.IteratorWithRange([]byte("b"), []byte("d"))
	if got := keys(t, it, err); fmt.Sprint(got) != fmt.Sprint([]string{"c=33"}) {
		t.Errorf("IteratorWithRange[b,d) = %q", got)
	}
	it, err = st.Iterator()
	must(t, err)
	if !it.Seek([]byte("b")) || string(it.Key()) != "c" {
		t.Errorf("Seek(b) is at %q, want c", it.Key())
	}
	it.Release()
}

func TestConformance(t *testing.T) {
	t.Run("goka leveldb", func(t *testing.T) {
		st := gokaLevelDB(t, filepath.Join(t.TempDir(), "db"))
		conformance(t, st)
		must(t, st.Close())
	})
	for name, opts := range map[string]Options{"buffered": quiet, "flushing every op": {MaxOps: 1}} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "db")
			st := openT(t, path, opts)
			conformance(t, st)
			must(t, st.Close())
			if err := st.Close(); !errors.Is(err, ErrClosed) {
				t.Errorf("second Close = %v, want ErrClosed", err)
			}
			if err := st.Set("z", nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Set after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// TestFoldersInterchange opens each storage's folder with the other.
func TestFoldersInterchange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st := openT(t, path, quiet)
	must(t, st.Set("k", []byte("batched")))
	must(t, st.SetOffset(11))
	must(t, st.Close())

	g := gokaLevelDB(t, path)
	if v, _ := g.Get("k"); string(v) != "batched" {
		t.Errorf("goka's storage reads %q", v)
	}
	if off, _ := g.GetOffset(-2); off != 11 {
		t.Errorf("goka's storage reads offset %d, want 11", off)
	}
	must(t, g.Set("k", []byte("goka")))
	must(t, g.MarkRecovered())
	must(t, g.SetOffset(12))
	must(t, g.Close())

	st = openT(t, path, quiet)
	defer st.Close()
	if v, _ := st.Get("k"); string(v) != "goka" {
		t.Errorf("batched storage reads %q", v)
	}
	if off, _ := st.GetOffset(-2); off != 12 {
		t.Errorf("batched storage reads offset %d, want 12", off)
	}
}

func TestBufferedUntilFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	st := openT(t, path, quiet)
	must(t, st.Set("a", []byte("1")))
	must(t, st.SetOffset(0)) // 0 is an offset, not "unset"
	if off, _ := st.GetOffset(-2); off != 0 {
		t.Errorf("GetOffset after SetOffset(0) = %d", off)
	}
	if _, err := st.db.Get([]byte("a"), nil); !errors.Is(err, leveldb.ErrNotFound) {
		t.Fatalf("value in leveldb before a flush: %v", err)
	}
	must(t, st.MarkRecovered())
	if v, err := st.db.Get([]byte("a"), nil); err != nil || string(v) != "1" {
		t.Fatalf("value in leveldb after a flush = %q, %v", v, err)
	}
	if v, _ := st.db.Get([]byte(offsetKey), nil); string(v) != "0" {
		t.Errorf("stored offset = %q, want 0", v)
	}
	must(t, st.Close())
}

func TestFullBufferIsWrittenByTheWriter(t *testing.T) {
	const maxOps = 4
	st := openT(t, filepath.Join(t.TempDir(), "db"), Options{FlushInterval: time.Hour, MaxOps: maxOps})
	defer st.Close()
	buffered := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.active.batch.Len()
	}
	// However fast the writes come, a write that finds the flusher behind
	// flushes itself: the buffer never reaches twice MaxOps.
	for i := range 50 * maxOps {
		must(t, st.Set(fmt.Sprint(i), []byte("v")))
		if n := buffered(); n >= 2*maxOps {
			t.Fatalf("after write %d, %d operations buffered (MaxOps %d)", i, n, maxOps)
		}
	}
	// A full buffer is written without waiting for the (hour-long) flush
	// interval: the first MaxOps writes reach leveldb.
	err := poll.Until(context.Background(), 10*time.Second, 5*time.Millisecond, func() error {
		for i := range maxOps {
			if _, err := st.db.Get([]byte(fmt.Sprint(i)), nil); err != nil {
				return fmt.Errorf("key %d not in leveldb: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// failingFS fails journal writes once fail is set.
type failingFS struct {
	lstorage.Storage
	fail atomic.Bool
}

var errDisk = errors.New("disk on fire")

func (f *failingFS) Create(fd lstorage.FileDesc) (lstorage.Writer, error) {
	w, err := f.Storage.Create(fd)
	if err != nil || fd.Type != lstorage.TypeJournal {
		return w, err
	}
	return failingWriter{w, &f.fail}, nil
}

type failingWriter struct {
	lstorage.Writer
	fail *atomic.Bool
}

func (w failingWriter) Write(p []byte) (int, error) {
	if w.fail.Load() {
		return 0, errDisk
	}
	return w.Writer.Write(p)
}

func TestFailedFlushIsReported(t *testing.T) {
	fs := &failingFS{Storage: lstorage.NewMemStorage()}
	db, err := leveldb.Open(fs, nil)
	must(t, err)
	var logs bytes.Buffer
	opts := quiet
	opts.Logger = slogTo(&logs)
	st := newStorage(db, "mem", opts.withDefaults())
	must(t, st.Open())
	must(t, st.Set("a", []byte("1")))
	must(t, st.SetOffset(1))
	must(t, st.MarkRecovered())
	must(t, st.Set("a", []byte("2")))
	must(t, st.SetOffset(2))

	fs.fail.Store(true)
	if err := st.flush(); !errors.Is(err, errDisk) {
		t.Fatalf("flush = %v, want the disk's error", err)
	}
	if v, _ := st.Get("a"); string(v) != "2" {
		t.Errorf("Get after a failed flush = %q, want the buffered 2", v)
	}
	if err := st.Set("b", []byte("3")); !errors.Is(err, errDisk) {
		t.Errorf("Set after a failed flush = %v, want the disk's error", err)
	}
	if err := st.SetOffset(3); !errors.Is(err, errDisk) {
		t.Errorf("SetOffset after a failed flush = %v, want the disk's error", err)
	}
	if !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("the failure was not logged: %q", logs.String())
	}
	if v, err := db.Get([]byte(offsetKey), nil); err != nil || string(v) != "1" {
		t.Errorf("stored offset = %q, %v; want 1, the last batch written", v, err)
	}
	if err := st.Close(); !errors.Is(err, errDisk) {
		t.Errorf("Close = %v, want the disk's error", err)
	}
}

// TestNoGoroutineLeft opens and closes storages, some never opened, and
// checks that no flusher outlives its Close.
func TestNoGoroutineLeft(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		st, err := Open(filepath.Join(dir, fmt.Sprint(i)), Options{FlushInterval: time.Millisecond})
		must(t, err)
		if i%4 != 0 { // goka may close a storage it never opened
			must(t, st.Open())
			must(t, st.Set("k", []byte("v")))
		}
		must(t, st.Close())
	}
	// Close waits for the flusher, which may still be returning.
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "tablestore.(*Storage).flushLoop") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flush goroutines left after Close:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConcurrentReadersSeeNoRegression runs goka's pattern (one goroutine
// setting values, another setting offsets, others reading and iterating)
// with constant flushes; a reader must never see a value older than one it
// saw before, which a buffer dropped before leveldb has it would cause.
func TestConcurrentReadersSeeNoRegression(t *testing.T) {
	st := openT(t, filepath.Join(t.TempDir(), "db"), Options{FlushInterval: time.Millisecond, MaxOps: 8})
	const keys, rounds = 5, 3000
	var done atomic.Bool
	var wg sync.WaitGroup
	offsets := make(chan int64, 64)
	errs := make(chan error, 16)
	wg.Go(func() { // the partition's goroutine
		defer close(offsets)
		for i := 1; i <= rounds; i++ {
			if err := st.Set(fmt.Sprint(i%keys), fmt.Appendf(nil, "%08d", i)); err != nil {
				errs <- err
				return
			}
			if i%keys == 0 {
				if err := st.Delete("gone"); err != nil {
					errs <- err
					return
				}
			}
			offsets <- int64(i)
		}
	})
	wg.Go(func() { // the producer's acknowledgements
		for off := range offsets {
			if err := st.SetOffset(off); err != nil {
				errs <- err
			}
		}
		done.Store(true)
	})
	for r := range 3 {
		wg.Go(func() {
			last := make([]string, keys)
			for !done.Load() {
				for k := range keys {
					v, err := st.Get(fmt.Sprint(k))
					if err != nil {
						errs <- err
						return
					}
					if string(v) < last[k] {
						errs <- fmt.Errorf("reader %d: key %d went back from %s to %q", r, k, last[k], v)
						return
					}
					last[k] = string(v)
				}
				if r == 0 {
					it, err := st.Iterator()
					if err != nil {
						errs <- err
						return
					}
					for it.Next() {
						if string(it.Key()) == offsetKey {
							errs <- errors.New("iterator shows the offset")
						}
					}
					it.Release()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if off, _ := st.GetOffset(-1); off != rounds {
		t.Errorf("offset = %d, want %d", off, rounds)
	}
	must(t, st.Close())
}

func TestForKind(t *testing.T) {
	for _, k := range Kinds() {
		b, err := ForKind(k, Options{})
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		st, err := b(t.TempDir())("table", 3)
		must(t, err)
		_, batched := st.(*Storage)
		if batched != (k == KindBatched) {
			t.Errorf("%s built a %T", k, st)
		}
		must(t, st.Open())
		must(t, st.Close())
	}
	if _, err := ForKind("memory", Options{}); err == nil {
		t.Error("an unknown kind was accepted")
	}
}

// TestReadCache: flushed and read values are served from the cache (a
// change made to leveldb behind the storage's back stays unseen), always
// the newest (overwrites and deletions included), and the cache stays
// within its bound; with a negative CacheBytes every read goes to leveldb.
func TestReadCache(t *testing.T) {
	st := openT(t, filepath.Join(t.TempDir(), "db"), Options{FlushInterval: time.Hour, MaxOps: 1 << 20, CacheBytes: 64 << 10})
	defer st.Close()
	get := func(key string) string {
		t.Helper()
		v, err := st.Get(key)
		must(t, err)
		if v == nil {
			return "<none>"
		}
		return string(v)
	}
	behind := func(key, value string) { must(t, st.db.Put([]byte(key), []byte(value), nil)) }

	must(t, st.Set("a", []byte("1")))
	must(t, st.MarkRecovered())
	behind("a", "behind")
	if v := get("a"); v != "1" {
		t.Errorf("flushed value read as %q, want 1 from the cache", v)
	}
	if v := get("absent"); v != "<none>" {
		t.Fatalf("absent key read as %q", v)
	}
	behind("absent", "behind")
	if v := get("absent"); v != "<none>" {
		t.Errorf("an absence read from leveldb was not cached: %q", v)
	}
	behind("read", "r1")
	if v := get("read"); v != "r1" {
		t.Fatalf("value read as %q, want r1", v)
	}
	behind("read", "behind")
	if v := get("read"); v != "r1" {
		t.Errorf("a value read from leveldb was not cached: %q", v)
	}

	must(t, st.Set("a", []byte("2")))
	must(t, st.MarkRecovered())
	if v := get("a"); v != "2" {
		t.Errorf("overwritten value read as %q, want 2", v)
	}
	must(t, st.Delete("a"))
	must(t, st.MarkRecovered())
	if v := get("a"); v != "<none>" {
		t.Errorf("deleted value read as %q", v)
	}

	value := bytes.Repeat([]byte("v"), 100)
	for i := range 5000 {
		must(t, st.Set(fmt.Sprint("k", i), value))
		if i%100 == 0 {
			must(t, st.MarkRecovered())
		}
	}
	must(t, st.MarkRecovered())
	st.mu.Lock()
	held := st.cache.Held()
	st.mu.Unlock()
	if held > 64<<10 || held == 0 {
		t.Errorf("cache holds %d bytes of keys and values, bound 64 KiB", held)
	}
	if v := get("k4999"); v != string(value) {
		t.Errorf("newest key read as %q", v)
	}

	off := openT(t, filepath.Join(t.TempDir(), "db"), Options{FlushInterval: time.Hour, MaxOps: 1 << 20, CacheBytes: -1})
	defer off.Close()
	must(t, off.Set("a", []byte("1")))
	must(t, off.MarkRecovered())
	must(t, off.db.Put([]byte("a"), []byte("behind"), nil))
	if v, err := off.Get("a"); err != nil || string(v) != "behind" {
		t.Errorf("without a cache, read %q, %v; want leveldb's value", v, err)
	}
}

// TestReadCacheSkipsValuesAFlushOvertook: a value read from leveldb while
// a flush of a newer one completes is not cached over the newer one.
func TestReadCacheSkipsValuesAFlushOvertook(t *testing.T) {
	st := openT(t, filepath.Join(t.TempDir(), "db"), Options{FlushInterval: time.Hour, MaxOps: 1 << 20})
	defer st.Close()
	must(t, st.db.Put([]byte("x"), []byte("old"), nil))
	st.afterRead = func() {
		st.afterRead = nil
		must(t, st.Set("x", []byte("new")))
		must(t, st.MarkRecovered())
	}
	if v, err := st.Get("x"); err != nil || string(v) != "old" {
		t.Fatalf("first read %q, %v; want old", v, err)
	}
	if v, err := st.Get("x"); err != nil || string(v) != "new" {
		t.Errorf("read after the flush %q, %v; want new", v, err)
	}
}
