package tablestore

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The crash test replays a table topic into a storage in a child process,
// as goka's recovery does (Set, then SetOffset), kills the child with
// SIGKILL in the middle of it, and checks the folder it left.

// topicMessage is message i of the simulated table topic: a key of 37 and
// its value, or a deletion (nil) for every eleventh.
func topicMessage(i int64) (string, []byte) {
	key := "k" + strconv.FormatInt(i%37, 10)
	if i%11 == 10 {
		return key, nil
	}
	return key, []byte("v" + strconv.FormatInt(i, 10))
}

// tableAfter is the table after messages 0..last (none when last < 0).
func tableAfter(last int64) map[string]string {
	t := map[string]string{}
	for i := int64(0); i <= last; i++ {
		k, v := topicMessage(i)
		if v == nil {
			delete(t, k)
		} else {
			t[k] = string(v)
		}
	}
	return t
}

// apply writes message i of the topic as goka's recovery does.
func apply(st *Storage, i int64) error {
	k, v := topicMessage(i)
	var err error
	if v == nil {
		err = st.Delete(k)
	} else {
		err = st.Set(k, v)
	}
	if err != nil {
		return err
	}
	return st.SetOffset(i)
}

// contents reads the whole table.
func contents(t *testing.T, st *Storage) map[string]string {
	t.Helper()
	got := map[string]string{}
	it, err := st.Iterator()
	must(t, err)
	defer it.Release()
	for it.Next() {
		v, err := it.Value()
		must(t, err)
		got[string(it.Key())] = string(v)
	}
	must(t, it.Err())
	return got
}

const crashChildEnv = "TABLESTORE_CRASH_CHILD"

// TestMain runs the crash test's child when the environment asks for it.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		if err := crashChild(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1) // only a kill ends the child well
	}
	os.Exit(m.Run())
}

// crashChild writes the topic into the storage in path until it is killed.
func crashChild(path string) error {
	st, err := Open(path, Options{FlushInterval: time.Millisecond, MaxOps: 64})
	if err != nil {
		return err
	}
	if err := st.Open(); err != nil {
		return err
	}
	for i := int64(0); ; i++ {
		if err := apply(st, i); err != nil {
			return err
		}
		if i%5000 == 0 {
			fmt.Println("at", i) // the parent kills the child once it is far enough
		}
	}
}

func TestCrashLosesNothingTheTopicCannotReplay(t *testing.T) {
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "db")
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		lines := bufio.NewScanner(out)
		seen := 0
		for lines.Scan() {
			var at int64
			if _, err := fmt.Sscanf(lines.Text(), "at %d", &at); err == nil {
				seen++
			}
			if seen == 3+round { // kill it at a different point each round
				break
			}
		}
		must(t, cmd.Process.Kill()) // no Close: the buffer dies with the process
		_ = cmd.Wait()
		if seen < 3+round {
			t.Fatalf("the child wrote too little before it ended: %v", lines.Err())
		}

		st := openT(t, path, quiet)
		stored, err := st.GetOffset(-1)
		must(t, err)
		if stored < 0 {
			t.Fatalf("round %d: no offset stored after %d progress lines", round, seen)
		}
		got := contents(t, st)
		// In recovery goka sets the value of a message before its offset,
		// so a batch may hold the value of the message after the offset,
		// never an offset without its value.
		if !maps.Equal(got, tableAfter(stored)) && !maps.Equal(got, tableAfter(stored+1)) {
			t.Fatalf("round %d: the table is not the topic up to the stored offset %d (or the next message)", round, stored)
		}

		// Recovery: replay the topic after the stored offset, then more.
		end := stored + 1000
		for i := stored + 1; i <= end; i++ {
			must(t, apply(st, i))
		}
		must(t, st.Close())
		st = openT(t, path, quiet)
		if !maps.Equal(contents(t, st), tableAfter(end)) {
			t.Errorf("round %d: the rebuilt table differs from the topic's", round)
		}
		if off, _ := st.GetOffset(-1); off != end {
			t.Errorf("round %d: offset %d after the replay, want %d", round, off, end)
		}
		must(t, st.Close())
		t.Logf("round %d: killed with offset %d stored", round, stored)
	}
}
