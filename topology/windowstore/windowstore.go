// Package windowstore is a windowed store on goleveldb: per key, windows
// identified by their start time, each with an end time and a value, kept
// in time segments so that retention drops whole segments.
//
// # Layout
//
// A window belongs to the segment of its start time, start /
// SegmentInterval; each segment is its own leveldb database in
// Dir/seg-<segment start ms>. Retention therefore removes a directory
// (Expire), never rewrites or deletes keys one by one, and a store's size
// is bounded by the segments its retention keeps.
//
// Inside a segment a window is stored under its own key, the record key
// (length-prefixed, so that "a" and "ab" never share a range) followed by
// its start, so a record updates one window without reading or rewriting
// the key's others:
//
//	'w' uvarint(len(key)) key start(8 bytes)  ->  end(8 bytes) value
//	'e' end(8 bytes) uvarint(len(key)) key start(8 bytes)  ->  (empty)
//
// The second entry indexes windows by end time: Ending visits the windows
// that end in a range, in end order, reading index entries of those
// windows only (plus one seek per segment), whatever else the store holds;
// a stream-time clock closes due windows with it at a cost in proportion
// to the due ones. Times are Unix milliseconds, big-endian, non-negative.
//
// # Changelog
//
// Put and Delete return the Change they made, which the caller writes to
// the store's changelog topic (ChangeKey, ChangeValue); Restore applies
// changes read back from it, tombstones included, and is idempotent, so a
// store rebuilt from the topic equals the one that wrote it. Windows older
// than the retention may come back in a restore (a compacted topic keeps
// them): call Expire with the restored stream time afterwards. A caller
// that builds the changelog record's value first gives it to PutRecord,
// which keeps those bytes: the store, its cache and the changelog then
// share one copy of the window.
//
// Writes are not fsynced (Options.Sync): the changelog is the durable copy,
// as it is for goka's tables. For the same reason a store may keep writes
// in memory and write them in batches (Options.WriteBuffer): a leveldb
// write per record costs a journal write and a memtable insert each, and a
// record often rewrites the window the one before it wrote.
package windowstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/watershed-io/watershed/topology/internal/gencache"
)

// Errors of the store.
var (
	// ErrExpired is returned by Put for a window whose segment retention
	// has dropped: the window is later than the retention allows.
	ErrExpired = errors.New("windowstore: window older than the retention")
	// ErrClosed is wrapped by the errors of calls on a closed Store.
	ErrClosed = errors.New("windowstore: closed")
	// ErrTime is returned for a negative time or an end before the start.
	ErrTime = errors.New("windowstore: window times out of range")
)

// Options configure a Store.
type Options struct {
	// Dir holds the segments' databases (required; created if missing).
	Dir string
	// SegmentInterval is the span of window start times of one segment, in
	// milliseconds (required). Retention drops segments whole, so it is the
	// granularity of retention: a few per retention period.
	SegmentInterval int64
	// Retention is how long, in milliseconds of stream time, a segment is
	// kept after its last start time: Expire(t) drops the segments whose
	// start times all lie before t - Retention. It must cover the longest
	// window and its grace period (required, positive).
	Retention int64
	// Sync fsyncs every write. Off by default: the changelog is the
	// durable copy.
	Sync bool
	// Memory keeps the segments in memory instead of Dir (which may then
	// be empty): for tests, where the store lives as long as its process.
	Memory bool
	// WriteBuffer, when positive, is how many bytes of writes the store
	// keeps in memory before it writes them to its segments, in one batch
	// per segment; a window written again meanwhile is written once. Every
	// read sees the writes kept. Flush and Close write them; a process
	// that dies loses them, so it is for a store rebuilt from its
	// changelog (or thrown away) after a crash. 0 writes each at once.
	// The buffer's memory is about WriteBuffer plus a few hundred bytes
	// a window (the count includes an estimate of them). A Put whose
	// write of the buffer failed returns the error with its own write
	// kept in the buffer.
	WriteBuffer int
	// CacheBytes bounds, with a write buffer, the read cache of windows
	// written from the buffer and read from the segments (and of windows
	// found absent), keys included: a window read again soon (a key's
	// open window, read on each of its records) is a map lookup instead
	// of a walk of leveldb's memtables and tables, and writing a window
	// needs no read of its old end. Default DefaultCacheBytes; negative:
	// none. The cache holds between half of it and all of it once full;
	// a window larger than half of it is not cached.
	CacheBytes int
}

// DefaultCacheBytes is the default of Options.CacheBytes.
const DefaultCacheBytes = 4 << 20

// Window is one stored window of a key.
type Window struct {
	Key        []byte
	Start, End int64
	Value      []byte
}

// Change is one changelog record: the window (Key, Start) now has End and
// Value, or is deleted when Value is nil.
type Change struct {
	Key        []byte
	Start, End int64
	Value      []byte
}

// Store is a windowed store. It is safe for concurrent use.
type Store struct {
	opts Options
	wo   *opt.WriteOptions

	mu       sync.RWMutex
	segments map[int64]*leveldb.DB // by segment number
	// expiredBelow is the first segment number still kept: Expire dropped
	// every one below it.
	expiredBelow int64
	closed       bool

	// scanned counts the index entries Ending read (tests check that it
	// reads only what it returns); concurrent Endings count it. reads
	// counts the windows read from the segments past the cache.
	scanned, reads atomic.Int64

	// The write buffer (Options.WriteBuffer): pending holds the newest
	// unwritten write of each window by windowKey, byKey the starts of a
	// record key's pending windows, pendingBytes their size. cache holds
	// what the segments hold of windows not pending (their stored value,
	// end first; nil: none), exactly: it is filled by reads under the
	// exclusive lock and by the buffer's writes, the only writes of the
	// segments with a buffer. A window of a dropped segment may linger in
	// it; reads check the segment first. minEnd is at most the end of
	// every pending window (Ending skips the buffer for ranges ending
	// before it); a scan of the buffer sets it to the true minimum, under
	// the read lock, hence atomic.
	pending      map[string]*pendingWrite
	byKey        map[string][]int64
	cache        gencache.Cache
	pendingBytes int
	minEnd       atomic.Int64
}

// pendingWrite is a window's write held in the write buffer.
type pendingWrite struct {
	key        []byte
	start, end int64
	// stored is what the segment will hold: the end, then the value
	// (the changelog record's value, ChangeValue); nil: deleted.
	stored []byte
	// dbEnd is the window's end in its segment (noWindow: it has none),
	// whose index entry the write replaces.
	dbEnd int64
}

// value returns the window's value, nil when deleted.
func (p *pendingWrite) value() []byte {
	if p.stored == nil {
		return nil
	}
	return p.stored[8:]
}

// noWindow is the dbEnd of a window its segment does not hold (ends are
// never negative).
const noWindow = -1

// pendingOverhead is what the buffer counts for a window besides its
// value and twice its key (pending's and byKey's): the entry, the map
// slots and the start.
const pendingOverhead = 160

// pendingCost is what the buffer counts for window wk (record key key)
// holding value.
func pendingCost(wk, key, value []byte) int { return len(wk) + len(key) + len(value) + pendingOverhead }

// mergeLimit is the most buffered windows an Ending merges with the
// segments' index; beyond it, Ending writes the buffer first (it would be
// written soon anyway), so that a scan costs in proportion to what it
// returns, not to the buffer.
const mergeLimit = 256

// segmentPrefix starts a segment's directory name.
const segmentPrefix = "seg-"

// Open opens the store in opts.Dir with the segments already there.
func Open(opts Options) (*Store, error) {
	if (opts.Dir == "" && !opts.Memory) || opts.SegmentInterval <= 0 || opts.Retention <= 0 {
		return nil, errors.New("windowstore: Options need Dir, a positive SegmentInterval and a positive Retention")
	}
	s := &Store{opts: opts, wo: &opt.WriteOptions{Sync: opts.Sync}, segments: map[int64]*leveldb.DB{}, expiredBelow: math.MinInt64}
	if opts.WriteBuffer > 0 {
		s.pending, s.byKey = map[string]*pendingWrite{}, map[string][]int64{}
		if opts.CacheBytes == 0 {
			opts.CacheBytes = DefaultCacheBytes
		}
		s.cache = gencache.New(opts.CacheBytes)
		s.minEnd.Store(math.MaxInt64)
	}
	if opts.Memory {
		return s, nil
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("windowstore: %w", err)
	}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("windowstore: %w", err)
	}
	for _, e := range entries {
		startMs, ok := strings.CutPrefix(e.Name(), segmentPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		ms, err := strconv.ParseInt(startMs, 10, 64)
		if err != nil || ms%opts.SegmentInterval != 0 {
			s.closeAll()
			return nil, fmt.Errorf("windowstore: %s: not a segment of interval %d ms", e.Name(), opts.SegmentInterval)
		}
		db, err := openSegment(filepath.Join(opts.Dir, e.Name()))
		if err != nil {
			s.closeAll()
			return nil, err
		}
		s.segments[ms/opts.SegmentInterval] = db
	}
	return s, nil
}

// openSegment opens (or creates) one segment's database.
func openSegment(dir string) (*leveldb.DB, error) {
	db, err := leveldb.OpenFile(dir, &opt.Options{Filter: filter.NewBloomFilter(10)})
	if err != nil {
		return nil, fmt.Errorf("windowstore: open segment %s: %w", dir, err)
	}
	return db, nil
}

// segmentDir returns the directory of segment n.
func (s *Store) segmentDir(n int64) string {
	return filepath.Join(s.opts.Dir, segmentPrefix+strconv.FormatInt(n*s.opts.SegmentInterval, 10))
}

// segmentOf returns the segment number of a window start.
func (s *Store) segmentOf(start int64) int64 { return start / s.opts.SegmentInterval }

// segment returns segment n, opening it when create is set and it does not
// exist; nil when it does not exist (or is expired). The caller holds s.mu
// (exclusively when create is set).
func (s *Store) segment(n int64, create bool) (*leveldb.DB, error) {
	if db := s.segments[n]; db != nil || !create {
		return db, nil
	}
	var db *leveldb.DB
	var err error
	if s.opts.Memory {
		db, err = leveldb.Open(storage.NewMemStorage(), nil)
	} else {
		db, err = openSegment(s.segmentDir(n))
	}
	if err != nil {
		return nil, err
	}
	s.segments[n] = db
	return db, nil
}

// appendKey appends the length-prefixed record key.
func appendKey(b, key []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	return append(b, key...)
}

// windowKey returns the key of window (key, start).
func windowKey(key []byte, start int64) []byte {
	b := appendKey(append(make([]byte, 0, 1+binary.MaxVarintLen64+len(key)+8), 'w'), key)
	return binary.BigEndian.AppendUint64(b, uint64(start))
}

// indexKey returns the end-time index entry of window (key, start).
func indexKey(end int64, key []byte, start int64) []byte {
	b := binary.BigEndian.AppendUint64(append(make([]byte, 0, 1+8+binary.MaxVarintLen64+len(key)+8), 'e'), uint64(end))
	b = appendKey(b, key)
	return binary.BigEndian.AppendUint64(b, uint64(start))
}

// Put sets window (key, start) to end and value, replacing what it held,
// and returns the change to write to the changelog. A window in a segment
// that Expire dropped is refused with ErrExpired.
func (s *Store) Put(key []byte, start, end int64, value []byte) (Change, error) {
	if start < 0 || end < start {
		return Change{}, fmt.Errorf("%w: [%d, %d)", ErrTime, start, end)
	}
	if value == nil {
		value = []byte{}
	}
	c := Change{Key: key, Start: start, End: end, Value: value}
	return c, s.apply(c, nil, false)
}

// PutRecord is Put of the window given by its changelog record value
// (ChangeValue: the end, then the value), which the store keeps: the
// caller must not change it afterwards. A caller that writes the same
// bytes to the changelog saves Put's copies of the value.
func (s *Store) PutRecord(key []byte, start int64, record []byte) (Change, error) {
	if len(record) < 8 {
		return Change{}, fmt.Errorf("windowstore: record value of %d bytes", len(record))
	}
	c := Change{Key: key, Start: start, End: int64(binary.BigEndian.Uint64(record)), Value: record[8:]}
	if start < 0 || c.End < start {
		return Change{}, fmt.Errorf("%w: [%d, %d)", ErrTime, start, c.End)
	}
	return c, s.apply(c, record, false)
}

// Delete removes window (key, start), if there is one, and returns the
// tombstone to write to the changelog.
func (s *Store) Delete(key []byte, start int64) (Change, error) {
	if start < 0 {
		return Change{}, fmt.Errorf("%w: start %d", ErrTime, start)
	}
	c := Change{Key: key, Start: start}
	return c, s.apply(c, nil, false)
}

// Restore applies a change read from the changelog. Applying it again
// changes nothing. A change of an expired segment is skipped.
func (s *Store) Restore(c Change) error {
	if c.Start < 0 || (c.Value != nil && c.End < c.Start) {
		return fmt.Errorf("%w: [%d, %d)", ErrTime, c.Start, c.End)
	}
	return s.apply(c, nil, true)
}

// apply writes c: the window and its index entry in one batch, and the old
// index entry removed when the end moved; with a write buffer, into the
// buffer. stored, when set, is ChangeValue(c), the store's to keep.
func (s *Store) apply(c Change, stored []byte, restoring bool) error {
	n := s.segmentOf(c.Start)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if n < s.expiredBelow {
		if restoring {
			return nil
		}
		return fmt.Errorf("%w: window at %d ms", ErrExpired, c.Start)
	}
	if stored == nil {
		stored = ChangeValue(c)
	}
	if s.pending != nil {
		return s.buffer(c, stored, n)
	}
	db, err := s.segment(n, c.Value != nil)
	if err != nil || db == nil {
		return err
	}
	wk := windowKey(c.Key, c.Start)
	oldEnd, err := dbEnd(db, wk)
	if err != nil {
		return err
	}
	b := new(leveldb.Batch)
	if !batchWindow(b, wk, c.Key, c.Start, oldEnd, c.End, stored) {
		return nil
	}
	if err := db.Write(b, s.wo); err != nil {
		return fmt.Errorf("windowstore: write window: %w", err)
	}
	return nil
}

// dbEnd returns the end of window wk in db, noWindow when db holds none.
func dbEnd(db *leveldb.DB, wk []byte) (int64, error) {
	old, err := db.Get(wk, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		return noWindow, nil
	case err != nil:
		return 0, fmt.Errorf("windowstore: read window: %w", err)
	case len(old) < 8:
		return 0, fmt.Errorf("windowstore: corrupt window %x", wk)
	}
	return int64(binary.BigEndian.Uint64(old)), nil
}

// batchWindow adds to b the writes that take window wk (key, start) from
// oldEnd (noWindow: absent) to end and stored (its end, then its value;
// nil: deleted), and reports whether there are any.
func batchWindow(b *leveldb.Batch, wk, key []byte, start, oldEnd, end int64, stored []byte) bool {
	if oldEnd != noWindow && (stored == nil || oldEnd != end) {
		b.Delete(indexKey(oldEnd, key, start))
	}
	if stored == nil {
		if oldEnd == noWindow {
			return false
		}
		b.Delete(wk)
		return true
	}
	b.Put(wk, stored) // copied into the batch
	if oldEnd != end {
		// A window's index entry exists exactly while the window does,
		// with its end: an update that keeps the end keeps the entry.
		b.Put(indexKey(end, key, start), nil)
	}
	return true
}

// buffer keeps c, of segment n, in the write buffer (stored is
// ChangeValue(c), the buffer's from now on), and writes the buffer once it
// holds WriteBuffer bytes. The caller holds s.mu.
func (s *Store) buffer(c Change, stored []byte, n int64) error {
	wk := windowKey(c.Key, c.Start)
	value := c.Value
	if p := s.pending[string(wk)]; p != nil {
		s.pendingBytes += len(value) - len(p.value())
		p.end, p.stored = c.End, stored
	} else {
		old := int64(noWindow)
		if db := s.segments[n]; db != nil {
			held, err := s.read(db, wk)
			if err != nil {
				return err
			}
			if held != nil {
				old = int64(binary.BigEndian.Uint64(held))
			}
		}
		if old == noWindow && value == nil {
			return nil // nothing to delete
		}
		s.pending[string(wk)] = &pendingWrite{key: slices.Clone(c.Key), start: c.Start, end: c.End, stored: stored, dbEnd: old}
		s.byKey[string(c.Key)] = append(s.byKey[string(c.Key)], c.Start)
		s.pendingBytes += pendingCost(wk, c.Key, value)
	}
	if value != nil {
		s.minEnd.Store(min(s.minEnd.Load(), c.End))
	}
	if s.pendingBytes >= s.opts.WriteBuffer {
		return s.flush()
	}
	return nil
}

// Flush writes the writes the buffer holds to the segments.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.flush()
}

// flush writes the buffer, one batch per segment. A segment's windows
// leave the buffer once its batch is written, so a flush that fails part
// way keeps exactly the windows not written (with the ends their
// segments still hold). The caller holds s.mu.
func (s *Store) flush() error {
	if len(s.pending) == 0 {
		return nil
	}
	type segmentWrite struct {
		b   *leveldb.Batch
		wks []string
	}
	batches := map[int64]*segmentWrite{}
	for wk, p := range s.pending {
		n := s.segmentOf(p.start)
		w := batches[n]
		if w == nil {
			w = &segmentWrite{b: new(leveldb.Batch)}
			batches[n] = w
		}
		batchWindow(w.b, []byte(wk), p.key, p.start, p.dbEnd, p.end, p.stored)
		w.wks = append(w.wks, wk)
	}
	for n, w := range batches {
		if w.b.Len() > 0 {
			db, err := s.segment(n, true)
			if err != nil {
				return err
			}
			if err := db.Write(w.b, s.wo); err != nil {
				return fmt.Errorf("windowstore: write windows: %w", err)
			}
		}
		for _, wk := range w.wks {
			if p := s.pending[wk]; p != nil {
				s.cache.Put(wk, p.stored) // what the segment now holds
			}
			s.unpend(wk)
		}
	}
	s.pendingBytes = 0 // exact already; reset against drift
	s.minEnd.Store(math.MaxInt64)
	return nil
}

// unpend removes window wk's write from the buffer. The caller holds s.mu
// exclusively.
func (s *Store) unpend(wk string) {
	p := s.pending[wk]
	if p == nil {
		return
	}
	delete(s.pending, wk)
	s.pendingBytes -= pendingCost([]byte(wk), p.key, p.value())
	starts := slices.DeleteFunc(s.byKey[string(p.key)], func(st int64) bool { return st == p.start })
	if len(starts) == 0 {
		delete(s.byKey, string(p.key))
	} else {
		s.byKey[string(p.key)] = starts
	}
}

// pendingOf returns the buffered write of window (key, start), if any.
// The caller holds s.mu.
func (s *Store) pendingOf(key []byte, start int64) *pendingWrite {
	if len(s.pending) == 0 {
		return nil
	}
	return s.pending[string(windowKey(key, start))]
}

// isPending reports whether window (key, start) has a buffered write,
// without building its window key. The caller holds s.mu.
func (s *Store) isPending(key []byte, start int64) bool {
	return len(s.pending) > 0 && slices.Contains(s.byKey[string(key)], start)
}

// Fetch returns key's windows that start in [from, to), ordered by start.
func (s *Store) Fetch(key []byte, from, to int64) ([]Window, error) {
	if from < 0 {
		from = 0
	}
	if to <= from {
		return nil, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	prefix := appendKey([]byte{'w'}, key)
	var out []Window
	for _, n := range s.segmentsBetween(s.segmentOf(from), s.segmentOf(to-1)) {
		r := &util.Range{
			Start: binary.BigEndian.AppendUint64(slices.Clone(prefix), uint64(from)),
			Limit: binary.BigEndian.AppendUint64(slices.Clone(prefix), uint64(to)),
		}
		it := s.segments[n].NewIterator(r, nil)
		for it.Next() {
			k, v := it.Key(), it.Value()
			if len(v) < 8 || len(k) != len(prefix)+8 {
				it.Release()
				return nil, fmt.Errorf("windowstore: corrupt window %x", k)
			}
			start := int64(binary.BigEndian.Uint64(k[len(prefix):]))
			if s.isPending(key, start) {
				continue // the buffer has it newer
			}
			out = append(out, Window{Key: slices.Clone(key), Start: start,
				End: int64(binary.BigEndian.Uint64(v)), Value: slices.Clone(v[8:])})
		}
		it.Release()
		if err := it.Error(); err != nil {
			return nil, fmt.Errorf("windowstore: fetch: %w", err)
		}
	}
	buffered := false
	for _, start := range s.byKey[string(key)] {
		if p := s.pendingOf(key, start); start >= from && start < to && p.stored != nil {
			out = append(out, Window{Key: slices.Clone(key), Start: start, End: p.end, Value: slices.Clone(p.value())})
			buffered = true
		}
	}
	if buffered {
		slices.SortFunc(out, func(a, b Window) int { return cmp.Compare(a.Start, b.Start) })
	}
	return out, nil
}

// Get returns window (key, start), if the store holds it.
func (s *Store) Get(key []byte, start int64) (Window, bool, error) {
	if start < 0 {
		return Window{}, false, nil
	}
	if s.pending != nil {
		// A read fills the cache: exclusively. (A store has a cache only
		// with a write buffer; without one, read's cache is the zero
		// value, which neither holds nor keeps anything.)
		s.mu.Lock()
		defer s.mu.Unlock()
	} else {
		s.mu.RLock()
		defer s.mu.RUnlock()
	}
	if s.closed {
		return Window{}, false, ErrClosed
	}
	wk := windowKey(key, start)
	if p := s.pending[string(wk)]; p != nil {
		if p.stored == nil {
			return Window{}, false, nil
		}
		return Window{Key: slices.Clone(key), Start: start, End: p.end, Value: slices.Clone(p.value())}, true, nil
	}
	db := s.segments[s.segmentOf(start)]
	if db == nil {
		return Window{}, false, nil
	}
	v, err := s.read(db, wk)
	if err != nil || v == nil {
		return Window{}, false, err
	}
	return Window{Key: slices.Clone(key), Start: start, End: int64(binary.BigEndian.Uint64(v)), Value: slices.Clone(v[8:])}, true, nil
}

// read returns what segment db holds of window wk, its end first (nil:
// no window), from the cache or read into it. The value may be the
// cache's: the caller copies what it hands on. The caller holds s.mu,
// exclusively when the store has a write buffer.
func (s *Store) read(db *leveldb.DB, wk []byte) ([]byte, error) {
	if v, ok := s.cache.GetBytes(wk); ok {
		return v, nil
	}
	s.reads.Add(1)
	v, err := db.Get(wk, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		v = nil
	case err != nil:
		return nil, fmt.Errorf("windowstore: read window: %w", err)
	case len(v) < 8:
		return nil, fmt.Errorf("windowstore: corrupt window %x", wk)
	}
	s.cache.Put(string(wk), v) // leveldb's copy
	return v, nil
}

// segmentsBetween returns the numbers of the open segments in [lo, hi],
// ascending. The caller holds s.mu.
func (s *Store) segmentsBetween(lo, hi int64) []int64 {
	var ns []int64
	for n := range s.segments {
		if n >= lo && n <= hi {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

// Ending calls fn with each window that ends in [from, to), ordered by end
// (then key and start), until fn returns false. It reads the index entries
// of those windows only, one seek per segment that may hold them (those
// starting before to), so a caller closing windows by stream time pays
// for the due ones, not for all. fn must not call the store's methods
// (the store is locked).
func (s *Store) Ending(from, to int64, fn func(Window) bool) error {
	if from < 0 {
		from = 0
	}
	if to <= from {
		return nil
	}
	s.mu.RLock()
	buf, many := s.pendingEnding(from, to)
	if many {
		// Too many to merge: write them (to be written soon anyway).
		s.mu.RUnlock()
		if err := s.Flush(); err != nil {
			return err
		}
		s.mu.RLock()
		buf, _ = s.pendingEnding(from, to) // written meanwhile, if any
	}
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	// A window ending before to starts before it; later segments hold none.
	var its []*segmentCursor
	defer func() {
		for _, c := range its {
			c.it.Release()
		}
	}()
	for _, n := range s.segmentsBetween(math.MinInt64, s.segmentOf(to-1)) {
		r := &util.Range{
			Start: binary.BigEndian.AppendUint64([]byte{'e'}, uint64(from)),
			Limit: binary.BigEndian.AppendUint64([]byte{'e'}, uint64(to)),
		}
		c := &segmentCursor{s: s, db: s.segments[n], it: s.segments[n].NewIterator(r, nil)}
		its = append(its, c)
		if err := c.next(); err != nil {
			return err
		}
	}
	// Merge the segments' index ranges and the buffer's in end order.
	for {
		var best *segmentCursor
		for _, c := range its {
			if c.ok && (best == nil || bytes.Compare(c.it.Key(), best.it.Key()) < 0) {
				best = c
			}
		}
		if len(buf) > 0 && (best == nil || bytes.Compare(buf[0].index, best.it.Key()) < 0) {
			p := buf[0].p
			buf = buf[1:]
			if !fn(Window{Key: slices.Clone(p.key), Start: p.start, End: p.end, Value: slices.Clone(p.value())}) {
				return nil
			}
			continue
		}
		if best == nil {
			return nil
		}
		s.scanned.Add(1)
		w, err := best.window()
		if err != nil {
			return err
		}
		if !fn(w) {
			return nil
		}
		if err := best.next(); err != nil {
			return err
		}
	}
}

// indexedWrite is a buffered window with its index key.
type indexedWrite struct {
	index []byte
	p     *pendingWrite
}

// pendingEnding returns the buffered windows ending in [from, to), in
// index order, or many when there are more than mergeLimit. A full scan
// sets minEnd to the buffer's true least end (the bound only falls as
// windows are written: a timer fired, moved past every time, would
// otherwise make every later call scan). The caller holds s.mu.
func (s *Store) pendingEnding(from, to int64) (_ []indexedWrite, many bool) {
	if len(s.pending) == 0 || s.minEnd.Load() >= to {
		return nil, false
	}
	var out []indexedWrite
	least := int64(math.MaxInt64)
	for _, p := range s.pending {
		if p.stored == nil {
			continue
		}
		least = min(least, p.end)
		if p.end >= from && p.end < to {
			if len(out) == mergeLimit {
				return nil, true
			}
			out = append(out, indexedWrite{index: indexKey(p.end, p.key, p.start), p: p})
		}
	}
	s.minEnd.Store(least) // writers are excluded: it is the buffer's
	slices.SortFunc(out, func(a, b indexedWrite) int { return bytes.Compare(a.index, b.index) })
	return out, false
}

// segmentCursor walks one segment's end-time index, past the windows the
// write buffer holds newer.
type segmentCursor struct {
	s  *Store
	db *leveldb.DB
	it iterator.Iterator
	ok bool // it is at an entry
}

func (c *segmentCursor) next() error {
	for {
		c.ok = c.it.Next()
		if !c.ok {
			if err := c.it.Error(); err != nil {
				return fmt.Errorf("windowstore: ending: %w", err)
			}
			return nil
		}
		if len(c.s.pending) == 0 {
			return nil
		}
		key, start, _, ok := parseIndexKey(c.it.Key())
		if !ok || !c.s.isPending(key, start) {
			return nil // a corrupt entry is told by window
		}
	}
}

// parseIndexKey returns the record key, start and end of an index entry.
func parseIndexKey(k []byte) (key []byte, start, end int64, ok bool) {
	if len(k) < 1+8+1+8 {
		return nil, 0, 0, false
	}
	end = int64(binary.BigEndian.Uint64(k[1:]))
	n, w := binary.Uvarint(k[9:])
	if w <= 0 || uint64(len(k)) != 9+uint64(w)+n+8 {
		return nil, 0, 0, false
	}
	return k[9+w : len(k)-8], int64(binary.BigEndian.Uint64(k[len(k)-8:])), end, true
}

// window reads the window of the current index entry.
func (c *segmentCursor) window() (Window, error) {
	k := c.it.Key()
	key, start, end, ok := parseIndexKey(k)
	if !ok {
		return Window{}, fmt.Errorf("windowstore: corrupt index entry %x", k)
	}
	key = slices.Clone(key)
	v, err := c.db.Get(windowKey(key, start), nil)
	if err != nil || len(v) < 8 || int64(binary.BigEndian.Uint64(v)) != end {
		return Window{}, fmt.Errorf("windowstore: index entry %x without its window: %v", k, err)
	}
	return Window{Key: key, Start: start, End: end, Value: v[8:]}, nil
}

// Expire drops, whole, every segment whose windows all start before
// streamTime - Retention, and refuses windows there from now on. It
// returns how many segments it dropped.
func (s *Store) Expire(streamTime int64) (int, error) {
	limit := streamTime - s.opts.Retention
	// Segment n's starts are below (n+1)*interval: it goes when that is at
	// or before limit.
	below := floorDiv(limit, s.opts.SegmentInterval)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	if below > s.expiredBelow {
		for wk, p := range s.pending {
			if s.segmentOf(p.start) < below {
				s.unpend(wk) // as if written, then dropped with its segment
			}
		}
		s.expiredBelow = below
	}
	dropped := 0
	for n, db := range s.segments {
		if n >= below {
			continue
		}
		if err := db.Close(); err != nil {
			return dropped, fmt.Errorf("windowstore: close segment %d: %w", n, err)
		}
		delete(s.segments, n)
		if s.opts.Memory {
			dropped++
			continue
		}
		if err := os.RemoveAll(s.segmentDir(n)); err != nil {
			return dropped, fmt.Errorf("windowstore: remove segment %d: %w", n, err)
		}
		dropped++
	}
	return dropped, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// CacheHeld returns the bytes of keys and values the read cache holds.
func (s *Store) CacheHeld() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cache.Held()
}

// Segments returns the start times of the segments the store holds,
// ascending: those on disk, and those its buffered writes open (a window
// put and deleted again while buffered opens none, where a store without
// a buffer has opened its segment).
func (s *Store) Segments() []int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ns := s.segmentsBetween(math.MinInt64, math.MaxInt64)
	for _, p := range s.pending {
		if n := s.segmentOf(p.start); p.stored != nil && s.segments[n] == nil && !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	for i := range ns {
		ns[i] *= s.opts.SegmentInterval
	}
	return ns
}

// Close writes the write buffer and closes every segment. Calls after
// Close fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.pending != nil {
		err = s.flush()
	}
	s.cache = gencache.Cache{}
	return errors.Join(err, s.closeAll())
}

// closeAll closes the open segments.
func (s *Store) closeAll() error {
	var errs []error
	for n, db := range s.segments {
		if err := db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("windowstore: close segment %d: %w", n, err))
		}
		delete(s.segments, n)
	}
	return errors.Join(errs...)
}

// ChangeKey returns the changelog record key of c: the length-prefixed
// record key and the window start, so that a compacted changelog keeps the
// newest change of each window.
func ChangeKey(c Change) []byte {
	return binary.BigEndian.AppendUint64(appendKey(nil, c.Key), uint64(c.Start))
}

// ChangeValue returns the changelog record value of c: nil (a tombstone)
// for a deletion, else the end (8 bytes big-endian) and the value.
func ChangeValue(c Change) []byte {
	if c.Value == nil {
		return nil
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(c.Value)), uint64(c.End)), c.Value...)
}

// ParseChange returns the change of a changelog record written with
// ChangeKey and ChangeValue.
func ParseChange(key, value []byte) (Change, error) {
	n, w := binary.Uvarint(key)
	if w <= 0 || uint64(len(key)) != uint64(w)+n+8 {
		return Change{}, fmt.Errorf("windowstore: malformed changelog key %x", key)
	}
	c := Change{Key: slices.Clone(key[w : len(key)-8]), Start: int64(binary.BigEndian.Uint64(key[len(key)-8:]))}
	if value == nil {
		return c, nil
	}
	if len(value) < 8 {
		return Change{}, fmt.Errorf("windowstore: malformed changelog value of %d bytes", len(value))
	}
	c.End = int64(binary.BigEndian.Uint64(value))
	c.Value = slices.Clone(value[8:])
	return c, nil
}
