package topology

import (
	"errors"
	"hash"
	"log/slog"
	"testing"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// table is a one-partition group table "g-table" under a changelog, written
// as goka's processor writes it: the storage, then the producer.
type table struct {
	t    *testing.T
	cl   *changelog
	b    storage.Builder
	prod goka.Producer
	st   storage.Storage
}

// newTable opens the table's storage in dir (the batching storage, or base
// when given), recovered from the given topic records (key, value) at
// offsets 0, 1, ..., and marked recovered.
func newTable(t *testing.T, dir string, base storage.Builder, recovered ...[2]string) *table {
	t.Helper()
	tp := New("t")
	p := tp.Processor("g")
	Persist(p, codecs.String{}, WithPartitions(1))
	cl := newChangelog(p, slog.New(slog.DiscardHandler))
	if cl == nil || cl.topic != "g-table" {
		t.Fatalf("changelog of a processor with a table: %+v", cl)
	}
	if base == nil {
		base = tablestore.Builder(dir, tablestore.Options{})
	}
	prod, err := cl.producer(func([]string, string, func() hash.Hash32) (goka.Producer, error) { return fakeProducer{}, nil })(nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	tb := &table{t: t, cl: cl, b: cl.storage(base), prod: prod}
	tb.st, err = tb.b("g-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.st.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.st.Close() })
	for i, kv := range recovered {
		if err := tb.st.Set(kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
		if err := tb.st.SetOffset(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.st.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	return tb
}

// fakeProducer answers nothing: each test finishes the promises itself.
type fakeProducer struct{}

func (fakeProducer) Emit(string, string, []byte) *goka.Promise { return goka.NewPromise() }
func (fakeProducer) EmitWithHeaders(string, string, []byte, goka.Headers) *goka.Promise {
	return goka.NewPromise()
}
func (fakeProducer) Close() error { return nil }

// answer reports the table topic's answer to one write: its offset, or an
// error.
type answer func(offset int64, err error)

// set writes key as goka's processor does (nil value: a deletion) and
// returns how to answer the write, after goka's own callback, which stores
// the offset.
func (tb *table) set(key string, value []byte) answer {
	tb.t.Helper()
	var err error
	if value == nil {
		err = tb.st.Delete(key)
	} else {
		err = tb.st.Set(key, value)
	}
	if err != nil {
		tb.t.Fatal(err)
	}
	promise, finish := goka.NewPromiseWithFinisher()
	// The wrapper adds its callback to the promise the producer returns.
	tb.prod.(*changelogProducer).watch(promise, "g-table", key, value)
	st := tb.st
	promise.ThenWithMessage(func(msg *sarama.ProducerMessage, err error) {
		if err == nil && msg.Offset != 0 && value != nil {
			_ = st.SetOffset(msg.Offset)
		}
	})
	return func(offset int64, err error) {
		if err != nil {
			finish(nil, err)
			return
		}
		finish(&sarama.ProducerMessage{Topic: "g-table", Offset: offset}, nil)
	}
}

// reopen closes the storage (which flushes what it buffered: all a crash
// could have left on disk too) and opens the folder's storage again,
// recovered from nothing more.
func (tb *table) reopen(dir string) *table {
	tb.t.Helper()
	if err := tb.st.Close(); err != nil {
		tb.t.Fatal(err)
	}
	return newTable(tb.t, dir, nil)
}

func (tb *table) want(key, want string, present bool) {
	tb.t.Helper()
	v, err := tb.st.Get(key)
	if err != nil {
		tb.t.Fatal(err)
	}
	if (v != nil) != present || string(v) != want {
		tb.t.Errorf("%s = %q (present %v), want %q (present %v)", key, v, v != nil, want, present)
	}
	if has, err := tb.st.Has(key); err != nil || has != present {
		tb.t.Errorf("has %s = %v, %v; want %v", key, has, err, present)
	}
}

// wantOffset checks the underlying storage's offset (the changelog's
// GetOffset would take the table for a hot standby's).
func (tb *table) wantOffset(want int64) {
	tb.t.Helper()
	if off, err := tb.st.(*changelogStorage).Storage.GetOffset(-1); err != nil || off != want {
		tb.t.Errorf("offset = %d, %v; want %d", off, err, want)
	}
}

var errRefused = errors.New("refused")

// Writes made after recovery are read back at once but reach the underlying
// store only when the table topic acknowledged them; a refused write never
// does, so after a restart on the folder the store holds exactly what the
// topic holds.
func TestChangelogStoresOnlyAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	tb := newTable(t, dir, nil, [2]string{"a", "a0"}, [2]string{"b", "b0"})
	tb.want("a", "a0", true)

	a1, b1, c1 := tb.set("a", []byte("a1")), tb.set("b", []byte("b1")), tb.set("c", []byte("c1"))
	tb.set("b", nil) // never answered
	tb.want("a", "a1", true)
	tb.want("b", "", false)
	tb.want("c", "c1", true)

	a1(2, nil)
	b1(0, errRefused)
	c1(3, nil)
	// The deletion of b still waits: reads see it.
	tb.want("b", "", false)
	tb.wantOffset(3)

	tb = tb.reopen(dir)
	tb.want("a", "a1", true)
	tb.want("b", "b0", true) // b1 was refused, its deletion never acknowledged
	tb.want("c", "c1", true)
	tb.wantOffset(3)
}

// goka skips SetOffset for a write acknowledged at offset 0 and for
// deletions; the changelog stores both with their offsets.
func TestChangelogStoresOffsetZeroAndDeletions(t *testing.T) {
	dir := t.TempDir()
	tb := newTable(t, dir, nil)
	tb.wantOffset(-1)
	tb.set("a", []byte("a0"))(0, nil)
	tb.wantOffset(0)
	tb.set("a", nil)(1, nil)
	tb.wantOffset(1)
	tb.want("a", "", false)
	tb = tb.reopen(dir)
	tb.want("a", "", false)
	tb.wantOffset(1)
}

// A key written twice reads its newest write until both are answered. When
// the first write is refused and the second acknowledged, the store takes
// the second, as the topic did, whichever answer comes first (the producer
// reports failures and successes on separate goroutines).
func TestChangelogKeyWrittenTwice(t *testing.T) {
	for _, failureFirst := range []bool{true, false} {
		tb := newTable(t, t.TempDir(), nil, [2]string{"a", "a0"})
		first, second := tb.set("a", []byte("a1")), tb.set("a", []byte("a2"))
		answers := []func(){func() { first(0, errRefused) }, func() { second(1, nil) }}
		if !failureFirst {
			answers[0], answers[1] = answers[1], answers[0]
		}
		answers[0]()
		tb.want("a", "a2", true)
		answers[1]()
		tb.want("a", "a2", true)
		tb.wantOffset(1)
	}
}

// The answer to a write of a storage that is closed since (a rebalance or
// a restart took the partition) goes to no storage: not to the partition's
// next one, which recovers the write from the topic if it was acknowledged.
func TestChangelogAnswerAfterCloseIsDropped(t *testing.T) {
	dir := t.TempDir()
	tb := newTable(t, dir, nil, [2]string{"a", "a0"})
	late := tb.set("a", []byte("a1"))
	tb = tb.reopen(dir)
	next := tb.set("a", []byte("a2"))
	late(1, nil)
	tb.want("a", "a2", true)
	tb.wantOffset(0)
	next(2, nil)
	tb.want("a", "a2", true)
	tb.wantOffset(2)
}

// A hot standby's table follows the topic after its recovery (goka reads
// its offset again and loads on): writes go through at once.
func TestChangelogStandbyFollowsTheTopic(t *testing.T) {
	dir := t.TempDir()
	tb := newTable(t, dir, nil, [2]string{"a", "a0"})
	if off, err := tb.st.GetOffset(-1); err != nil || off != 0 {
		t.Fatalf("offset = %d, %v", off, err)
	}
	if err := tb.st.Set("a", []byte("a1")); err != nil {
		t.Fatal(err)
	}
	if err := tb.st.SetOffset(1); err != nil {
		t.Fatal(err)
	}
	tb = tb.reopen(dir)
	tb.want("a", "a1", true)
	tb.wantOffset(1)
}

// An acknowledged write the store cannot take fails every later write, so
// that goka fails the partition and its restart recovers from the topic.
func TestChangelogStoreFailureFailsLaterWrites(t *testing.T) {
	broken := &failingStorage{Storage: storage.NewMemory()}
	tb := newTable(t, "", func(string, int32) (storage.Storage, error) { return broken, nil })
	a1 := tb.set("a", []byte("a1"))
	broken.err = errors.New("disk full")
	a1(0, nil)
	if err := tb.st.Set("b", []byte("b1")); err == nil || !errors.Is(err, broken.err) {
		t.Errorf("write after a failed store: %v", err)
	}
}

// failingStorage fails its writes with err once it is set.
type failingStorage struct {
	storage.Storage
	err error
}

func (s *failingStorage) Set(key string, value []byte) error {
	if s.err != nil {
		return s.err
	}
	return s.Storage.Set(key, value)
}

// Tables other than the group's own (joined ones) keep the underlying
// storage, records to other topics are no table writes, and a processor
// without a table keeps both builders.
func TestChangelogWrapsOnlyTheGroupTable(t *testing.T) {
	tb := newTable(t, t.TempDir(), nil)
	st, err := tb.b("other-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*tablestore.Storage); !ok {
		t.Errorf("joined table storage is %T", st)
	}
	if err := tb.st.Set("a", []byte("a1")); err != nil {
		t.Fatal(err)
	}
	promise, finish := goka.NewPromiseWithFinisher()
	tb.prod.(*changelogProducer).watch(promise, "out", "a", []byte("a1"))
	finish(&sarama.ProducerMessage{Offset: 5}, nil)
	tb.wantOffset(-1)
	tb.want("a", "a1", true)
	if v, err := tb.st.(*changelogStorage).Storage.Get("a"); err != nil || v != nil {
		t.Errorf("an emit to another topic stored %q, %v", v, err)
	}

	tp := New("t")
	if cl := newChangelog(tp.Processor("g"), slog.Default()); cl != nil {
		t.Errorf("changelog of a processor without a table: %+v", cl)
	}
	var none *changelog
	if none.storage(nil) != nil || none.producer(nil) != nil {
		t.Error("a nil changelog changed the builders")
	}
}

// Partition and the changelog's allocation-free partitionOf agree.
func TestPartitionOf(t *testing.T) {
	for _, key := range []string{"", "0", "4711", "4711/2939833", "\xff\x00key"} {
		for _, n := range []int32{1, 3, 8, 64} {
			h := Hasher()
			_, _ = h.Write([]byte(key))
			want := int32(h.Sum32()) % n
			if want < 0 {
				want = -want
			}
			if got := partitionOf(key, n); got != want {
				t.Errorf("partitionOf(%q, %d) = %d, want %d", key, n, got, want)
			}
		}
	}
}
