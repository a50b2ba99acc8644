package topology

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Checkpoints of the framework-owned state.
//
// Each store of each partition has two folders under the group's state
// folder: "base", the store exactly as its changelog rebuilt it up to an
// offset, and "live", the copy the session's callbacks write. The file
// "checkpoint" beside them holds that offset (and the latest window start
// base holds). A session start brings base up to the changelog's end by
// reading only the records from the checkpoint on, writes the new
// checkpoint, and copies base over live: writes of the last session that
// reached live but whose record did not commit are thereby forgotten, as a
// full rebuild forgets them, and base holds only what the changelog holds.
// Replaying the tail from the checkpoint gives the store a full rebuild
// gives, whichever process wrote the tail: the changelog's records are
// applied in order, and a mark's record, committed when base read it, stays
// committed (see undone). Without a checkpoint, or when the changelog no
// longer holds its offset (retention deleted it, the topic was made
// again), or when the checkpoint is too old for the changelog's
// delete.retention.ms (compaction may since have removed a tombstone of
// the tail whose key base still holds: see checkpointUsable), base is
// rebuilt from the oldest record. The checkpoint is
// removed before base changes and written, synced, once base is closed and
// synced: a crash in between leaves no checkpoint, and a full rebuild.

// checkpoint is where a base store stands in its changelog.
type checkpoint struct {
	// offset is the next changelog offset to read; maxStart the latest
	// window start the store holds (-1: none); written when it was
	// written (Unix ms, the system's clock, as the broker's compaction).
	offset, maxStart, written int64
	// stream is the partition's committed stream time then (Unix ns; 0:
	// none), kept with the first store's checkpoint (streamtime.go).
	stream int64
}

// StateTombstoneRetention is the delete.retention.ms the framework gives
// the state changelogs it creates (Kafka's default, a day): how long
// compaction keeps a tombstone, so how old a state checkpoint may be and
// still be used (see checkpointUsable).
const StateTombstoneRetention = 24 * time.Hour

// checkpointSkew bounds the difference between this machine's clock and
// the brokers' that a checkpoint's age allows for.
const checkpointSkew = time.Minute

// checkpointUsable reports whether a checkpoint written age ago may be
// read on from, for a changelog that keeps tombstones keep (its
// delete.retention.ms) and a rebuild bounded by restoreTimeout. Compaction
// keeps a tombstone at least keep after it was written, and every
// tombstone of the tail was written after the checkpoint: so the tail
// holds them all while the checkpoint is younger than keep, less the
// time the rebuild may take and the clocks' skew.
func checkpointUsable(age, keep, restoreTimeout time.Duration) bool {
	return age >= -checkpointSkew && age < keep-restoreTimeout-checkpointSkew
}

// tombstoneKeep returns topic's delete.retention.ms, as the brokers say.
func tombstoneKeep(admin sarama.ClusterAdmin, topic string) (time.Duration, error) {
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic,
		ConfigNames: []string{"delete.retention.ms"}})
	if err != nil {
		return 0, fmt.Errorf("topology: describe %s: %w", topic, err)
	}
	for _, e := range entries {
		if e.Name == "delete.retention.ms" {
			ms, err := strconv.ParseInt(e.Value, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("topology: %s: delete.retention.ms %q: %w", topic, e.Value, err)
			}
			return time.Duration(ms) * time.Millisecond, nil
		}
	}
	return 0, fmt.Errorf("topology: %s: no delete.retention.ms described", topic)
}

// partDir returns the folder of store st's partition p.
func (rt *timeRuntime) partDir(st *stateDecl, p int32) string {
	return filepath.Join(rt.dir, st.topic.name, strconv.Itoa(int(p)))
}

// takeCheckpoint reads and removes the checkpoint of st's partition p;
// ok is false without one (or a malformed one). Its age is the caller's
// to judge (checkpointUsable).
func (rt *timeRuntime) takeCheckpoint(st *stateDecl, p int32) (ck checkpoint, ok bool, err error) {
	path := filepath.Join(rt.partDir(st, p), "checkpoint")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ck, false, nil
	}
	if err != nil {
		return ck, false, fmt.Errorf("topology: read %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return ck, false, fmt.Errorf("topology: remove %s: %w", path, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 4 {
		return ck, false, nil
	}
	for i, v := range []*int64{&ck.offset, &ck.maxStart, &ck.written, &ck.stream} {
		if *v, err = strconv.ParseInt(f[i], 10, 64); err != nil {
			return ck, false, nil
		}
	}
	return ck, true, nil
}

// putCheckpoint syncs the base folder of st's partition p (opening it
// may have written it, even with nothing to apply), then writes its
// checkpoint, synced.
func (rt *timeRuntime) putCheckpoint(st *stateDecl, p int32, ck checkpoint) error {
	dir := rt.partDir(st, p)
	if err := syncTree(filepath.Join(dir, "base")); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "checkpoint.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("topology: checkpoint: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %d %d %d\n", ck.offset, ck.maxStart, time.Now().UnixMilli(), ck.stream)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "checkpoint"))
	}
	if err != nil {
		return fmt.Errorf("topology: checkpoint %s: %w", dir, err)
	}
	return nil
}

// syncTree fsyncs every file and folder under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("topology: sync %s: %w", path, err)
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("topology: sync %s: %w", path, err)
		}
		return nil
	})
}

// copyTree replaces the folder to with a copy of from (missing: empty).
func copyTree(from, to string) error {
	if err := os.RemoveAll(to); err != nil {
		return fmt.Errorf("topology: empty %s: %w", to, err)
	}
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == from {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if d.Name() == "LOCK" {
			return nil // leveldb's lock of the open database: made again
		}
		if strings.HasSuffix(path, ".ldb") && os.Link(path, dst) == nil {
			// leveldb never changes a table file, only deletes it: the
			// copy shares it.
			return nil
		}
		return copyFile(path, dst)
	})
	if err != nil {
		return fmt.Errorf("topology: copy %s: %w", from, err)
	}
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}
