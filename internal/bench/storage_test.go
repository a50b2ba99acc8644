package bench

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb"
)

func openBatched(t *testing.T, dir string) *batched {
	t.Helper()
	db, err := leveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBatched(db, time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Open(); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBatchedStorage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	b := openBatched(t, dir)
	if off, err := b.GetOffset(-2); err != nil || off != -2 {
		t.Fatalf("GetOffset of a new storage = %d, %v", off, err)
	}
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}} {
		if err := b.Set(kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetOffset(41); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete("a"); err != nil { // the third operation flushes
		t.Fatal(err)
	}
	if err := b.Set("c", []byte("3")); err != nil {
		t.Fatal(err)
	}
	if err := b.SetOffset(42); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"a": "", "b": "2", "c": "3"} {
		v, err := b.Get(k)
		if err != nil || string(v) != want {
			t.Errorf("Get(%q) = %q, %v; want %q", k, v, err, want)
		}
		has, _ := b.Has(k)
		if has != (want != "") {
			t.Errorf("Has(%q) = %v", k, has)
		}
	}
	if off, _ := b.GetOffset(-2); off != 42 {
		t.Errorf("GetOffset = %d, want 42", off)
	}
	if err := b.MarkRecovered(); err != nil {
		t.Fatal(err)
	}
	it, err := b.Iterator()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for it.Next() {
		keys = append(keys, string(it.Key()))
	}
	it.Release()
	if len(keys) != 2 || keys[0] != "b" || keys[1] != "c" { // goka hides the offset key
		t.Errorf("keys after flush = %q", keys)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openBatched(t, dir)
	defer b.Close()
	if off, _ := b.GetOffset(-2); off != 42 {
		t.Errorf("GetOffset after reopening = %d, want 42", off)
	}
	if v, _ := b.Get("c"); string(v) != "3" {
		t.Errorf("Get(c) after reopening = %q", v)
	}
}

func TestTableStorageKinds(t *testing.T) {
	for _, k := range []string{"", StorageDefault, StorageLarge, StorageBatched} {
		if _, err := tableStorage(k); err != nil {
			t.Errorf("%q: %v", k, err)
		}
	}
	if _, err := tableStorage("memory"); err == nil {
		t.Error("unknown storage accepted")
	}
}
