package simulator

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// maxBaseJitterMs is how far below its oldest message a package's
// base_time_ms may lie.
const maxBaseJitterMs = 300

// item is a message planned for a package.
type item struct {
	m     protocol.Message
	fault Fault
	// rebatchBase is, for a re-batched message, the base time of the
	// package it was first sent in.
	rebatchBase uint64
}

// recKind tells how a record was built.
type recKind uint8

const (
	recMessage recKind = iota
	recBadLength
	recUnknownType
)

// rec is a record planned for a package.
type rec struct {
	bytes []byte // payload_len, crc, payload
	crcOK bool
	kind  recKind
	fault Fault
	msg   protocol.Message // for recMessage
}

func (r *rec) payload() []byte { return r.bytes[protocol.RecordHeaderLen:] }

// plan is a package being built.
type plan struct {
	h      protocol.Header
	recs   []rec
	items  []item
	faults []Fault
}

// body returns the records back to back, uncompressed.
func (pl *plan) body() []byte {
	var b []byte
	for i := range pl.recs {
		b = append(b, pl.recs[i].bytes...)
	}
	return b
}

// regular builds a package of regular messages of device d, with the
// message- and record-level faults of the mix when faults is set.
func (f *Fleet) regular(d *device, now uint64, faults bool) (*Package, error) {
	pl, err := f.plan(d, now, faults)
	if err != nil {
		return nil, err
	}
	p := f.assemble(d, pl.h, pl.recs, now)
	p.Faults = pl.faults
	for _, it := range pl.items {
		if it.fault != FaultFutureTimestamp {
			p.sentMessages = append(p.sentMessages, it.m)
		}
	}
	return p, nil
}

// plan plans a package of regular messages of device d, with the message-
// and record-level faults of the mix when faults is set.
func (f *Fleet) plan(d *device, now uint64, faults bool) (*plan, error) {
	rng := f.rng
	d.catchUp(rng, f.deviceNow)
	mpp := f.cfg.MessagesPerPackage
	n := mpp.Min + rng.IntN(mpp.Max-mpp.Min+1)
	items := make([]item, 0, n+6)
	for range n {
		items = append(items, item{m: d.message(rng, d.nextTime(rng, f.deviceNow))})
	}
	minT, maxT := items[0].m.TimeMs, items[n-1].m.TimeMs
	fits := func(t uint64) bool {
		return max(maxT, t)-min(minT, t)+maxBaseJitterMs+8 <= protocol.MaxTimeOffsetMs
	}
	add := func(it item) {
		i := rng.IntN(len(items) + 1)
		items = append(items, item{})
		copy(items[i+1:], items[i:])
		items[i] = it
		minT, maxT = min(minT, it.m.TimeMs), max(maxT, it.m.TimeMs)
	}
	var pkgFaults []Fault
	mix := &f.cfg.Faults
	if faults {
		if f.chance(mix.Late) {
			if t := d.lateTime(rng); fits(t) {
				add(item{m: d.message(rng, t), fault: FaultLate})
				pkgFaults = append(pkgFaults, FaultLate)
			}
		}
		if f.chance(mix.Rebatch) && len(d.history) > 0 {
			k := 1 + rng.IntN(3)
			added := 0
			for _, i := range rng.Perm(len(d.history)) {
				e := d.history[i]
				if added == k {
					break
				}
				if fits(e.msg.TimeMs) {
					add(item{m: e.msg, fault: FaultRebatch, rebatchBase: e.base})
					added++
				}
			}
			if added > 0 {
				pkgFaults = append(pkgFaults, FaultRebatch)
			}
		}
		if f.chance(mix.OutOfRange) {
			add(item{m: d.outOfRange(rng, d.nextTime(rng, f.deviceNow)), fault: FaultOutOfRange})
			pkgFaults = append(pkgFaults, FaultOutOfRange)
		}
		if f.chance(mix.Future) {
			if t := d.futureTime(rng, now); fits(t) {
				add(item{m: d.message(rng, t), fault: FaultFutureTimestamp})
				pkgFaults = append(pkgFaults, FaultFutureTimestamp)
			}
		}
	}
	// The base time lies a little below the oldest message, and differs
	// from the base of every re-batched message's first package, so that
	// their offsets (and record CRCs) differ from the first copies'.
	base := minT - rng.Uint64N(maxBaseJitterMs)
	for again := true; again; {
		again = false
		for _, it := range items {
			if it.fault == FaultRebatch && it.rebatchBase == base {
				base--
				again = true
			}
		}
	}
	recs := make([]rec, 0, len(items)+4)
	for _, it := range items {
		r, err := messageRec(d.Version, base, it.m, it.fault)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if faults && f.chance(mix.BadRecord) {
		kind := badRecordFaults[f.badRecordNext%len(badRecordFaults)]
		f.badRecordNext++
		r, err := f.badRec(d, base, kind, now)
		if err != nil {
			return nil, err
		}
		i := rng.IntN(len(recs) + 1)
		recs = append(recs, rec{})
		copy(recs[i+1:], recs[i:])
		recs[i] = r
		pkgFaults = append(pkgFaults, kind)
	}
	if faults && f.chance(mix.IntraDuplicate) {
		for range 1 + rng.IntN(2) {
			i := rng.IntN(len(recs))
			c := recs[i]
			c.fault = FaultIntraDuplicate
			j := i + 1 + rng.IntN(len(recs)-i)
			recs = append(recs, rec{})
			copy(recs[j+1:], recs[j:])
			recs[j] = c
		}
		pkgFaults = append(pkgFaults, FaultIntraDuplicate)
	}
	return &plan{h: f.header(d, base, len(recs)), recs: recs, items: items, faults: pkgFaults}, nil
}

// messageRec builds the record of message m.
func messageRec(version uint8, base uint64, m protocol.Message, fault Fault) (rec, error) {
	b := make([]byte, protocol.RecordHeaderLen, protocol.RecordHeaderLen+16)
	b, err := protocol.AppendPayload(b, version, base, &m)
	if err != nil {
		return rec{}, fmt.Errorf("message at %d: %w", m.TimeMs, err)
	}
	return frame(b, true, recMessage, fault, m), nil
}

// frame fills in the payload_len and CRC of b, a record whose payload
// follows RecordHeaderLen bytes of room; with crcOK false the CRC is wrong.
func frame(b []byte, crcOK bool, kind recKind, fault Fault, m protocol.Message) rec {
	payload := b[protocol.RecordHeaderLen:]
	sum := crcOf(payload)
	if !crcOK {
		sum ^= 0x00a5_0001
	}
	binary.BigEndian.PutUint16(b, uint16(len(payload)))
	binary.BigEndian.PutUint32(b[2:], sum)
	return rec{bytes: b, crcOK: crcOK, kind: kind, fault: fault, msg: m}
}

func crcOf(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// badRec builds a corrupt record of the given kind at the device's next
// time.
func (f *Fleet) badRec(d *device, base uint64, kind Fault, now uint64) (rec, error) {
	rng := f.rng
	m := d.message(rng, d.nextTime(rng, f.deviceNow))
	r, err := messageRec(d.Version, base, m, kind)
	if err != nil {
		return rec{}, err
	}
	b := r.bytes
	switch kind {
	case FaultMessageCRC:
		return frame(b, false, recMessage, kind, m), nil
	case FaultBadLength:
		switch rng.IntN(3) {
		case 0: // one byte too many
			b = append(b, 0)
		case 1: // not even a whole prefix
			b = b[:protocol.RecordHeaderLen+3]
		default: // a padding bit set (every type has some)
			b[len(b)-1] |= 1
		}
		return frame(b, true, recBadLength, kind, m), nil
	case FaultUnknownType:
		if d.Version == 1 {
			// A battery message, which only version 2 knows.
			bm := d.messageOf(rng, protocol.TypeBattery, m.TimeMs)
			b = make([]byte, protocol.RecordHeaderLen, protocol.RecordHeaderLen+6)
			if b, err = protocol.AppendPayload(b, 2, base, &bm); err != nil {
				return rec{}, fmt.Errorf("battery payload: %w", err)
			}
		} else {
			t := []byte{0, 6, 7, 9, 12, 15}[rng.IntN(6)]
			b[protocol.RecordHeaderLen] = b[protocol.RecordHeaderLen]&0x0f | t<<4
		}
		return frame(b, true, recUnknownType, kind, m), nil
	}
	return rec{}, fmt.Errorf("bad record kind %q", kind)
}

// assemble builds the package of header h (MessageCount as given) and
// records recs, and works out each record's expected fate.
func (f *Fleet) assemble(d *device, h protocol.Header, recs []rec, now uint64) *Package {
	body := (&plan{recs: recs}).body()
	p := &Package{
		Device: d.ID,
		Token:  f.token(f.cfg.Secret, d.ID),
		Bytes:  protocol.AssemblePackage(nil, h, body),
		Expect: Expect{
			Code:       202,
			Device:     h.DeviceID,
			Version:    h.Version,
			Firmware:   h.Firmware,
			PackageSeq: h.PackageSeq,
			BaseTimeMs: h.BaseTimeMs,
			Records:    expectRecords(h, recs, now),
		},
	}
	if h.Version == 1 {
		p.Expect.Firmware = 0
	}
	return p
}

// expectRecords applies PROTOCOL.md's record checks and validation to the
// records as built: a wrong CRC is message_crc; a CRC-valid record equal to
// an earlier CRC-valid one is an intra-package duplicate; then bad_length
// and unknown_type as built; then validation of the message against now,
// the time the edge is expected to receive the package.
func expectRecords(h protocol.Header, recs []rec, now uint64) []RecordExpect {
	out := make([]RecordExpect, len(recs))
	seen := make(map[string]bool, len(recs))
	for i := range recs {
		r := &recs[i]
		e := RecordExpect{Index: i, Fault: r.fault}
		switch {
		case !r.crcOK:
			e.Outcome, e.Reason = OutcomeInvalid, protocol.ReasonMessageCRC
		case seen[string(r.bytes)]:
			e.Outcome = OutcomeDuplicate
		case r.kind == recBadLength:
			e.Outcome, e.Reason = OutcomeInvalid, protocol.ReasonBadLength
		case r.kind == recUnknownType:
			e.Outcome, e.Reason = OutcomeInvalid, protocol.ReasonUnknownType
		default:
			m := r.msg
			payload := r.payload()
			m.OffsetMs = uint32(m.TimeMs - h.BaseTimeMs)
			m.CRC = crcOf(payload)
			m.ContentCRC = ContentCRC(payload)
			if h.Version == 1 {
				m.HdopD, m.Satellites = 0, 0
			}
			e.Message, e.HasMessage = m, true
			e.Outcome = OutcomeValid
			if reason := validate(&m, now); reason != protocol.ReasonNone {
				e.Outcome, e.Reason = OutcomeInvalid, reason
			}
		}
		if r.crcOK {
			seen[string(r.bytes)] = true
		}
		out[i] = e
	}
	return out
}

// stale builds a package of one to three messages timed in late 2019, as
// from a device whose clock was reset: all stale_timestamp.
func (f *Fleet) stale(d *device, now uint64) (*Package, error) {
	rng := f.rng
	base := uint64(staleBeforeMs) - 60_000 - rng.Uint64N(30*24*3600_000)
	n := 1 + rng.IntN(3)
	recs := make([]rec, 0, n)
	t := base
	for range n {
		t += 1 + rng.Uint64N(1000)
		r, err := messageRec(d.Version, base, d.message(rng, t), FaultStaleTimestamp)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	p := f.assemble(d, f.header(d, base, len(recs)), recs, now)
	p.Faults = []Fault{FaultStaleTimestamp}
	return p, nil
}

// malformed builds a package of device d broken as kind says.
func (f *Fleet) malformed(d *device, kind Fault, now uint64) (*Package, error) {
	rng := f.rng
	pl, err := f.plan(d, now, false)
	if err != nil {
		return nil, err
	}
	p := f.assemble(d, pl.h, pl.recs, now)
	p.Faults = []Fault{kind}
	p.Expect.Records = nil
	p.Expect.Code, p.Expect.Reject = malformedExpect(kind)
	b := p.Bytes
	h := pl.h
	h.BodyLen = uint32(len(b) - h.Len())
	hl := h.Len()
	reseal := func() error { return protocol.ResealHeader(b) }
	switch kind {
	case FaultTruncatedHeader:
		if rng.IntN(3) == 0 {
			b = b[:1+rng.IntN(2)]
		} else {
			b = b[:3+rng.IntN(hl-3)]
		}
	case FaultBadMagic:
		b[rng.IntN(2)] ^= byte(1 + rng.IntN(255))
	case FaultUnsupportedVersion:
		b[2] = []byte{0, 3, 4, 255}[rng.IntN(4)]
	case FaultHeaderCRC:
		b[4+rng.IntN(hl-8)] ^= 1 << rng.IntN(8)
	case FaultBadFlags:
		b[3] |= 1 << (1 + rng.IntN(7))
		err = reseal()
	case FaultZeroDevice:
		clear(b[4:12])
		p.Expect.Device = 0
		p.Token = f.token(f.cfg.Secret, 0)
		err = reseal()
	case FaultBadCount:
		c := uint16(0)
		if rng.IntN(2) == 0 {
			c = uint16(protocol.MaxMessages + 1 + rng.IntN(60000))
		}
		binary.BigEndian.PutUint16(b[24:], c)
		err = reseal()
	case FaultTrailingBytes:
		for range 1 + rng.IntN(16) {
			b = append(b, byte(rng.Uint32()))
		}
	case FaultTruncatedBody:
		b = b[:len(b)-1-rng.IntN(int(h.BodyLen))]
	case FaultTooLarge:
		binary.BigEndian.PutUint32(b[26:], uint32(protocol.MaxBodyLen+1+rng.IntN(1<<24)))
		err = reseal()
	case FaultBadCompression:
		h.Flags |= protocol.FlagSnappy
		var body []byte
		switch rng.IntN(3) {
		case 0: // empty
		case 1: // a preamble that does not end within 5 bytes
			body = []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00}
		default: // a valid stream cut short: its last element is incomplete
			full := protocol.AssemblePackage(nil, h, pl.body())
			body = full[hl : len(full)-1-rng.IntN(2)]
		}
		h.BodyLen = uint32(len(body))
		b = append(protocol.AppendHeader(nil, h), body...)
	case FaultCountMismatch:
		if h.MessageCount > 1 && rng.IntN(2) == 0 {
			h.MessageCount-- // a record left over
		} else {
			h.MessageCount++ // a record missing
		}
		b = protocol.AssemblePackage(nil, h, pl.body())
	case FaultSnappyTooLarge:
		h.Flags |= protocol.FlagSnappy
		body := binary.AppendUvarint(nil, uint64(protocol.MaxBodyLen+1+rng.IntN(1<<26)))
		body = append(body, 0x00, 0x00, 0x00, 0x00)
		h.BodyLen = uint32(len(body))
		b = append(protocol.AppendHeader(nil, h), body...)
	default:
		return nil, fmt.Errorf("unknown malformed kind %q", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	p.Bytes = b
	return p, nil
}
