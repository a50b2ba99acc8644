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
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

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
	// LevelDB, when set, are the database's leveldb options (its ReadOnly
	// and ErrorIfMissing follow ReadOnly); nil: DefaultLevelDB().
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

// Store is a store of readings in one leveldb database. It implements
// sinks.Store and is safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	wo   *opt.WriteOptions

	// mu guards db, stor and closed. Calls hold it shared while they use
	// db; reopening and Close hold it exclusively.
	mu     sync.RWMutex
	db     *leveldb.DB // nil while the database must be reopened
	stor   storage.Storage
	closed bool
}

var _ sinks.Store = (*Store)(nil)

// Open opens the store in dir, creating dir and an empty store unless
// opts.ReadOnly is set. Only one writing Store may have dir open at a time,
// across processes: another one fails to open.
func Open(dir string, opts Options) (*Store, error) {
	s := &Store{dir: dir, opts: opts, wo: &opt.WriteOptions{Sync: !opts.NoSync}}
	db, stor, err := s.openDB()
	if err != nil {
		return nil, fmt.Errorf("local: open %s: %w", dir, err)
	}
	s.db, s.stor = db, stor
	return s, nil
}

// openDB opens the leveldb database in s.dir.
func (s *Store) openDB() (*leveldb.DB, storage.Storage, error) {
	stor, err := storage.OpenFile(s.dir, s.opts.ReadOnly)
	if err != nil {
		return nil, nil, err
	}
	var st storage.Storage = stor
	if s.opts.wrapStorage != nil {
		st = s.opts.wrapStorage(stor)
	}
	o := DefaultLevelDB()
	if s.opts.LevelDB != nil {
		o = *s.opts.LevelDB
	}
	o.ReadOnly, o.ErrorIfMissing = s.opts.ReadOnly, s.opts.ReadOnly
	db, err := leveldb.Open(st, &o)
	if err != nil {
		stor.Close()
		return nil, nil, err
	}
	return db, st, nil
}

// acquire returns the database for one call, reopening it if an earlier
// error discarded it, with s.mu held shared: the caller must call
// s.mu.RUnlock when done with db.
func (s *Store) acquire() (*leveldb.DB, error) {
	for {
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return nil, ErrClosed
		}
		if s.db != nil {
			return s.db, nil
		}
		s.mu.RUnlock()

		s.mu.Lock()
		if !s.closed && s.db == nil {
			db, stor, err := s.openDB()
			if err != nil {
				s.mu.Unlock()
				return nil, classify(fmt.Errorf("reopen: %w", err))
			}
			s.db, s.stor = db, stor
		}
		s.mu.Unlock()
	}
}

// discard closes db after an error that may have left it broken, so that
// the next call reopens the database. Another call may have discarded it
// already.
func (s *Store) discard(db *leveldb.DB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != db {
		return
	}
	// The database is being dropped for an error already reported; errors
	// of closing it add nothing, and the journal keeps its rows.
	_ = s.db.Close()
	_ = s.stor.Close()
	s.db, s.stor = nil, nil
}

// fail classifies err from db and discards db when the error may pass, so
// that a retry starts from a freshly opened database.
func (s *Store) fail(db *leveldb.DB, op string, err error) error {
	err = classify(err)
	if errors.Is(err, sinks.ErrUnavailable) {
		s.discard(db)
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

// keyRange returns the key range of q's rows, and false if it is empty.
func keyRange(q sinks.Query) (*util.Range, bool) {
	dev := binary.BigEndian.AppendUint64(nil, q.DeviceID)
	r := util.BytesPrefix(dev)
	if !q.From.IsZero() {
		from, ok := ceilMs(q.From)
		if !ok {
			return nil, false
		}
		r.Start = AppendKey(nil, q.DeviceID, from, 0)
	}
	if !q.To.IsZero() {
		to, ok := ceilMs(q.To)
		if ok {
			r.Limit = AppendKey(nil, q.DeviceID, to, 0)
		}
		if bytes.Compare(r.Start, r.Limit) >= 0 && r.Limit != nil {
			return nil, false
		}
	}
	return r, true
}

// ceilMs returns the smallest Unix millisecond at or after t, clamped to
// 0, and false if t is past every millisecond that a time.Time can hold as
// an int64 count (so no row is at or after it).
func ceilMs(t time.Time) (uint64, bool) {
	if t.Before(time.UnixMilli(0)) {
		return 0, true
	}
	if t.Unix() >= math.MaxInt64/1000 {
		return 0, false
	}
	ms := uint64(t.UnixMilli())
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		ms++
	}
	return ms, true
}

// Readings returns the device's rows in [q.From, q.To), ordered by message
// time and content CRC, at most q.Limit of them if it is positive. A
// negative Limit is an error.
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
// order until fn returns false or an error. Rows whose key is not KeyLen
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
	var ferr error
	for n := 0; it.Next(); n++ {
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

// Close waits for the calls in progress, then closes the database. Calls
// after Close fail with ErrClosed; closing twice is not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	if serr := s.stor.Close(); err == nil {
		err = serr
	}
	s.db, s.stor = nil, nil
	if err != nil {
		return fmt.Errorf("local: close %s: %w", s.dir, err)
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
