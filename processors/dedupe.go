package processors

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// The dedupe group remembers message identities (device, message time,
// content CRC) in its table, one entry per device and bucket of message
// time (10 minutes by default), so that a table value stays small and one
// record per package reaches the table.
//
// A package arrives keyed by its device. The device's entry under the plain
// device key is its index of live buckets. The package's messages are
// split by bucket and sent through the group's loop topic to the keys
// "DEVICE/BUCKET", whose entries hold the identities seen; there the new
// messages are kept, normalized and emitted, and repeats are counted. When
// the device's newest bucket moves on, buckets older than the window are
// dropped from the index and an expiry record deletes their entries, so the
// table holds at most window/bucket+1 entries per device. Messages older
// than the window (relative to the device's newest bucket) are stored
// without a check: their rows are idempotent, only view counts could
// double-count them.
//
// Replays: the stages are at least once, so after a crash a package can be
// handled again although its identities were already stored. Each stored
// identity remembers the raw offset of the package that stored it; a
// package that finds an identity stored under its own raw offset is a
// replay of that package and treats the message as new again, so that it
// emits exactly the Readings of its first pass (same items, same
// duplicates), with its identity (raw offset and part) for device-state to
// apply once (within its replay horizon: Config.ReplayHorizon). A package that finds it under an earlier offset is a resend:
// the message is a duplicate. Packages without an identity (raw offset 0:
// records from before format version 2, or the raw topic's first record)
// count every stored identity as a duplicate, as before.

// dedupeLoop is the value of the dedupe group's loop topic.
type dedupeLoop struct {
	expire bool
	// route is set on a package sent on to its device key: with decode
	// fused in, a raw record keyed otherwise than by its header's device.
	route bool
	batch records.Batch
}

// Kinds of dedupe loop records.
const (
	loopBatch  = 1
	loopExpire = 2
	loopRoute  = 3
)

// dedupeLoopCodec encodes dedupeLoop as a kind byte (1 batch, 2 expire,
// 3 route) followed, for a batch or a route, by the Batch record.
type dedupeLoopCodec struct{}

func (dedupeLoopCodec) Encode(v dedupeLoop) ([]byte, error) {
	if v.expire {
		return []byte{loopExpire}, nil
	}
	kind := byte(loopBatch)
	if v.route {
		kind = loopRoute
	}
	b, err := records.AppendBatch([]byte{kind}, &v.batch)
	if err != nil {
		return nil, fmt.Errorf("processors: encode dedupe loop record: %w", err)
	}
	return b, nil
}

func (dedupeLoopCodec) Decode(b []byte) (dedupeLoop, error) {
	if len(b) == 0 {
		return dedupeLoop{}, errors.New("processors: empty dedupe loop record")
	}
	switch b[0] {
	case loopExpire:
		if len(b) != 1 {
			return dedupeLoop{}, errors.New("processors: malformed expiry record")
		}
		return dedupeLoop{expire: true}, nil
	case loopBatch, loopRoute:
		batch, err := records.BatchCodec{}.Decode(b[1:])
		if err != nil {
			return dedupeLoop{}, fmt.Errorf("processors: dedupe loop record: %w", err)
		}
		return dedupeLoop{route: b[0] == loopRoute, batch: batch}, nil
	}
	return dedupeLoop{}, fmt.Errorf("processors: dedupe loop record kind %d", b[0])
}

// descDedupe describes the dedupe stage, on its own group or fused.
const descDedupe = "drop messages already seen across packages (table keyed by device and time bucket, entries expire); normalize the rest"

func (p *Pipeline) declareDedupe(parts, byDevice topology.TopicOption) {
	fused := p.cfg.Fuse.Has(FuseDecode)
	g := p.stageGroup(GroupDedupe, descDedupe, fused, GroupDecode, descDecode)
	p.Dedupe = topology.Persist(g, records.DedupeEntryCodec{}, parts, byDevice)
	out := topology.Produce(g, p.Normalized)
	bucketMs := p.cfg.DedupeBucket.Milliseconds()
	window := p.cfg.DedupeWindow.Milliseconds() / bucketMs
	var loop topology.Loopback[dedupeLoop]
	loop = topology.Loop(g, dedupeLoopCodec{}, func(c *topology.Context, key string, v dedupeLoop) error {
		if v.route {
			return p.routeByBucket(c, out, loop, key, v.batch, bucketMs, window)
		}
		return p.dedupeBucket(c, out, key, v)
	})
	if !fused {
		topology.Consume(g, p.Decoded, func(c *topology.Context, key string, b records.Batch) error {
			return p.routeByBucket(c, out, loop, key, b, bucketMs, window)
		})
		return
	}
	topology.Consume(g, p.Raw, p.decodeThen(func(c *topology.Context, key string, b records.Batch) error {
		// The decode group keys its batch by the header's device; the
		// edge keys raw records the same way, so the loop hop is only
		// for records written otherwise.
		if device := strconv.FormatUint(b.DeviceID, 10); device != key {
			return loop.Send(c, device, dedupeLoop{route: true, batch: b})
		}
		return p.routeByBucket(c, out, loop, key, b, bucketMs, window)
	}))
}

// routeByBucket handles a package under its device key: it updates the
// device's bucket index and sends each bucket's messages through the loop.
func (p *Pipeline) routeByBucket(c *topology.Context, out topology.Output[records.Readings], loop topology.Loopback[dedupeLoop], key string, b records.Batch, bucketMs, window int64) error {
	idx, _, err := p.Dedupe.Get(c)
	if err != nil {
		return err
	}
	plan := planBuckets(&idx, &b, bucketMs, window)
	for _, bk := range plan.expired {
		if err := loop.Send(c, bucketKey(key, bk), dedupeLoop{expire: true}); err != nil {
			return err
		}
	}
	if plan.changed {
		idx.UpdatedMs = p.cfg.Now().UnixMilli()
		if err := p.Dedupe.Set(c, idx); err != nil {
			return err
		}
	}
	// The package's intra-package duplicates ride with its first part.
	dups := b.IntraPackageDuplicates
	for _, bk := range plan.buckets {
		if err := loop.Send(c, bucketKey(key, bk), dedupeLoop{batch: partOf(&b, plan.parts[bk], dups)}); err != nil {
			return err
		}
		dups = 0
	}
	if unchecked, ok := p.uncheckedReadings(&b, &plan, dups); ok {
		return out.Emit(c, key, unchecked)
	}
	return nil
}

// bucketPlan is what a package does under its device key.
type bucketPlan struct {
	// buckets are the checked buckets of its messages, in order of first
	// appearance, and parts their messages' indexes.
	buckets []int64
	parts   map[int64][]int
	// unchecked are the indexes of messages older than the window.
	unchecked []int
	// expired are the buckets that left the window, oldest first.
	expired []int64
	// changed is set when the index changed.
	changed bool
}

// planBuckets splits b's messages by bucket and updates the device's
// index idx: new buckets added, buckets older than the window removed.
func planBuckets(idx *records.DedupeEntry, b *records.Batch, bucketMs, window int64) bucketPlan {
	newest := int64(-1 << 62)
	if n := len(idx.Buckets); n > 0 {
		newest = idx.Buckets[n-1]
	}
	for i := range b.Messages {
		newest = max(newest, bucketOf(b.Messages[i].TimeMs, bucketMs))
	}
	oldest := newest - window

	plan := bucketPlan{parts: map[int64][]int{}}
	for i := range b.Messages {
		bk := bucketOf(b.Messages[i].TimeMs, bucketMs)
		if bk < oldest {
			plan.unchecked = append(plan.unchecked, i)
			continue
		}
		if _, ok := plan.parts[bk]; !ok {
			plan.buckets = append(plan.buckets, bk)
		}
		plan.parts[bk] = append(plan.parts[bk], i)
	}
	for _, bk := range plan.buckets {
		if i, ok := slices.BinarySearch(idx.Buckets, bk); !ok {
			idx.Buckets = slices.Insert(idx.Buckets, i, bk)
			plan.changed = true
		}
	}
	for len(idx.Buckets) > 0 && idx.Buckets[0] < oldest {
		plan.expired = append(plan.expired, idx.Buckets[0])
		idx.Buckets = idx.Buckets[1:]
		plan.changed = true
	}
	return plan
}

// partOf returns the part of b with the messages at idxs, carrying dups
// intra-package duplicates.
func partOf(b *records.Batch, idxs []int, dups int) records.Batch {
	sub := *b
	sub.Messages = make([]protocol.Message, 0, len(idxs))
	for _, i := range idxs {
		sub.Messages = append(sub.Messages, b.Messages[i])
	}
	sub.IntraPackageDuplicates = dups
	sub.Rejected = nil
	return sub
}

// uncheckedReadings returns the Readings of b's messages older than the
// window (part -1) with the dups no part carried, and whether the device
// key emits it: when it has messages, or when no part does.
func (p *Pipeline) uncheckedReadings(b *records.Batch, plan *bucketPlan, dups int) (records.Readings, bool) {
	if len(plan.unchecked) == 0 && len(plan.buckets) > 0 {
		return records.Readings{}, false
	}
	var rs records.Readings
	for _, i := range plan.unchecked {
		rs.Items = append(rs.Items, records.NewReading(b.DeviceID, &b.Messages[i]))
	}
	p.fillReadings(&rs, b, dups, -1)
	return rs, true
}

// dedupeBucket handles one bucket's part of a package under the key
// "DEVICE/BUCKET": new identities are stored and emitted, repeats counted.
func (p *Pipeline) dedupeBucket(c *topology.Context, out topology.Output[records.Readings], key string, v dedupeLoop) error {
	if v.expire {
		return p.Dedupe.Delete(c)
	}
	device, bk, err := parseBucketKey(key)
	if err != nil {
		return topology.Reject("bad_bucket_key", err)
	}
	entry, _, err := p.Dedupe.Get(c)
	if err != nil {
		return err
	}
	rs, changed, emit := p.dedupePart(&entry, &v.batch, bk)
	if changed {
		if err := p.Dedupe.Set(c, entry); err != nil {
			return err
		}
	}
	if !emit {
		return nil
	}
	return out.Emit(c, device, rs)
}

// dedupePart checks a package's part in bucket bk against the bucket's
// entry, storing its new identities: the Readings of its new messages and
// its duplicates, whether the entry changed (its UpdatedMs is then set)
// and whether the Readings go out (they carry anything).
func (p *Pipeline) dedupePart(entry *records.DedupeEntry, part *records.Batch, bk int64) (records.Readings, bool, bool) {
	bucketMs := p.cfg.DedupeBucket.Milliseconds()
	rs := records.Readings{Items: make([]records.Reading, 0, len(part.Messages))}
	dups := part.IntraPackageDuplicates
	raw := part.RawOffset
	// claimed are the identities this package has taken in this call: a
	// second copy of one is a duplicate even on a replay.
	claimed := make([]uint64, 0, len(part.Messages))
	changed := false
	for i := range part.Messages {
		m := &part.Messages[i]
		id := uint64(int64(m.TimeMs)-bk*bucketMs)<<32 | uint64(m.ContentCRC)
		if stored, ok := entry.Lookup(id); !ok {
			entry.Store(id, raw)
			changed = true
		} else if raw <= 0 || stored != raw || slices.Contains(claimed, id) {
			dups++
			continue
		}
		claimed = append(claimed, id)
		rs.Items = append(rs.Items, records.NewReading(part.DeviceID, m))
	}
	if changed {
		entry.UpdatedMs = p.cfg.Now().UnixMilli()
	}
	if len(rs.Items) == 0 && dups == 0 {
		return rs, changed, false
	}
	p.fillReadings(&rs, part, dups, bk)
	return rs, changed, true
}

// fillReadings sets the package-level fields of a Readings record, part
// the bucket it comes from (-1: none).
func (p *Pipeline) fillReadings(rs *records.Readings, b *records.Batch, dups int, part int64) {
	rs.DeviceID = b.DeviceID
	rs.RawOffset = b.RawOffset
	rs.Part = part
	rs.Duplicates = uint64(dups)
	rs.Version = b.Version
	rs.Firmware = b.Firmware
	rs.ReceivedMs = b.ReceivedMs
}

func bucketOf(timeMs uint64, bucketMs int64) int64 { return int64(timeMs / uint64(bucketMs)) }

func bucketKey(device string, bucket int64) string {
	return device + "/" + strconv.FormatInt(bucket, 10)
}

func parseBucketKey(key string) (device string, bucket int64, err error) {
	device, b, ok := strings.Cut(key, "/")
	if !ok {
		return "", 0, fmt.Errorf("processors: dedupe key %q has no bucket", key)
	}
	bucket, err = strconv.ParseInt(b, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("processors: dedupe key %q: %w", key, err)
	}
	return device, bucket, nil
}
