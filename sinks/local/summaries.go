package local

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

// SummaryKeyLen is the length of a summary's key in the summaries'
// database: the device id and the window start in Unix milliseconds, 8
// bytes big-endian each, so a device's windows are contiguous and ordered
// by start, and writing a window again replaces it.
const SummaryKeyLen = 8 + 8

// WriteSummaries stores summaries in one leveldb batch, each replacing the
// stored summary of its device and window start; readers see all of them
// or none. Durability and errors are those of Write.
func (s *Store) WriteSummaries(ctx context.Context, summaries []records.Summary) error {
	if err := ctxErr(ctx, "write summaries"); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return fmt.Errorf("local: write summaries: %w", ErrReadOnly)
	}
	var codec records.SummaryCodec
	batch := new(leveldb.Batch)
	for i := range summaries {
		sm := &summaries[i]
		v, err := codec.Encode(*sm)
		if err != nil {
			return fmt.Errorf("local: write summaries: encode summary %d: %w", i, err)
		}
		batch.Put(summaryKey(sm.DeviceID, sm.WindowStartMs), v)
	}
	db, err := s.sums.acquire()
	if err != nil {
		return fmt.Errorf("local: write summaries: %w", err)
	}
	err = db.Write(batch, s.wo)
	s.sums.mu.RUnlock()
	if err != nil {
		return s.sums.fail(db, "write summaries", err)
	}
	return nil
}

// summaryKey returns the key of a device's window.
func summaryKey(deviceID, startMs uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, SummaryKeyLen), deviceID), startMs)
}

// Summaries returns the device's summaries whose window starts in
// [q.From, q.To), ordered by window start. A read-only store without
// summaries has none.
func (s *Store) Summaries(ctx context.Context, q sinks.SummaryQuery) ([]records.Summary, error) {
	const op = "summaries"
	if err := ctxErr(ctx, op); err != nil {
		return nil, err
	}
	lo, hi, ok := q.Span()
	if !ok {
		return nil, nil
	}
	r := util.BytesPrefix(binary.BigEndian.AppendUint64(nil, q.DeviceID))
	r.Start = summaryKey(q.DeviceID, lo)
	if hi != 0 {
		r.Limit = summaryKey(q.DeviceID, hi)
	}
	db, err := s.sums.acquire()
	if err != nil {
		if s.opts.ReadOnly && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("local: %s: %w", op, err)
	}
	out, iterErr, err := readSummaries(ctx, db, r)
	s.sums.mu.RUnlock()
	if iterErr != nil {
		return nil, s.sums.fail(db, op, iterErr)
	}
	if err != nil {
		return nil, fmt.Errorf("local: %s: %w", op, err)
	}
	return out, nil
}

// readSummaries reads the summaries of r from db. iterErr is leveldb's
// error, err a corrupt summary or a done context.
func readSummaries(ctx context.Context, db *leveldb.DB, r *util.Range) (out []records.Summary, iterErr, err error) {
	var codec records.SummaryCodec
	it := db.NewIterator(r, nil)
	defer it.Release()
	for n := 0; it.Next(); n++ {
		if n%ctxCheckEvery == ctxCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return nil, nil, fmt.Errorf("%w: %w", sinks.ErrUnavailable, err)
			}
		}
		k := it.Key()
		if len(k) != SummaryKeyLen {
			return nil, nil, fmt.Errorf("corrupted store: key %x is not %d bytes", k, SummaryKeyLen)
		}
		sm, err := codec.Decode(it.Value())
		if err != nil {
			return nil, nil, fmt.Errorf("corrupted summary %x: %w", k, err)
		}
		if sm.DeviceID != binary.BigEndian.Uint64(k) || sm.WindowStartMs != binary.BigEndian.Uint64(k[8:]) {
			return nil, nil, fmt.Errorf("corrupted summary %x: value is window (%d, %d)", k, sm.DeviceID, sm.WindowStartMs)
		}
		out = append(out, sm)
	}
	return out, it.Error(), nil
}
