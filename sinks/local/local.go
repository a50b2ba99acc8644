// Package local is the embedded default store of readings: a goleveldb
// database in one directory, implementing sinks.Store.
//
// # Layout
//
// A row's key is its identity, 20 bytes: the device id (8 bytes
// big-endian), the message time in Unix milliseconds (8 bytes big-endian)
// and the content CRC (4 bytes big-endian). A device's rows are therefore
// contiguous and ordered by time, then CRC, and writing a reading twice
// leaves one row (the later write's value). The value is the reading
// encoded with records.ReadingCodec.
//
// # Durability
//
// Write applies one leveldb batch per call, so a call's rows become visible
// and durable together. By default the batch is written with
// WriteOptions{Sync: true}: Write returns only after the journal is fsynced,
// because the sink processor commits Kafka offsets as soon as Write returns,
// and a row acknowledged but lost in an OS crash or power cut would be lost
// for good. leveldb merges concurrent writes into one journal write and one
// fsync, so concurrent writers share the cost. Options.NoSync trades that
// guarantee for speed: rows then survive a crash of the process but not of
// the machine. BenchmarkWrite in local_test.go measures both with batches
// of 40 readings; on 2 cores (AMD EPYC VM, ext4 on virtio), Sync cost
// 240-270 us a batch against 63-73 us without: 150,000-170,000 rows/s from
// one writer and 260,000-450,000 from 4 to 16 concurrent writers, against
// 520,000-630,000 rows/s unsynced. That is above the pipeline's measured
// 45,000-300,000 messages/s, so Sync stays the default. (A physical disk
// without a write cache fsyncs slower: measure there before relying on it.)
//
// # Errors
//
// Write and the read methods wrap sinks.ErrUnavailable around errors that
// may pass by themselves: I/O errors from the file system (a full disk,
// EIO, a file that cannot be created) and leveldb's transient compaction
// errors, which it retries itself. After such an error the store reopens
// the database at its next call, because goleveldb keeps a failed journal
// writer broken until the database is reopened; reopening replays the
// journal and drops a torn tail, so every row acknowledged before stays.
// While the reopen fails (the disk is still full) every call fails with
// sinks.ErrUnavailable.
//
// These errors are permanent and do not wrap sinks.ErrUnavailable:
// corruption (leveldb's ErrCorrupted, and its read-only mode, which it
// enters after corruption during compaction: repair the directory with
// leveldb.RecoverFile), a stored value that does not decode, a store
// opened read-only, and a closed store (ErrClosed).
//
// A call whose context is done returns an error that wraps both the
// context's error and sinks.ErrUnavailable: its rows are not at fault, and
// a caller that is not stopping should retry them.
package local

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"

	"github.com/syndtr/goleveldb/leveldb"
	lverrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

// KeyLen is the length of a row key: device id, message time, content CRC.
const KeyLen = 8 + 8 + 4

// ErrClosed is wrapped by the errors of every call on a closed Store. It is
// permanent: it does not wrap sinks.ErrUnavailable.
var ErrClosed = errors.New("local: store closed")

// ErrReadOnly is wrapped by the error of Write on a Store opened with
// Options.ReadOnly. It is permanent.
var ErrReadOnly = errors.New("local: store opened read-only")

// ctxCheckEvery is how many rows a scan reads between context checks.
const ctxCheckEvery = 1024

// Options configure a Store. The zero value is the durable default.
type Options struct {
	// NoSync makes Write return once the batch is in the journal file (the
	// OS page cache) instead of after an fsync: faster, and rows survive a
	// crash of the process, but a crash of the machine may lose the rows of
	// the last writes.
	NoSync bool
	// ReadOnly opens an existing store for reading: Open fails if dir holds
	// no store, and Write fails with ErrReadOnly. A read-only Store can
	// share dir with other read-only Stores but not with a writer.
	ReadOnly bool
	// LevelDB, when set, are the readings database's leveldb options (its
	// ReadOnly and ErrorIfMissing follow ReadOnly); nil: DefaultLevelDB().
	// The summaries' database keeps leveldb's defaults.
	LevelDB *opt.Options

	// wrapStorage, when set, wraps the file storage (tests inject faults).
	wrapStorage func(storage.Storage) storage.Storage
}

// DefaultLevelDB returns the store's leveldb options: larger memtables and
// levels than leveldb's defaults (4 MiB, 2 MiB tables, 10 MiB level 1), so
// that rows written once are rewritten by fewer compactions. Catching up on
// 3 million messages, the sink's CPU fell by a third (docs/benchmarks.md);
// the cost is up to 64 MiB of memtables.
func DefaultLevelDB() opt.Options {
	return opt.Options{WriteBuffer: 32 << 20, CompactionTableSize: 8 << 20, CompactionTotalSize: 64 << 20}
}

// Store is a store of readings in one leveldb database, and of summaries
// in a second one in its "summaries" subdirectory. It implements
// sinks.Store and sinks.SummaryStore and is safe for concurrent use.
type Store struct {
	*handle // the readings
	sums    *handle
	wo      *opt.WriteOptions
}

// handle is one leveldb database, reopened after errors that may pass.
type handle struct {
	dir  string
	opts Options
	ldb  opt.Options // leveldb's options but ReadOnly and ErrorIfMissing

	// mu guards db, stor and closed. Calls hold it shared while they use
	// db; reopening and Close hold it exclusively.
	mu     sync.RWMutex
	db     *leveldb.DB // nil while the database must be (re)opened
	stor   storage.Storage
	closed bool
}

var (
	_ sinks.Store        = (*Store)(nil)
	_ sinks.SummaryStore = (*Store)(nil)
)

// SummariesSubdir is the subdirectory of a store's directory that holds
// its summaries.
const SummariesSubdir = "summaries"

// Open opens the store in dir, creating dir and an empty store unless
// opts.ReadOnly is set. Only one writing Store may have dir open at a time,
// across processes: another one fails to open. The summaries' database is
// opened at its first use.
func Open(dir string, opts Options) (*Store, error) {
	readings := DefaultLevelDB()
	if opts.LevelDB != nil {
		readings = *opts.LevelDB
	}
	s := &Store{
		handle: &handle{dir: dir, opts: opts, ldb: readings},
		// Summaries are few (one a device an hour): leveldb's defaults.
		sums: &handle{dir: filepath.Join(dir, SummariesSubdir), opts: opts},
		wo:   &opt.WriteOptions{Sync: !opts.NoSync},
	}
	db, stor, err := s.openDB()
	if err != nil {
		return nil, fmt.Errorf("local: open %s: %w", dir, err)
	}
	s.db, s.stor = db, stor
	return s, nil
}

// openDB opens the leveldb database in h.dir.
func (h *handle) openDB() (*leveldb.DB, storage.Storage, error) {
	stor, err := storage.OpenFile(h.dir, h.opts.ReadOnly)
	if err != nil {
		return nil, nil, err
	}
	var st storage.Storage = stor
	if h.opts.wrapStorage != nil {
		st = h.opts.wrapStorage(stor)
	}
	o := h.ldb
	o.ReadOnly, o.ErrorIfMissing = h.opts.ReadOnly, h.opts.ReadOnly
	db, err := leveldb.Open(st, &o)
	if err != nil {
		stor.Close()
		return nil, nil, err
	}
	return db, st, nil
}

// acquire returns the database for one call, (re)opening it if it is not
// open, with h.mu held shared: the caller must call h.mu.RUnlock when done
// with db.
func (h *handle) acquire() (*leveldb.DB, error) {
	for {
		h.mu.RLock()
		if h.closed {
			h.mu.RUnlock()
			return nil, ErrClosed
		}
		if h.db != nil {
			return h.db, nil
		}
		h.mu.RUnlock()

		h.mu.Lock()
		if !h.closed && h.db == nil {
			db, stor, err := h.openDB()
			if err != nil {
				h.mu.Unlock()
				return nil, classify(fmt.Errorf("reopen: %w", err))
			}
			h.db, h.stor = db, stor
		}
		h.mu.Unlock()
	}
}

// discard closes db after an error that may have left it broken, so that
// the next call reopens the database. Another call may have discarded it
// already.
func (h *handle) discard(db *leveldb.DB) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.db != db {
		return
	}
	// The database is being dropped for an error already reported; errors
	// of closing it add nothing, and the journal keeps its rows.
	_ = h.db.Close()
	_ = h.stor.Close()
	h.db, h.stor = nil, nil
}

// fail classifies err from db and discards db when the error may pass, so
// that a retry starts from a freshly opened database.
func (h *handle) fail(db *leveldb.DB, op string, err error) error {
	err = classify(err)
	if errors.Is(err, sinks.ErrUnavailable) {
		h.discard(db)
	}
	return fmt.Errorf("local: %s: %w", op, err)
}

// classify wraps sinks.ErrUnavailable around err unless it is permanent:
// corruption, leveldb's read-only mode, or a closed database.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed), errors.Is(err, ErrReadOnly):
		return err
	case errors.Is(err, leveldb.ErrClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, leveldb.ErrReadOnly), isCorrupted(err):
		return fmt.Errorf("corrupted store: %w", err)
	default:
		return fmt.Errorf("%w: %w", sinks.ErrUnavailable, err)
	}
}

// isCorrupted reports whether err or an error it wraps is leveldb's
// corruption error. (lverrors.IsCorrupted looks at err alone.)
func isCorrupted(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if lverrors.IsCorrupted(e) {
			return true
		}
	}
	return false
}

// ctxErr returns an error wrapping ctx's error and sinks.ErrUnavailable if
// ctx is done.
func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: %s: %w: %w", op, sinks.ErrUnavailable, err)
	}
	return nil
}

// AppendKey appends the row key of (deviceID, timeMs, crc) to b.
func AppendKey(b []byte, deviceID, timeMs uint64, crc uint32) []byte {
	b = binary.BigEndian.AppendUint64(b, deviceID)
	b = binary.BigEndian.AppendUint64(b, timeMs)
	return binary.BigEndian.AppendUint32(b, crc)
}

// Write stores readings in one leveldb batch, overwriting rows of the same
// identity; readers see all of them or none. After an error the rows may
// or may not be stored (a failed fsync leaves them in the journal, which a
// reopen replays), and writing them again is safe. With the default
// options it returns after the journal is fsynced. It checks ctx before it
// starts; a leveldb write, once started, is not interrupted.
func (s *Store) Write(ctx context.Context, readings []records.Reading) error {
	if err := ctxErr(ctx, "write"); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return fmt.Errorf("local: write: %w", ErrReadOnly)
	}
	var codec records.ReadingCodec
	batch := new(leveldb.Batch)
	keys := make([]byte, 0, KeyLen*len(readings))
	for i := range readings {
		r := &readings[i]
		v, err := codec.Encode(*r)
		if err != nil {
			return fmt.Errorf("local: write: encode reading %d: %w", i, err)
		}
		keys = AppendKey(keys, r.DeviceID, r.TimeMs, r.ContentCRC)
		batch.Put(keys[len(keys)-KeyLen:], v)
	}
	db, err := s.acquire()
	if err != nil {
		return fmt.Errorf("local: write: %w", err)
	}
	// leveldb.DB.Write of an empty batch returns nil without writing.
	err = db.Write(batch, s.wo)
	s.mu.RUnlock()
	if err != nil {
		return s.fail(db, "write", err)
	}
	return nil
}

// keyRange returns the key range of q's rows (From, To and After), and
// false if it is empty.
func keyRange(q sinks.Query) (*util.Range, bool) {
	lo, hi, ok := q.Span()
	if !ok {
		return nil, false
	}
	r := util.BytesPrefix(binary.BigEndian.AppendUint64(nil, q.DeviceID))
	r.Start = AppendKey(nil, q.DeviceID, lo.TimeMs, lo.ContentCRC)
	if hi != nil {
		r.Limit = AppendKey(nil, q.DeviceID, hi.TimeMs, hi.ContentCRC)
	}
	return r, true
}

// Readings returns the device's rows in [q.From, q.To) after q.After,
// ordered by message time and content CRC (newest first when q.Newest),
// at most q.Limit of them if it is positive. A negative Limit is an error.
func (s *Store) Readings(ctx context.Context, q sinks.Query) ([]records.Reading, error) {
	if err := ctxErr(ctx, "readings"); err != nil {
		return nil, err
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("local: readings: negative limit %d", q.Limit)
	}
	var out []records.Reading
	var codec records.ReadingCodec
	err := s.scan(ctx, "readings", q, func(it iterator.Iterator) (bool, error) {
		r, err := codec.Decode(it.Value())
		if err != nil {
			return false, fmt.Errorf("corrupted row %x: %w", it.Key(), err)
		}
		k := it.Key()
		if r.DeviceID != binary.BigEndian.Uint64(k) || r.TimeMs != binary.BigEndian.Uint64(k[8:]) || r.ContentCRC != binary.BigEndian.Uint32(k[16:]) {
			return false, fmt.Errorf("corrupted row %x: value is reading (%d, %d, %08x)", k, r.DeviceID, r.TimeMs, r.ContentCRC)
		}
		out = append(out, r)
		return q.Limit == 0 || len(out) < q.Limit, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Count returns the number of rows of the device.
func (s *Store) Count(ctx context.Context, deviceID uint64) (int, error) {
	if err := ctxErr(ctx, "count"); err != nil {
		return 0, err
	}
	n := 0
	err := s.scan(ctx, "count", sinks.Query{DeviceID: deviceID}, func(iterator.Iterator) (bool, error) {
		n++
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// scan calls fn on each row of q's key range (ignoring q.Limit) in key
// order, or in reverse when q.Newest, until fn returns false or an error. Rows whose key is not KeyLen
// long are corruption.
func (s *Store) scan(ctx context.Context, op string, q sinks.Query, fn func(iterator.Iterator) (bool, error)) error {
	r, ok := keyRange(q)
	if !ok {
		return nil
	}
	db, err := s.acquire()
	if err != nil {
		return fmt.Errorf("local: %s: %w", op, err)
	}
	it := db.NewIterator(r, &opt.ReadOptions{DontFillCache: q.Limit == 0})
	step, first := it.Next, it.First
	if q.Newest {
		step, first = it.Prev, it.Last
	}
	var ferr error
	for n, ok := 0, first(); ok; n, ok = n+1, step() {
		if n%ctxCheckEvery == ctxCheckEvery-1 {
			if ferr = ctxErr(ctx, op); ferr != nil {
				break
			}
		}
		if len(it.Key()) != KeyLen {
			ferr = fmt.Errorf("local: %s: corrupted store: key %x is not %d bytes", op, it.Key(), KeyLen)
			break
		}
		var more bool
		if more, ferr = fn(it); ferr != nil {
			ferr = fmt.Errorf("local: %s: %w", op, ferr)
			break
		}
		if !more {
			break
		}
	}
	it.Release()
	if ferr != nil {
		s.mu.RUnlock()
		return ferr
	}
	if err := it.Error(); err != nil {
		s.mu.RUnlock()
		return s.fail(db, op, err)
	}
	s.mu.RUnlock()
	return nil
}

// Devices returns the ids of the devices that have rows, in ascending
// order.
func (s *Store) Devices(ctx context.Context) ([]uint64, error) {
	if err := ctxErr(ctx, "devices"); err != nil {
		return nil, err
	}
	db, err := s.acquire()
	if err != nil {
		return nil, fmt.Errorf("local: devices: %w", err)
	}
	it := db.NewIterator(nil, &opt.ReadOptions{DontFillCache: true})
	var ids []uint64
	var ferr error
	for ok := it.First(); ok; {
		if ferr = ctxErr(ctx, "devices"); ferr != nil {
			break
		}
		if len(it.Key()) != KeyLen {
			ferr = fmt.Errorf("local: devices: corrupted store: key %x is not %d bytes", it.Key(), KeyLen)
			break
		}
		id := binary.BigEndian.Uint64(it.Key())
		ids = append(ids, id)
		if id == math.MaxUint64 {
			break
		}
		ok = it.Seek(binary.BigEndian.AppendUint64(nil, id+1))
	}
	it.Release()
	if ferr != nil {
		s.mu.RUnlock()
		return nil, ferr
	}
	if err := it.Error(); err != nil {
		s.mu.RUnlock()
		return nil, s.fail(db, "devices", err)
	}
	s.mu.RUnlock()
	return ids, nil
}

// Close waits for the calls in progress, then closes the databases. Calls
// after Close fail with ErrClosed; closing twice is not an error.
func (s *Store) Close() error {
	return errors.Join(s.handle.close(), s.sums.close())
}

// close closes h's database.
func (h *handle) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if h.db == nil {
		return nil
	}
	err := h.db.Close()
	if serr := h.stor.Close(); err == nil {
		err = serr
	}
	h.db, h.stor = nil, nil
	if err != nil {
		return fmt.Errorf("local: close %s: %w", h.dir, err)
	}
	return nil
}

// Ping reports whether the store can be used (it reopens the database if
// an earlier error discarded it). It implements sinks.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctxErr(ctx, "ping"); err != nil {
		return err
	}
	if _, err := s.acquire(); err != nil {
		return err
	}
	s.mu.RUnlock()
	return nil
}
