package bench

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

// The trackers measure each package's latency exactly without polling:
// every device's packages are sent in order by one worker, and each
// package carries the device's cumulative progress once it is in (its
// threshold). The device-state table's record for a device carries its
// progress (Messages+Duplicates+Invalid); the first table record at or
// over a package's threshold is the moment the view can answer with it.
// The same holds for the store with the device's stored row count.

// pending is a sent package waiting to be seen.
type pending struct {
	threshold uint64
	sent      time.Duration // since the run's start
	messages  uint32
}

type queue struct {
	seen  uint64
	items []pending
}

// devTrack is one device's queues.
type devTrack struct {
	mu          sync.Mutex
	view, store queue
}

// window is the measured span of the run, relative to its start.
type window struct {
	from, to atomic.Int64 // nanoseconds; to == 0 while open
}

func (w *window) contains(d time.Duration) bool {
	from, to := w.from.Load(), w.to.Load()
	return int64(d) >= from && from > 0 && (to == 0 || int64(d) < to)
}

// recorder collects latencies of packages sent within the window and the
// messages seen within it.
type recorder struct {
	mu   sync.Mutex
	lat  []float32 // milliseconds
	seen atomic.Uint64
	// inWindow counts messages and packages seen during the window.
	msgs, pkgs atomic.Uint64
	// observed counts every package and message seen.
	allPkgs, allMsgs atomic.Uint64
}

func (r *recorder) add(w *window, p pending, now time.Duration) {
	r.allPkgs.Add(1)
	r.allMsgs.Add(uint64(p.messages))
	if w.contains(now) {
		r.msgs.Add(uint64(p.messages))
		r.pkgs.Add(1)
	}
	if w.contains(p.sent) {
		r.mu.Lock()
		r.lat = append(r.lat, float32((now-p.sent).Seconds()*1000))
		r.mu.Unlock()
	}
}

// tracker follows every device's packages to the view and to the store.
type tracker struct {
	start       time.Time
	devices     map[uint64]*devTrack // read-only after newTracker
	win         window
	view, store recorder
	// edge holds the edge's answer times (request to response).
	edge recorder
	// outstanding counts packages sent but not yet seen, per side.
	viewOut, storeOut atomic.Int64
	// base holds the states a prefill wrote (read-only after prefilled):
	// their counts are not the run's.
	base map[uint64]records.DeviceState
}

// prefilled makes the tracker count each device's progress from its
// prefilled state on.
func (t *tracker) prefilled(states map[uint64]records.DeviceState) { t.base = states }

func newTracker(start time.Time, devices []uint64) *tracker {
	t := &tracker{start: start, devices: make(map[uint64]*devTrack, len(devices))}
	for _, d := range devices {
		t.devices[d] = &devTrack{}
	}
	return t
}

func (t *tracker) since() time.Duration { return time.Since(t.start) }

// sending registers a package about to be sent at sent.
func (t *tracker) sending(it *item, sent time.Duration) {
	if it.viewAdds == 0 {
		return
	}
	d := t.devices[it.device]
	d.mu.Lock()
	d.view.items = append(d.view.items, pending{threshold: it.viewAt, sent: sent, messages: uint32(it.messages)})
	t.viewOut.Add(1)
	if it.storeAdds > 0 {
		d.store.items = append(d.store.items, pending{threshold: it.storeAt, sent: sent, messages: uint32(it.messages)})
		t.storeOut.Add(1)
	}
	d.mu.Unlock()
}

// observe moves q's seen mark to at least progress and records every
// package it completes.
func (t *tracker) observe(q *queue, r *recorder, out *atomic.Int64, progress uint64, now time.Duration) {
	q.seen = max(q.seen, progress)
	n := 0
	for n < len(q.items) && q.items[n].threshold <= q.seen {
		r.add(&t.win, q.items[n], now)
		n++
	}
	if n > 0 {
		q.items = append(q.items[:0], q.items[n:]...)
		out.Add(-int64(n))
	}
}

// viewUpdate takes a device-state table record.
func (t *tracker) viewUpdate(device, progress uint64) {
	d := t.devices[device]
	if d == nil {
		return
	}
	if b, ok := t.base[device]; ok {
		from := b.Messages + b.Duplicates + b.Invalid
		if progress < from {
			return
		}
		progress -= from
	}
	now := t.since()
	d.mu.Lock()
	t.observe(&d.view, &t.view, &t.viewOut, progress, now)
	d.mu.Unlock()
}

// stored takes n rows of device acknowledged by the store.
func (t *tracker) stored(device uint64, n int) {
	d := t.devices[device]
	if d == nil {
		return
	}
	now := t.since()
	d.mu.Lock()
	t.observe(&d.store, &t.store, &t.storeOut, d.store.seen+uint64(n), now)
	d.mu.Unlock()
}

// stateProgress reads DeviceID and Messages+Duplicates+Invalid from a
// device-state table value without decoding its latest readings (the
// DeviceState format's leading uvarints); ok is false for another format.
func stateProgress(b []byte) (device, progress uint64, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0] != 1 {
		st, err := records.DeviceStateCodec{}.Decode(b)
		if err != nil {
			return 0, 0, false
		}
		return st.DeviceID, st.Messages + st.Duplicates + st.Invalid, true
	}
	b = b[1:]
	var v [4]uint64
	for i := range v {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, 0, false
		}
		v[i], b = x, b[n:]
	}
	return v[0], v[1] + v[2] + v[3], true
}

// measuringStore reports every acknowledged write to the tracker.
type measuringStore struct {
	sinks.Store
	t *tracker
}

// Write stores readings and, once the store acknowledged them, reports
// them per device.
func (m measuringStore) Write(ctx context.Context, rs []records.Reading) error {
	if err := m.Store.Write(ctx, rs); err != nil {
		return err
	}
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].DeviceID == rs[i].DeviceID {
			j++
		}
		m.t.stored(rs[i].DeviceID, j-i)
		i = j
	}
	return nil
}
