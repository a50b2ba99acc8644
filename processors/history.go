package processors

import (
	"strconv"

	"github.com/watershed-io/watershed/codecs/records"
)

// History builds, for one device, the table values the dedupe and
// device-state stages hold after handling the device's packages once
// each, in order, from empty state, with the same code the stages run. It
// lets a bench start from a full dedupe window without pushing a day of
// traffic through the pipeline (`watershed bench --prefill`): its values
// are written straight into the tables' topics and local stores.
//
// Readings reach device state in the order the unfused pipeline emits
// them for one package: the part older than the window (from the device
// key) first, then the bucket parts in order of first appearance (through
// the loop).
type History struct {
	p      *Pipeline
	device uint64
	key    string

	index      records.DedupeEntry
	indexSet   bool
	buckets    map[int64]records.DedupeEntry
	state      records.DeviceState
	stateSet   bool
	bucketMs   int64
	windowBkts int64
}

// NewHistory returns the empty history of device.
func (p *Pipeline) NewHistory(device uint64) *History {
	bucketMs := p.cfg.DedupeBucket.Milliseconds()
	return &History{p: p, device: device, key: strconv.FormatUint(device, 10),
		buckets: map[int64]records.DedupeEntry{}, bucketMs: bucketMs,
		windowBkts: p.cfg.DedupeWindow.Milliseconds() / bucketMs}
}

// Add handles the device's next decoded package, as the decode stage
// hands it on (RawOffset is the package's identity).
func (h *History) Add(b records.Batch) {
	plan := planBuckets(&h.index, &b, h.bucketMs, h.windowBkts)
	for _, bk := range plan.expired {
		delete(h.buckets, bk)
	}
	if plan.changed {
		h.index.UpdatedMs = h.p.cfg.Now().UnixMilli()
		h.indexSet = true
	}
	var out []records.Readings
	dups := b.IntraPackageDuplicates
	for _, bk := range plan.buckets {
		part := partOf(&b, plan.parts[bk], dups)
		dups = 0
		entry := h.buckets[bk]
		rs, changed, emit := h.p.dedupePart(&entry, &part, bk)
		if changed {
			h.buckets[bk] = entry
		}
		if emit {
			out = append(out, rs)
		}
	}
	if rs, ok := h.p.uncheckedReadings(&b, &plan, dups); ok {
		out = append([]records.Readings{rs}, out...)
	}
	for i := range out {
		if applyOnce(&h.state, &out[i], h.p.cfg.ReplayHorizon) {
			h.stateSet = true
		}
	}
}

// Dedupe calls fn with each dedupe table key the history wrote and its
// value: the device's index, then its live buckets.
func (h *History) Dedupe(fn func(key string, e records.DedupeEntry)) {
	if !h.indexSet {
		return
	}
	fn(h.key, h.index)
	for _, bk := range h.index.Buckets {
		if e, ok := h.buckets[bk]; ok {
			fn(bucketKey(h.key, bk), e)
		}
	}
}

// DeviceState returns the device's state, and false when no package
// changed it.
func (h *History) DeviceState() (records.DeviceState, bool) { return h.state, h.stateSet }
