package bench

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

// The table storages the benchmark can run the groups with (--table-storage).
const (
	// StorageDefault is goka's leveldb with default options: every
	// SetValue is a journal write, and so is every offset update.
	StorageDefault = "leveldb"
	// StorageLarge is leveldb with a 32 MiB write buffer and no write
	// merging.
	StorageLarge = "leveldb-large"
	// StorageBatched buffers writes and offsets in memory and writes them
	// to leveldb (default options) as one batch every 50 ms or 4,096
	// operations.
	StorageBatched = "batched"
)

func largeOptions() *opt.Options {
	return &opt.Options{WriteBuffer: 32 << 20, NoWriteMerge: true, CompactionTableSize: 8 << 20}
}

// tableStorage returns the topology.RunnerOptions.TableStorage of a kind.
func tableStorage(kind string) (func(dir string) storage.Builder, error) {
	switch kind {
	case "", StorageDefault:
		return nil, nil
	case StorageLarge:
		return func(dir string) storage.Builder { return storage.BuilderWithOptions(dir, largeOptions()) }, nil
	case StorageBatched:
		return func(dir string) storage.Builder {
			return func(topic string, partition int32) (storage.Storage, error) {
				db, err := leveldb.OpenFile(filepath.Join(dir, fmt.Sprintf("%s.%d", topic, partition)), nil)
				if err != nil {
					return nil, fmt.Errorf("bench: open table storage: %w", err)
				}
				return newBatched(db, 50*time.Millisecond, 4096)
			}
		}, nil
	}
	return nil, fmt.Errorf("bench: table storage %q: want %s, %s or %s", kind, StorageDefault, StorageLarge, StorageBatched)
}

// offsetKey is where goka's leveldb storage keeps the table offset; the
// batched storage keeps it there too, so that either opens the other's
// folders.
const offsetKey = "__offset"

// batched is a goka storage that buffers writes: reads see the buffer,
// and the buffer goes to leveldb as one batch, with the table offset of
// its last write, every interval or maxOps operations. A crash loses at
// most one interval of writes, all later than the stored offset, so the
// recovery replays them from the table topic: the table stays exact.
type batched struct {
	inner    storage.Storage
	db       *leveldb.DB
	interval time.Duration
	maxOps   int

	mu          sync.Mutex
	batch       leveldb.Batch
	overlay     map[string][]byte // nil value: deleted
	offset      int64
	offsetDirty bool
	err         error

	stop, stopped chan struct{}
	closeOnce     sync.Once
}

func newBatched(db *leveldb.DB, interval time.Duration, maxOps int) (*batched, error) {
	inner, err := storage.New(db)
	if err != nil {
		return nil, fmt.Errorf("bench: table storage: %w", err)
	}
	return &batched{inner: inner, db: db, interval: interval, maxOps: maxOps,
		overlay: map[string][]byte{}, stop: make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Open starts the periodic flush.
func (b *batched) Open() error {
	if err := b.inner.Open(); err != nil {
		return err
	}
	go func() {
		defer close(b.stopped)
		t := time.NewTicker(b.interval)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.mu.Lock()
				b.flushLocked()
				b.mu.Unlock()
			}
		}
	}()
	return nil
}

// flushLocked writes the buffer; a failure is kept and returned by the
// next write.
func (b *batched) flushLocked() {
	if b.batch.Len() == 0 && !b.offsetDirty {
		return
	}
	if b.offsetDirty {
		b.batch.Put([]byte(offsetKey), strconv.AppendInt(nil, b.offset, 10))
		b.offsetDirty = false
	}
	if err := b.db.Write(&b.batch, nil); err != nil && b.err == nil {
		b.err = fmt.Errorf("bench: table storage flush: %w", err)
	}
	b.batch.Reset()
	clear(b.overlay)
}

func (b *batched) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

// Close flushes and closes the database.
func (b *batched) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.stopped
		err = b.flush()
		if cerr := b.inner.Close(); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

// Has reports whether key has a value.
func (b *batched) Has(key string) (bool, error) {
	v, err := b.Get(key)
	return v != nil, err
}

// Get returns key's value, nil when none.
func (b *batched) Get(key string) ([]byte, error) {
	b.mu.Lock()
	v, ok := b.overlay[key]
	b.mu.Unlock()
	if ok {
		return v, nil
	}
	return b.inner.Get(key)
}

func (b *batched) put(key string, v []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if v == nil {
		b.batch.Delete([]byte(key))
	} else {
		b.batch.Put([]byte(key), v)
	}
	b.overlay[key] = v
	if b.batch.Len() >= b.maxOps {
		b.flushLocked()
	}
	return b.err
}

// Set buffers a write.
func (b *batched) Set(key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return b.put(key, append([]byte(nil), value...))
}

// Delete buffers a deletion.
func (b *batched) Delete(key string) error { return b.put(key, nil) }

// GetOffset returns the newest table offset written, else the stored
// one, else def.
func (b *batched) GetOffset(def int64) (int64, error) {
	b.mu.Lock()
	off, set := b.offset, b.offset != 0
	b.mu.Unlock()
	if set {
		return off, nil
	}
	return b.inner.GetOffset(def)
}

// SetOffset buffers the table offset; it is written with the next batch.
func (b *batched) SetOffset(offset int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offset, b.offsetDirty = offset, true
	return b.err
}

// MarkRecovered flushes and marks the storage recovered.
func (b *batched) MarkRecovered() error {
	if err := b.flush(); err != nil {
		return err
	}
	return b.inner.MarkRecovered()
}

// Iterator flushes and iterates over the database.
func (b *batched) Iterator() (storage.Iterator, error) {
	if err := b.flush(); err != nil {
		return nil, err
	}
	return b.inner.Iterator()
}

// IteratorWithRange flushes and iterates over a range of the database.
func (b *batched) IteratorWithRange(start, limit []byte) (storage.Iterator, error) {
	if err := b.flush(); err != nil {
		return nil, err
	}
	return b.inner.IteratorWithRange(start, limit)
}
