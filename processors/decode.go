package processors

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/ingest"
	"github.com/watershed-io/watershed/topology"
)

// staleBeforeMs is 2020-01-01T00:00:00Z: earlier messages are stale.
const staleBeforeMs = 1_577_836_800_000

// decodeScratch is a decoder with its package, reused across records: the
// decoder allocates nothing per message once warm.
type decodeScratch struct {
	dec protocol.Decoder
	pkg protocol.Package
	ok  []protocol.Message
}

// descDecode describes the decode stage, on its own group or fused.
const descDecode = "decode packages (snappy, frames, CRCs, intra-package duplicates) and validate messages"

func (p *Pipeline) declareDecode() {
	// A group fused from dedupe wrote its dead letters of raw packages
	// under dedupe's name: their replays are this group's now.
	g := p.Topology.Processor(GroupDecode, topology.WithDescription(descDecode), topology.TakesReplaysFor(GroupDedupe))
	out := topology.Produce(g, p.Decoded)
	topology.Consume(g, p.Raw, p.decodeThen(func(c *topology.Context, _ string, b records.Batch) error {
		return out.Emit(c, strconv.FormatUint(b.DeviceID, 10), b)
	}))
}

// decodeThen returns a handler of raw packages that decodes each and hands
// its batch to then, whose messages are valid until then returns.
func (p *Pipeline) decodeThen(then topology.Handler[records.Batch]) topology.Handler[[]byte] {
	pool := &sync.Pool{New: func() any { return new(decodeScratch) }}
	return func(c *topology.Context, key string, raw []byte) error {
		s := pool.Get().(*decodeScratch)
		defer pool.Put(s)
		b, err := p.decode(c, s, raw)
		if err != nil {
			return err
		}
		return then(c, key, b)
	}
}

// decode decodes and validates the raw package of c's record: bad messages
// go to the dead letters, and the batch of the valid ones is returned.
// Its messages live in s until s is reused.
func (p *Pipeline) decode(c *topology.Context, s *decodeScratch, raw []byte) (records.Batch, error) {
	if err := s.dec.Decode(raw, &s.pkg); err != nil {
		var pe *protocol.PackageError
		if errors.As(err, &pe) {
			return records.Batch{}, topology.Reject(pe.Reason.String(), err)
		}
		return records.Batch{}, topology.Reject(topology.ReasonDecodeError, err)
	}
	pkg := &s.pkg
	for _, r := range pkg.Rejected {
		c.DeadLetter(r.Reason.String(), fmt.Errorf("record %d: %s", r.Index, r.Reason), raw)
	}
	received := p.receivedMs(c)
	s.ok = s.ok[:0]
	for i := range pkg.Messages {
		m := &pkg.Messages[i]
		if reason := p.validate(m, received); reason != protocol.ReasonNone {
			c.DeadLetter(reason.String(), fmt.Errorf("%s message at %d ms (content crc %08x): %s", m.Type, m.TimeMs, m.ContentCRC, reason), raw)
			continue
		}
		s.ok = append(s.ok, *m)
	}
	// A batch goes on even when nothing in it is valid: the device's state
	// learns its firmware and its duplicates from it.
	b := records.NewBatch(pkg, received)
	b.Messages = s.ok
	// The raw record's coordinates are the package's identity: later
	// stages recognise a replay of this record by them.
	b.RawPartition, b.RawOffset = c.Partition(), c.Offset()
	return b, nil
}

// receivedMs returns the time the edge received the record's package: its
// header, or else the record's own timestamp, or else now.
func (p *Pipeline) receivedMs(c *topology.Context) int64 {
	if t, err := ingest.ReceivedAt(c.Header); err == nil {
		return t.UnixMilli()
	}
	if ts := c.Timestamp(); !ts.IsZero() {
		return ts.UnixMilli()
	}
	return p.cfg.Now().UnixMilli()
}

// validate applies PROTOCOL.md's validation: physical limits first, then
// the clock (before 2020, or more than FutureSkew after the receive time;
// a time past 2^64-1 counts as future).
func (p *Pipeline) validate(m *protocol.Message, receivedMs int64) protocol.Reason {
	if !inRange(m) {
		return protocol.ReasonOutOfRange
	}
	if m.TimeOverflowed() {
		return protocol.ReasonFutureTimestamp
	}
	if m.TimeMs < staleBeforeMs {
		return protocol.ReasonStaleTimestamp
	}
	if receivedMs >= 0 && m.TimeMs > uint64(receivedMs)+uint64(p.cfg.FutureSkew.Milliseconds()) {
		return protocol.ReasonFutureTimestamp
	}
	return protocol.ReasonNone
}

// inRange checks PROTOCOL.md's physical limits.
func inRange(m *protocol.Message) bool {
	switch m.Type {
	case protocol.TypeGPS:
		return m.LatE7 >= -900_000_000 && m.LatE7 <= 900_000_000 &&
			m.LonE7 >= -1_800_000_000 && m.LonE7 <= 1_800_000_000 &&
			m.SpeedDkmh <= 3000 && m.HeadingDeg <= 359
	case protocol.TypeAccel:
		return axisOK(m.XMg) && axisOK(m.YMg) && axisOK(m.ZMg)
	case protocol.TypeEngine:
		return m.RPM <= 12000 && m.CoolantRaw <= 190 && m.FuelPct <= 100
	case protocol.TypeEvent:
		return m.Code >= 1 && m.Code <= 8 && m.Severity <= 5
	case protocol.TypeBattery:
		return m.Millivolts <= 36000
	}
	return false
}

func axisOK(v int16) bool { return v >= -16000 && v <= 16000 }
