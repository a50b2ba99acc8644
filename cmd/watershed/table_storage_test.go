package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/topology/tablestore"
)

// An unknown --table-storage is a usage error before anything starts.
func TestTableStorageFlagRejectsUnknownKinds(t *testing.T) {
	for _, cmd := range []string{"run", "demo", "bench"} {
		var out, errb bytes.Buffer
		args := []string{cmd, "--table-storage", "memory"}
		if cmd == "run" {
			args = append(args, "--brokers", "127.0.0.1:1")
		}
		code := dispatch(context.Background(), args, strings.NewReader(""), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), `"memory"`) {
			t.Errorf("%s --table-storage memory: exit %d, stderr %q", cmd, code, errb.String())
		}
	}
}

func TestTableStorageFlagBuildsTheNamedStorage(t *testing.T) {
	for _, kind := range tablestore.Kinds() {
		ts, err := tableStorage(kind, newLogger(&bytes.Buffer{}))
		if err != nil {
			t.Fatal(err)
		}
		st, err := ts(t.TempDir())("table", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, batched := st.(*tablestore.Storage); batched != (kind == tablestore.KindBatched) {
			t.Errorf("--table-storage %s built a %T", kind, st)
		}
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}
}
