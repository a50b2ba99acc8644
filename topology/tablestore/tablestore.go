// Package tablestore is a goka table storage that batches writes: a
// group's table values and the table offset are buffered in memory and go to
// leveldb as one write batch every FlushInterval or MaxOps operations,
// instead of one leveldb journal write per value and per offset update as
// goka's own leveldb storage does.
//
// # Crash semantics
//
// A local table is a cache of its table topic: goka stores, next to the
// values, the offset of the last table-topic message they reflect, and after
// a restart replays the topic from that offset on. The cache is exact as long
// as the stored offset is never ahead of the stored values. goka sets a value
// before it calls SetOffset with the offset of the message carrying it (in
// recovery, after Set; in a processor, once the producer acknowledged the
// table message written after Set), so every value an offset covers is
// already in the buffer when that offset arrives. A flush takes the buffered
// values and the newest offset together and writes them in one leveldb
// batch, which leveldb applies atomically (one journal record): on disk, the
// offset never covers a value that is not there.
//
// A crash (the process killed, or a flush that fails) loses the writes
// buffered since the last flush: at most one FlushInterval of them, or
// MaxOps operations. All of them are later than the stored offset, so the
// recovery after a restart reads them back from the table topic and the
// table is exact again; the cost is replaying that interval, a few
// milliseconds of messages. Under a topology.Runner the storage is only
// given writes the table topic acknowledged (the runner's changelog wrapper
// holds the others in memory), so nothing it stores is ahead of the topic.
// Used directly under goka, which writes the store before the topic, values
// whose table message was never acknowledged may survive a crash ahead of the
// offset, as with goka's own leveldb storage.
//
// Without Options.Sync a flush is not fsynced: a killed process loses
// nothing that was flushed (the operating system has it), a machine that
// loses power may lose the newest batches, and leveldb drops a torn batch
// whole on reopening, so the same replay repairs it.
//
// # Read cache
//
// Values leave the buffers for leveldb at each flush; the storage keeps the
// newest of them, and of the values (and absences) it read from leveldb, in
// a bounded cache (Options.CacheBytes), so that a key read again soon (a
// device's entry, read on each of its packages) is a map lookup instead of
// a walk of leveldb's memtables and tables. The cache only ever holds what
// leveldb holds: a flush puts what it wrote, and a value read from leveldb
// is kept only if no flush completed while it was read.
//
// A flush that fails is not retried: the storage keeps serving reads from
// its buffer, logs the error once and returns it from every later write,
// so goka fails the partition and the restart recovers it as after a crash.
//
// The storage keeps goka's on-disk layout (one leveldb per partition, the
// offset as a decimal string under "__offset"), so a folder written by one
// storage opens with the other.
package tablestore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"
	ldbiter "github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/watershed-io/watershed/topology/internal/gencache"
)

// Defaults of Options.
const (
	DefaultFlushInterval = 50 * time.Millisecond
	DefaultMaxOps        = 4096
	// DefaultCacheBytes is the default of Options.CacheBytes.
	DefaultCacheBytes = 4 << 20
)

// offsetKey is where goka's leveldb storage keeps the table offset.
const offsetKey = "__offset"

// ErrClosed is returned by the operations of a closed storage.
var ErrClosed = errors.New("tablestore: storage closed")

// Options configure a batching storage. The zero value is usable.
type Options struct {
	// FlushInterval is the longest a write stays in memory, and so the
	// most a crash loses (default DefaultFlushInterval).
	FlushInterval time.Duration
	// MaxOps is the number of buffered operations (values, deletions)
	// that starts a flush before the interval is up (default
	// DefaultMaxOps). The writer waits for a flush only when twice as
	// many are buffered, which bounds the buffer's memory.
	MaxOps int
	// LevelDB are the options of each partition's database (nil:
	// leveldb's defaults, as goka's storage).
	LevelDB *opt.Options
	// CacheBytes bounds the read cache of flushed and read values, keys
	// included (default DefaultCacheBytes; negative: no cache). The cache
	// holds between half of it and all of it once full.
	CacheBytes int
	// Sync fsyncs every flush, so that the flushed batches survive a
	// power loss, not only a killed process. One fsync per flush instead
	// of one per write.
	Sync bool
	// Logger receives flush failures (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.MaxOps <= 0 {
		o.MaxOps = DefaultMaxOps
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Builder returns a goka storage.Builder that keeps each table partition in
// dir/<topic>.<partition>, the folder goka's storage.DefaultBuilder uses.
func Builder(dir string, opts Options) storage.Builder {
	return func(topic string, partition int32) (storage.Storage, error) {
		return Open(filepath.Join(dir, fmt.Sprintf("%s.%d", topic, partition)), opts)
	}
}

// Open opens (creating it if needed) the leveldb in path as a batching
// storage. goka calls Open on it to start the flushes and Close to end them.
func Open(path string, opts Options) (*Storage, error) {
	opts = opts.withDefaults()
	db, err := leveldb.OpenFile(path, opts.LevelDB)
	if err != nil {
		return nil, fmt.Errorf("tablestore: open %s: %w", path, err)
	}
	return newStorage(db, path, opts), nil
}

// newStorage wraps an open database; opts have their defaults.
func newStorage(db *leveldb.DB, path string, opts Options) *Storage {
	return &Storage{
		db: db, path: path, opts: opts,
		wo:      &opt.WriteOptions{Sync: opts.Sync},
		active:  buffer{values: map[string][]byte{}},
		cache:   gencache.New(opts.CacheBytes),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// buffer is a set of writes not yet in leveldb: the batch to write and, for
// reads, the newest value of each key in it (nil: deleted).
type buffer struct {
	batch  leveldb.Batch
	values map[string][]byte
}

// Storage is a goka storage.Storage that batches writes; see the package
// documentation. It is safe for concurrent use: goka writes values from a
// partition's goroutine, offsets from its producer's, and reads from others.
type Storage struct {
	db   *leveldb.DB
	path string
	opts Options
	wo   *opt.WriteOptions

	// flushMu serializes flushes, so that batches reach leveldb in the
	// order they were taken and at most one is in flight.
	flushMu sync.Mutex

	// mu guards the fields below it. It is not held while leveldb writes.
	mu sync.Mutex
	// active takes new writes; flushing is the batch being written (or
	// the one whose write failed), still read until leveldb has it.
	active, flushing buffer
	spare            buffer // the last batch written, emptied for reuse
	// cache holds values leveldb has, for reads; flushes counts the
	// completed flushes, so that a value read from leveldb is cached only
	// if none completed meanwhile (it could be older than the flush's).
	cache   gencache.Cache
	flushes uint64
	// afterRead, set by tests, runs between a leveldb read and its
	// caching.
	afterRead      func()
	offset         int64
	offsetSet      bool // offset holds a value (0 is a valid offset)
	offsetDirty    bool // offset is newer than the stored one
	err            error
	opened, closed bool

	kick          chan struct{}
	stop, stopped chan struct{}
}

var _ storage.Storage = (*Storage)(nil)

// Open starts the periodic flush.
func (s *Storage) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.opened {
		return nil
	}
	s.opened = true
	go s.flushLoop()
	return nil
}

func (s *Storage) flushLoop() {
	defer close(s.stopped)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		// A failure is kept in s.err, logged and returned to the writer.
		_ = s.flush()
	}
}

// flush writes everything buffered when it is called, with the newest
// offset, as one leveldb batch. It returns the storage's error, if any.
func (s *Storage) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		defer s.mu.Unlock()
		return s.err
	}
	if s.active.batch.Len() == 0 && !s.offsetDirty {
		s.mu.Unlock()
		return nil
	}
	// Take the values and the offset that covers them in one step: any
	// value the offset covers was set before it and is in this batch or
	// an earlier one.
	b := s.active
	if s.offsetDirty {
		b.batch.Put([]byte(offsetKey), strconv.AppendInt(nil, s.offset, 10))
		s.offsetDirty = false
	}
	s.flushing = b
	s.active, s.spare = s.spare, buffer{}
	if s.active.values == nil {
		s.active.values = make(map[string][]byte, len(b.values))
	}
	s.mu.Unlock()

	err := s.db.Write(&b.batch, s.wo)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Keep s.flushing: reads stay right, and nothing newer than
		// the stored offset is lost before the restart replays it.
		s.err = fmt.Errorf("tablestore: flush %s: %w", s.path, err)
		s.opts.Logger.Error("table storage flush failed; the partition must restart and recover", "path", s.path, "error", err)
		return s.err
	}
	s.flushing = buffer{}
	for k, v := range b.values {
		s.cache.Put(k, v)
	}
	s.flushes++
	b.batch.Reset()
	clear(b.values)
	s.spare = b
	return nil
}

// Close flushes what is buffered, stops the flushes and closes the
// database. Later calls return ErrClosed.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	opened := s.opened
	s.mu.Unlock()
	if opened {
		close(s.stop)
		<-s.stopped
	}
	err := s.flush()
	s.mu.Lock()
	s.cache = gencache.Cache{}
	s.mu.Unlock()
	if cerr := s.db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("tablestore: close %s: %w", s.path, cerr))
	}
	return err
}

// lookup finds key in the buffers and the cache: its value (nil: deleted
// or absent) and whether it is there, else the count of completed flushes.
func (s *Storage) lookup(key string) ([]byte, bool, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, 0, ErrClosed
	}
	if v, ok := s.active.values[key]; ok {
		return bytes.Clone(v), true, 0, nil
	}
	if v, ok := s.flushing.values[key]; ok {
		return bytes.Clone(v), true, 0, nil
	}
	if v, ok := s.cache.Get(key); ok {
		return bytes.Clone(v), true, 0, nil
	}
	return nil, false, s.flushes, nil
}

// Get returns key's value, nil when it has none. A value not in the
// buffers or the cache is read from leveldb; a flush cannot slip between
// the reads unseen, since a buffer is dropped only once leveldb and the
// cache have it.
func (s *Storage) Get(key string) ([]byte, error) {
	v, ok, flushes, err := s.lookup(key)
	if err != nil || ok {
		return v, err
	}
	v, err = s.db.Get([]byte(key), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		v, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tablestore: get %q: %w", key, err)
	}
	if s.afterRead != nil {
		s.afterRead()
	}
	s.mu.Lock()
	if s.flushes == flushes && !s.closed {
		// No flush completed since the read: leveldb still holds v.
		s.cache.Put(key, bytes.Clone(v))
	}
	s.mu.Unlock()
	return v, nil
}

// Has reports whether key has a value.
func (s *Storage) Has(key string) (bool, error) {
	v, err := s.Get(key)
	return v != nil, err
}

// Set buffers a value.
func (s *Storage) Set(key string, value []byte) error {
	if value == nil {
		value = []byte{} // a nil value is stored as empty, as leveldb does
	}
	return s.write(key, bytes.Clone(value))
}

// Delete buffers a deletion.
func (s *Storage) Delete(key string) error { return s.write(key, nil) }

func (s *Storage) write(key string, value []byte) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.err != nil {
		defer s.mu.Unlock()
		return s.err
	}
	if value == nil {
		s.active.batch.Delete([]byte(key))
	} else {
		s.active.batch.Put([]byte(key), value)
	}
	s.active.values[key] = value
	n := s.active.batch.Len()
	s.mu.Unlock()
	switch {
	case n >= 2*s.opts.MaxOps:
		// The flusher is behind: write here, so the buffer stays bounded.
		return s.flush()
	case n >= s.opts.MaxOps:
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// GetOffset returns the newest table offset set, else the stored one, else
// def.
func (s *Storage) GetOffset(def int64) (int64, error) {
	s.mu.Lock()
	off, set, closed := s.offset, s.offsetSet, s.closed
	s.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if set {
		return off, nil
	}
	data, err := s.db.Get([]byte(offsetKey), nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return def, nil
	}
	if err != nil {
		return 0, fmt.Errorf("tablestore: get offset: %w", err)
	}
	off, err = strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("tablestore: stored offset %q: %w", data, err)
	}
	return off, nil
}

// SetOffset buffers the table offset; it is written with the next batch,
// together with the values it covers.
func (s *Storage) SetOffset(offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.err != nil {
		return s.err
	}
	s.offset, s.offsetSet, s.offsetDirty = offset, true, true
	return nil
}

// MarkRecovered flushes what the recovery buffered. The storage behaves
// the same before and after.
func (s *Storage) MarkRecovered() error { return s.flush() }

// Iterator flushes the buffers and iterates over a snapshot of the table,
// without the offset.
func (s *Storage) Iterator() (storage.Iterator, error) {
	return s.IteratorWithRange(nil, nil)
}

// IteratorWithRange flushes the buffers and iterates over a snapshot of
// the keys in [start, limit), without the offset; a nil bound is open.
func (s *Storage) IteratorWithRange(start, limit []byte) (storage.Iterator, error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return &iterator{it: s.db.NewIterator(&util.Range{Start: start, Limit: limit}, &opt.ReadOptions{DontFillCache: true})}, nil
}

// iterator hides the offset key from a leveldb iterator.
type iterator struct {
	it ldbiter.Iterator
}

func (i *iterator) skipOffset(ok bool) bool {
	for ok && string(i.it.Key()) == offsetKey {
		ok = i.it.Next()
	}
	return ok
}

// Next moves to the next pair; false at the end or on an error (see Err).
func (i *iterator) Next() bool { return i.skipOffset(i.it.Next()) }

// Err returns the error that ended the iteration, if any.
func (i *iterator) Err() error { return i.it.Error() }

// Key returns the current key; it is valid until the next move.
func (i *iterator) Key() []byte { return i.it.Key() }

// Value returns the current value; it is valid until the next move.
func (i *iterator) Value() ([]byte, error) { return i.it.Value(), nil }

// Release frees the iterator.
func (i *iterator) Release() { i.it.Release() }

// Seek moves to the first pair whose key is at least key.
func (i *iterator) Seek(key []byte) bool { return i.skipOffset(i.it.Seek(key)) }

// The table storages a command selects by name (--table-storage).
const (
	// KindLevelDB is goka's leveldb storage: a journal write per value
	// and per offset update.
	KindLevelDB = "leveldb"
	// KindBatched is this package's batching storage.
	KindBatched = "batched"
	// DefaultKind is what a topology.Runner uses when its options name
	// no table storage, and the default of the commands' --table-storage.
	DefaultKind = KindBatched
)

// Kinds lists the names ForKind accepts.
func Kinds() []string { return []string{KindLevelDB, KindBatched} }

// Factory builds the goka storage of a processor group's tables in the
// folder it is given: the topology.RunnerOptions.TableStorage. ForKind
// returns one; Builder, bound to its options, is one.
type Factory func(dir string) storage.Builder

// ForKind returns the Factory of a kind; opts configure KindBatched.
func ForKind(kind string, opts Options) (Factory, error) {
	switch kind {
	case KindLevelDB:
		return storage.DefaultBuilder, nil
	case KindBatched:
		return func(dir string) storage.Builder { return Builder(dir, opts) }, nil
	}
	return nil, fmt.Errorf("tablestore: unknown table storage %q (want %s or %s)", kind, KindLevelDB, KindBatched)
}
