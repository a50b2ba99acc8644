package cassandra

import (
	"context"
	"errors"
	"fmt"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

// summaryColumns are the columns of the summaries table after the key, in
// the order of summaryArgs and of the select.
const summaryColumns = "window_end, messages, gps_fixes, distance_m, max_speed_kmh, avg_speed_kmh, harsh, first_ms, last_ms"

// summaryStatements returns the CQL of the summaries' insert and select.
func (s *Store) summaryStatements() (insert, sel string) {
	insert = fmt.Sprintf("INSERT INTO %s.summaries (device_id, window_start, %s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", s.keyspace, summaryColumns)
	sel = fmt.Sprintf("SELECT window_start, %s FROM %s.summaries WHERE device_id = ? AND window_start >= ? AND window_start < ?", summaryColumns, s.keyspace)
	return insert, sel
}

// summaryArgs returns the bound values of sm's INSERT. Counts and times
// are bigints in two's complement, as device ids are; harsh is a frozen
// map, one cell, so that an INSERT replaces it without a tombstone.
func summaryArgs(sm *records.Summary) []any {
	harsh := make(map[int32]int64, len(sm.Harsh))
	for c, n := range sm.Harsh {
		harsh[int32(c)] = int64(n)
	}
	return []any{DeviceKey(sm.DeviceID), int64(sm.WindowStartMs), int64(sm.WindowEndMs), int64(sm.Messages), int64(sm.GPSFixes),
		sm.DistanceM, sm.MaxSpeedKmh, sm.AvgSpeedKmh, harsh, int64(sm.FirstMs), int64(sm.LastMs)}
}

// WriteSummaries stores summaries, one idempotent INSERT each: a window
// written again replaces its row, every column included. It returns nil
// once every row is written at the store's consistency; after an error
// some may be written, and writing them again is safe. Errors are
// classified as Write's.
func (s *Store) WriteSummaries(ctx context.Context, summaries []records.Summary) error {
	if err := ctxErr(ctx, "write summaries"); err != nil {
		return err
	}
	for i := range summaries {
		if sm := &summaries[i]; sm.WindowStartMs > MaxTimeMs {
			return fmt.Errorf("cassandra: write summaries: window of device %d at %d ms: %w", sm.DeviceID, sm.WindowStartMs, ErrTimeRange)
		}
	}
	if len(summaries) == 0 {
		return nil
	}
	if err := s.acquire("write summaries"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	insert, _ := s.summaryStatements()
	err := s.fanOut(ctx, func(gctx context.Context, send func(func() error)) {
		for i := range summaries {
			if gctx.Err() != nil {
				return
			}
			send(func() error {
				return s.session.Query(insert, summaryArgs(&summaries[i])...).Idempotent(true).ExecContext(gctx)
			})
		}
	})
	if err != nil {
		return fmt.Errorf("cassandra: write %d summaries: %w", len(summaries), Classify(err))
	}
	return nil
}

// Summaries returns the device's summaries whose window starts in
// [q.From, q.To), ordered by window start: one partition per device.
func (s *Store) Summaries(ctx context.Context, q sinks.SummaryQuery) ([]records.Summary, error) {
	if err := ctxErr(ctx, "summaries"); err != nil {
		return nil, err
	}
	lo, hi, ok := q.Span()
	if !ok || lo > MaxTimeMs {
		return nil, nil
	}
	if hi == 0 || hi > MaxTimeMs {
		hi = MaxTimeMs // window starts are at most MaxTimeMs - SummaryWindowMs
	}
	if err := s.acquire("summaries"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	_, sel := s.summaryStatements()
	iter := s.session.Query(sel, DeviceKey(q.DeviceID), int64(lo), int64(hi)).Idempotent(true).PageSize(5000).IterContext(ctx)
	var (
		out                                  []records.Summary
		start, end, msgs, fixes, first, last int64
		dist, maxSpeed, avgSpeed             float64
		harsh                                map[int32]int64
	)
	for iter.Scan(&start, &end, &msgs, &fixes, &dist, &maxSpeed, &avgSpeed, &harsh, &first, &last) {
		sm := records.Summary{DeviceID: q.DeviceID, WindowStartMs: uint64(start), WindowEndMs: uint64(end),
			Messages: uint64(msgs), GPSFixes: uint64(fixes), DistanceM: dist, MaxSpeedKmh: maxSpeed, AvgSpeedKmh: avgSpeed,
			FirstMs: uint64(first), LastMs: uint64(last)}
		for c, n := range harsh {
			if sm.Harsh == nil {
				sm.Harsh = make(map[protocol.EventCode]uint64, len(harsh))
			}
			sm.Harsh[protocol.EventCode(c)] = uint64(n)
		}
		harsh = nil
		out = append(out, sm)
	}
	if err := iter.Close(); err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", err, cerr)
		}
		return nil, fmt.Errorf("cassandra: summaries of device %d: %w", q.DeviceID, Classify(err))
	}
	return out, nil
}
