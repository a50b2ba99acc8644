package topology

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka/storage"
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// testChangelog is the changelog of a one-partition table "g-table" whose
// storages live in dir.
func testChangelog(t *testing.T, dir string) (*changelog, storage.Builder) {
	t.Helper()
	tp := New("t")
	p := tp.Processor("g")
	Persist(p, codecs.String{}, Partitions(1))
	cl := newChangelog(p, slog.New(slog.DiscardHandler))
	if cl == nil || cl.topic != "g-table" {
		t.Fatalf("changelog of a processor with a table: %+v", cl)
	}
	return cl, cl.storage(tablestore.Builder(dir, tablestore.Options{}))
}

// openTable builds and opens the storage of partition 0, recovers it from
// the given topic records (key, value; nil deletes) at offsets 0, 1, ...
// and marks it recovered.
func openTable(t *testing.T, b storage.Builder, recovered ...[2]string) storage.Storage {
	t.Helper()
	st, err := b("g-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Open(); err != nil {
		t.Fatal(err)
	}
	for i, kv := range recovered {
		if err := st.Set(kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
		if err := st.SetOffset(int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	return st
}

// reopen closes st (which flushes what it buffered: all a crash could have
// left on disk too) and opens the folder's storage again, recovered from
// nothing more.
func reopen(t *testing.T, st storage.Storage, dir string) storage.Storage {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, b := testChangelog(t, dir)
	st = openTable(t, b)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func wantValue(t *testing.T, st storage.Storage, key, want string, present bool) {
	t.Helper()
	v, err := st.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	if (v != nil) != present || string(v) != want {
		t.Errorf("%s = %q (present %v), want %q (present %v)", key, v, v != nil, want, present)
	}
	if has, err := st.Has(key); err != nil || has != present {
		t.Errorf("has %s = %v, %v; want %v", key, has, err, present)
	}
}

// wantOffset checks the underlying storage's offset (the changelog's
// GetOffset would take the table for a hot standby's).
func wantOffset(t *testing.T, st storage.Storage, want int64) {
	t.Helper()
	if off, err := st.(*changelogStorage).Storage.GetOffset(-1); err != nil || off != want {
		t.Errorf("offset = %d, %v; want %d", off, err, want)
	}
}

// ack reports the table topic's answer to a write of key as the producer
// would.
func ack(cl *changelog, key string, value []byte, offset int64, err error) {
	if err != nil {
		cl.acked(key, value, nil, err)
		return
	}
	cl.acked(key, value, &sarama.ProducerMessage{Topic: cl.topic, Offset: offset}, nil)
}

// Writes made after recovery are read back at once but reach the underlying
// store only when the table topic acknowledged them; a refused write never
// does, so after a restart on the folder (closing the storage flushes
// whatever it buffered, which is all a crash could leave too) the store
// holds exactly what the topic holds.
func TestChangelogStoresOnlyAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	cl, b := testChangelog(t, dir)
	st := openTable(t, b, [2]string{"a", "a0"}, [2]string{"b", "b0"})
	wantValue(t, st, "a", "a0", true)

	for _, kv := range [][2]string{{"a", "a1"}, {"b", "b1"}, {"c", "c1"}} {
		if err := st.Set(kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete("b"); err != nil {
		t.Fatal(err)
	}
	wantValue(t, st, "a", "a1", true)
	wantValue(t, st, "b", "", false)
	wantValue(t, st, "c", "c1", true)

	ack(cl, "a", []byte("a1"), 2, nil)
	if err := st.SetOffset(2); err != nil { // goka's own, after the ack
		t.Fatal(err)
	}
	ack(cl, "b", []byte("b1"), 0, errors.New("refused"))
	ack(cl, "c", []byte("c1"), 3, nil)
	// The deletion of b still waits: reads see it.
	wantValue(t, st, "b", "", false)
	wantOffset(t, st, 3)

	st = reopen(t, st, dir)
	wantValue(t, st, "a", "a1", true)
	wantValue(t, st, "b", "b0", true) // b1 was refused, its deletion never acknowledged
	wantValue(t, st, "c", "c1", true)
	wantOffset(t, st, 3)
}

// goka skips SetOffset for a write acknowledged at offset 0 and for
// deletions; the changelog stores both with their offsets.
func TestChangelogStoresOffsetZeroAndDeletions(t *testing.T) {
	dir := t.TempDir()
	cl, b := testChangelog(t, dir)
	st := openTable(t, b)
	wantOffset(t, st, -1)
	if err := st.Set("a", []byte("a0")); err != nil {
		t.Fatal(err)
	}
	ack(cl, "a", []byte("a0"), 0, nil)
	wantOffset(t, st, 0)
	if err := st.Delete("a"); err != nil {
		t.Fatal(err)
	}
	ack(cl, "a", nil, 1, nil)
	wantOffset(t, st, 1)
	wantValue(t, st, "a", "", false)
	st = reopen(t, st, dir)
	wantValue(t, st, "a", "", false)
	wantOffset(t, st, 1)
}

// A key written twice reads its newest write until both are answered. When
// the first write is refused and the second acknowledged, the store takes
// the second, as the topic did, whichever answer comes first (the producer
// reports failures and successes on separate goroutines).
func TestChangelogKeyWrittenTwice(t *testing.T) {
	for _, failureFirst := range []bool{true, false} {
		cl, b := testChangelog(t, t.TempDir())
		st := openTable(t, b, [2]string{"a", "a0"})
		for _, v := range []string{"a1", "a2"} {
			if err := st.Set("a", []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		answers := []func(){
			func() { ack(cl, "a", []byte("a1"), 0, errors.New("refused")) },
			func() { ack(cl, "a", []byte("a2"), 1, nil) },
		}
		if !failureFirst {
			answers[0], answers[1] = answers[1], answers[0]
		}
		answers[0]()
		wantValue(t, st, "a", "a2", true)
		answers[1]()
		wantValue(t, st, "a", "a2", true)
		wantOffset(t, st, 1)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// An acknowledgement at or below the stored offset (a write of an earlier
// session the recovery read back) changes nothing.
func TestChangelogIgnoresAcknowledgementsBehindTheStore(t *testing.T) {
	cl, b := testChangelog(t, t.TempDir())
	st := openTable(t, b, [2]string{"a", "a0"}, [2]string{"a", "a1"})
	defer st.Close()
	ack(cl, "a", []byte("a0"), 0, nil)
	wantValue(t, st, "a", "a1", true)
	wantOffset(t, st, 1)
}

// A hot standby's table follows the topic after its recovery (goka reads
// its offset again and loads on): writes go through at once.
func TestChangelogStandbyFollowsTheTopic(t *testing.T) {
	dir := t.TempDir()
	_, b := testChangelog(t, dir)
	st := openTable(t, b, [2]string{"a", "a0"})
	if off, err := st.GetOffset(-1); err != nil || off != 0 {
		t.Fatalf("offset = %d, %v", off, err)
	}
	if err := st.Set("a", []byte("a1")); err != nil {
		t.Fatal(err)
	}
	if err := st.SetOffset(1); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, st, dir)
	wantValue(t, st, "a", "a1", true)
	wantOffset(t, st, 1)
}

// An acknowledged write the store cannot take fails every later write, so
// that goka fails the partition and its restart recovers from the topic.
func TestChangelogStoreFailureFailsLaterWrites(t *testing.T) {
	tp := New("t")
	p := tp.Processor("g")
	Persist(p, codecs.String{}, Partitions(1))
	cl := newChangelog(p, slog.New(slog.DiscardHandler))
	broken := &failingStorage{Storage: storage.NewMemory()}
	st, err := cl.storage(func(string, int32) (storage.Storage, error) { return broken, nil })("g-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	if err := st.Set("a", []byte("a1")); err != nil {
		t.Fatal(err)
	}
	broken.err = errors.New("disk full")
	ack(cl, "a", []byte("a1"), 0, nil)
	if err := st.Set("b", []byte("b1")); err == nil || !errors.Is(err, broken.err) {
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
// storage, and a processor without a table keeps both builders.
func TestChangelogWrapsOnlyTheGroupTable(t *testing.T) {
	_, b := testChangelog(t, t.TempDir())
	st, err := b("other-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*tablestore.Storage); !ok {
		t.Errorf("joined table storage is %T", st)
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
