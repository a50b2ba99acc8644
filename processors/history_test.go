package processors_test

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// TestHistoryIsWhatThePipelineBuilds: a device's packages handled by the
// pipeline and the same packages added to a History leave the same dedupe
// entries (index and buckets, expired ones gone) and the same device
// state, byte for byte; across buckets, expiry, intra-package and
// cross-package duplicates and messages older than the window.
func TestHistoryIsWhatThePipelineBuilds(t *testing.T) {
	f := newFixture(t, processors.Config{DedupeWindow: 30 * time.Minute, DedupeBucket: 10 * time.Minute})
	h := f.p.NewHistory(device)
	key := strconv.Itoa(device)
	start := uint64(baseTime - 4*3600_000)
	var batches []records.Batch
	raw := int64(100)
	for k := range 30 { // 3.5 hours: packages of 10 messages 45 s apart, 7 minutes apart
		b := records.Batch{DeviceID: device, PackageSeq: uint32(k), Version: 2, Firmware: 0x0102,
			BaseTimeMs: start + uint64(k)*7*60_000, ReceivedMs: received.UnixMilli(), RawOffset: raw}
		for j := range 10 {
			m := gps(b.BaseTimeMs+uint64(j)*45_000, int32(k*10+j))
			m.OffsetMs = uint32(j * 45_000)
			m.ContentCRC = uint32(7_000 + k*10 + j)
			b.Messages = append(b.Messages, m)
		}
		if k%4 == 1 {
			b.IntraPackageDuplicates = 1
		}
		batches = append(batches, b)
		raw += 3
		if k == 20 { // a resend of an earlier package's messages, inside the window
			re := batches[18]
			re.RawOffset, raw = raw, raw+3
			batches = append(batches, re)
		}
		if k == 25 { // a late package: three messages older than the window, one inside it
			late := b
			late.RawOffset, raw = raw, raw+3
			late.BaseTimeMs = b.BaseTimeMs - 65*60_000
			late.Messages, late.IntraPackageDuplicates = nil, 0
			for j, off := range []uint32{0, 45_000, 90_000, 64 * 60_000} {
				m := gps(late.BaseTimeMs+uint64(off), int32(j))
				m.OffsetMs, m.ContentCRC = off, uint32(9_000+j)
				late.Messages = append(late.Messages, m)
			}
			batches = append(batches, late)
		}
	}
	for _, b := range batches {
		topologytest.Send(f.d, f.p.Decoded, key, b)
		h.Add(b)
	}

	got := map[string][]byte{}
	h.Dedupe(func(k string, e records.DedupeEntry) {
		v, err := records.DedupeEntryCodec{}.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		got[k] = v
	})
	keys := topologytest.TableKeys(f.d, f.p.Dedupe)
	if len(keys) != len(got) || len(keys) < 4 {
		t.Errorf("pipeline's dedupe keys %v, history's %d", keys, len(got))
	}
	for _, k := range keys {
		e, _ := topologytest.TableValue(f.d, f.p.Dedupe, k)
		want, err := records.DedupeEntryCodec{}.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[k], want) {
			t.Errorf("dedupe %s: history %x, pipeline %x", k, got[k], want)
		}
	}

	st, ok := h.DeviceState()
	want := f.state()
	if !ok || want.Duplicates != 8+10 || want.Messages != 300+4 {
		t.Fatalf("history state %v, pipeline state %+v", ok, want)
	}
	// The pipeline's state also says how far it read its input partitions
	// (Inputs, for replays); a history is not read from any and must not
	// claim offsets of the live topics.
	if len(st.Inputs) != 0 {
		t.Errorf("history state claims input offsets %+v", st.Inputs)
	}
	want.Inputs = nil
	a, _ := records.DeviceStateCodec{}.Encode(st)
	b, _ := records.DeviceStateCodec{}.Encode(want)
	if !bytes.Equal(a, b) {
		t.Errorf("device state: history %+v, pipeline %+v", st, want)
	}
}
