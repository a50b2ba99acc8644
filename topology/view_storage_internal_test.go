package topology

import (
	"log/slog"
	"testing"

	"github.com/lovoo/goka/storage"

	"github.com/watershed-io/watershed/topology/tablestore"
)

// A view keeps its copy in tablestore's batching storage unless its
// options name another, which then gets the view's folder.
func TestViewStorageIsBatchedUnlessSet(t *testing.T) {
	dir := t.TempDir()
	st, err := ViewOptions{Logger: slog.New(slog.DiscardHandler)}.viewStorage(dir)("table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*tablestore.Storage); !ok {
		t.Fatalf("default view storage is %T, want *tablestore.Storage", st)
	}

	var got string
	opts := ViewOptions{TableStorage: func(d string) storage.Builder {
		got = d
		return storage.MemoryBuilder()
	}}
	other := t.TempDir()
	st2, err := opts.viewStorage(other)("table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if got != other {
		t.Fatalf("the view's factory got folder %q, want %q", got, other)
	}
	if _, ok := st2.(*tablestore.Storage); ok {
		t.Fatal("a view whose options name a storage got the default one")
	}
}
