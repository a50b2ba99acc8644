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
// apply once. A package that finds it under an earlier offset is a resend:
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
	newest := int64(-1 << 62)
	if n := len(idx.Buckets); n > 0 {
		newest = idx.Buckets[n-1]
	}
	for i := range b.Messages {
		newest = max(newest, bucketOf(b.Messages[i].TimeMs, bucketMs))
	}
	oldest := newest - window

	// Split the messages by bucket, in order of first appearance.
	var buckets []int64
	parts := map[int64][]int{}
	var unchecked records.Readings
	for i := range b.Messages {
		bk := bucketOf(b.Messages[i].TimeMs, bucketMs)
		if bk < oldest {
			unchecked.Items = append(unchecked.Items, records.NewReading(b.DeviceID, &b.Messages[i]))
			continue
		}
		if _, ok := parts[bk]; !ok {
			buckets = append(buckets, bk)
		}
		parts[bk] = append(parts[bk], i)
	}

	changed := false
	for _, bk := range buckets {
		if i, ok := slices.BinarySearch(idx.Buckets, bk); !ok {
			idx.Buckets = slices.Insert(idx.Buckets, i, bk)
			changed = true
		}
	}
	for len(idx.Buckets) > 0 && idx.Buckets[0] < oldest {
		if err := loop.Send(c, bucketKey(key, idx.Buckets[0]), dedupeLoop{expire: true}); err != nil {
			return err
		}
		idx.Buckets = idx.Buckets[1:]
		changed = true
	}
	if changed {
		idx.UpdatedMs = p.cfg.Now().UnixMilli()
		if err := p.Dedupe.Set(c, idx); err != nil {
			return err
		}
	}

	// The package's intra-package duplicates ride with its first part.
	dups := b.IntraPackageDuplicates
	for _, bk := range buckets {
		sub := b
		sub.Messages = make([]protocol.Message, 0, len(parts[bk]))
		for _, i := range parts[bk] {
			sub.Messages = append(sub.Messages, b.Messages[i])
		}
		sub.IntraPackageDuplicates = dups
		sub.Rejected = nil
		dups = 0
		if err := loop.Send(c, bucketKey(key, bk), dedupeLoop{batch: sub}); err != nil {
			return err
		}
	}
	if len(unchecked.Items) > 0 || len(buckets) == 0 {
		p.fillReadings(&unchecked, &b, dups, -1)
		return out.Emit(c, key, unchecked)
	}
	return nil
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
	bucketMs := p.cfg.DedupeBucket.Milliseconds()
	entry, _, err := p.Dedupe.Get(c)
	if err != nil {
		return err
	}
	rs := records.Readings{Items: make([]records.Reading, 0, len(v.batch.Messages))}
	dups := v.batch.IntraPackageDuplicates
	raw := v.batch.RawOffset
	// claimed are the identities this package has taken in this call: a
	// second copy of one is a duplicate even on a replay.
	claimed := make([]uint64, 0, len(v.batch.Messages))
	changed := false
	for i := range v.batch.Messages {
		m := &v.batch.Messages[i]
		id := uint64(int64(m.TimeMs)-bk*bucketMs)<<32 | uint64(m.ContentCRC)
		if stored, ok := entry.Lookup(id); !ok {
			entry.Store(id, raw)
			changed = true
		} else if raw <= 0 || stored != raw || slices.Contains(claimed, id) {
			dups++
			continue
		}
		claimed = append(claimed, id)
		rs.Items = append(rs.Items, records.NewReading(v.batch.DeviceID, m))
	}
	if changed {
		entry.UpdatedMs = p.cfg.Now().UnixMilli()
		if err := p.Dedupe.Set(c, entry); err != nil {
			return err
		}
	}
	if len(rs.Items) == 0 && dups == 0 {
		return nil
	}
	p.fillReadings(&rs, &v.batch, dups, bk)
	return out.Emit(c, device, rs)
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
