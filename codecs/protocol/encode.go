package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrEncode is wrapped by every error of Encode and Encoder.Append: the
// header or a message cannot be written as a valid package.
var ErrEncode = errors.New("protocol: cannot encode")

// Encoder builds valid packages of version 1 or 2, compressed or not. It
// keeps scratch buffers between calls; it is not safe for concurrent use.
// The zero Encoder is ready to use.
//
// For deliberately malformed packages (tests, the device simulator's fault
// injection), use the low-level helpers instead, which check nothing:
// AppendPayload builds a payload, AppendRecord and AppendRecordCRC frame
// any payload bytes as a record (with its true or a given CRC),
// AssemblePackage puts a header (with any field values) before any record
// bytes, compressing them when the header's flags say so, and AppendHeader
// writes a header with a given body_len before a body the caller appends
// as is (a corrupt snappy body, say). The header CRC is computed over
// whatever header fields were given; to produce header_crc, change a header
// byte afterwards, and after changing header bytes on purpose, ResealHeader
// recomputes the header CRC. To produce truncated or trailing_bytes,
// shorten or extend the result.
type Encoder struct {
	records []byte
	comp    []byte
}

// Encode builds the package of header h and messages msgs; see
// Encoder.Append.
func Encode(h Header, msgs []Message) ([]byte, error) {
	var e Encoder
	return e.Append(nil, h, msgs)
}

// Append appends to dst the valid package of header h and messages msgs.
// It uses h's Version (1 or 2), Flags (FlagSnappy or 0), DeviceID (not 0),
// PackageSeq, BaseTimeMs and, for version 2, Firmware; it computes
// MessageCount (1..4096 messages), BodyLen and the CRCs. Each message's time
// offset is TimeMs - BaseTimeMs (modulo 2^64, so a message whose time
// overflowed re-encodes to its offset) and must be 0..MaxTimeOffsetMs. Only
// the fields of a message's type are written (and of those of GPS, HdopD and
// Satellites only in version 2); each must fit its width. The messages' CRC,
// ContentCRC and OffsetMs are not used.
func (e *Encoder) Append(dst []byte, h Header, msgs []Message) ([]byte, error) {
	if h.Version != 1 && h.Version != 2 {
		return dst, fmt.Errorf("%w: version %d", ErrEncode, h.Version)
	}
	if h.Flags&^FlagSnappy != 0 {
		return dst, fmt.Errorf("%w: flags %#02x", ErrEncode, h.Flags)
	}
	if h.DeviceID == 0 {
		return dst, fmt.Errorf("%w: device_id 0", ErrEncode)
	}
	if len(msgs) == 0 || len(msgs) > MaxMessages {
		return dst, fmt.Errorf("%w: %d messages", ErrEncode, len(msgs))
	}
	h.MessageCount = uint16(len(msgs))
	e.records = e.records[:0]
	for i := range msgs {
		start := len(e.records)
		e.records = append(e.records, 0, 0, 0, 0, 0, 0)
		var err error
		e.records, err = AppendPayload(e.records, h.Version, h.BaseTimeMs, &msgs[i])
		if err != nil {
			return dst, fmt.Errorf("message %d: %w", i, err)
		}
		payload := e.records[start+RecordHeaderLen:]
		binary.BigEndian.PutUint16(e.records[start:], uint16(len(payload)))
		binary.BigEndian.PutUint32(e.records[start+2:], crc(payload))
	}
	if len(e.records) > MaxBodyLen {
		return dst, fmt.Errorf("%w: body of %d bytes", ErrEncode, len(e.records))
	}
	body := e.records
	if h.Flags&FlagSnappy != 0 {
		if n := snappyMaxEncodedLen(len(body)); cap(e.comp) < n {
			e.comp = make([]byte, n)
		}
		e.comp = snappyEncode(e.comp[:cap(e.comp)], body)
		body = e.comp
		if len(body) > MaxBodyLen {
			return dst, fmt.Errorf("%w: compressed body of %d bytes", ErrEncode, len(body))
		}
	}
	h.BodyLen = uint32(len(body))
	dst = AppendHeader(dst, h)
	return append(dst, body...), nil
}

// put sets the w-bit field at bit position pos of the 128-bit big-endian
// value hi:lo to the low w bits of v. The field must be zero before.
func put(hi, lo *uint64, pos, w uint, v uint64) {
	v &= 1<<w - 1
	end := pos + w
	switch {
	case end <= 64:
		*hi |= v << (64 - end)
	case pos >= 64:
		*lo |= v << (128 - end)
	default:
		*hi |= v >> (end - 64)
		*lo |= v << (128 - end)
	}
}

// AppendPayload appends the payload of message m in a package of the given
// version and base time: its type, its time offset TimeMs - baseTimeMs
// (modulo 2^64) and its type's fields, padded with zero bits. It fails,
// wrapping ErrEncode, if the type is unknown for the version, the offset is
// over MaxTimeOffsetMs or a field does not fit its width.
func AppendPayload(dst []byte, version uint8, baseTimeMs uint64, m *Message) ([]byte, error) {
	n, ok := PayloadLen(version, m.Type)
	if !ok {
		return dst, fmt.Errorf("%w: type %d in version %d", ErrEncode, m.Type, version)
	}
	offset := m.TimeMs - baseTimeMs
	if offset > MaxTimeOffsetMs {
		return dst, fmt.Errorf("%w: time offset %d ms", ErrEncode, int64(offset))
	}
	var hi, lo uint64
	put(&hi, &lo, 0, 4, uint64(m.Type))
	put(&hi, &lo, 4, 22, offset)
	fits := func(name string, v, w uint) error {
		if v >= 1<<w {
			return fmt.Errorf("%w: %s %d does not fit %d bits", ErrEncode, name, v, w)
		}
		return nil
	}
	switch m.Type {
	case TypeGPS:
		if err := errors.Join(fits("speed_dkmh", uint(m.SpeedDkmh), 12), fits("heading_deg", uint(m.HeadingDeg), 9)); err != nil {
			return dst, err
		}
		put(&hi, &lo, 26, 32, uint64(uint32(m.LatE7)))
		put(&hi, &lo, 58, 32, uint64(uint32(m.LonE7)))
		put(&hi, &lo, 90, 12, uint64(m.SpeedDkmh))
		put(&hi, &lo, 102, 9, uint64(m.HeadingDeg))
		if version >= 2 {
			if err := fits("satellites", uint(m.Satellites), 5); err != nil {
				return dst, err
			}
			put(&hi, &lo, 111, 8, uint64(m.HdopD))
			put(&hi, &lo, 119, 5, uint64(m.Satellites))
		}
	case TypeAccel:
		put(&hi, &lo, 26, 16, uint64(uint16(m.XMg)))
		put(&hi, &lo, 42, 16, uint64(uint16(m.YMg)))
		put(&hi, &lo, 58, 16, uint64(uint16(m.ZMg)))
	case TypeEngine:
		if err := errors.Join(fits("rpm", uint(m.RPM), 14), fits("fuel_pct", uint(m.FuelPct), 7)); err != nil {
			return dst, err
		}
		put(&hi, &lo, 26, 14, uint64(m.RPM))
		put(&hi, &lo, 40, 8, uint64(m.CoolantRaw))
		put(&hi, &lo, 48, 7, uint64(m.FuelPct))
	case TypeEvent:
		if err := fits("severity", uint(m.Severity), 3); err != nil {
			return dst, err
		}
		put(&hi, &lo, 26, 8, uint64(m.Code))
		put(&hi, &lo, 34, 3, uint64(m.Severity))
	case TypeBattery:
		put(&hi, &lo, 26, 16, uint64(m.Millivolts))
	}
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], hi)
	binary.BigEndian.PutUint64(buf[8:], lo)
	return append(dst, buf[:n]...), nil
}

// AppendRecord appends payload framed as a record: payload_len, the
// payload's CRC, the payload. payload_len is written as the low 16 bits of
// len(payload); a longer payload makes a malformed record.
func AppendRecord(dst, payload []byte) []byte {
	return AppendRecordCRC(dst, payload, crc(payload))
}

// AppendRecordCRC is AppendRecord with a given CRC, right or wrong.
func AppendRecordCRC(dst, payload []byte, sum uint32) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, sum)
	return append(dst, payload...)
}

// AppendHeader appends the header h as is, with its BodyLen, and its
// header CRC. A Version of 1 gives the 34-byte layout; any other Version
// the 36-byte layout of version 2 (with Firmware).
func AppendHeader(dst []byte, h Header) []byte {
	start := len(dst)
	dst = append(dst, Magic[0], Magic[1], h.Version, h.Flags)
	dst = binary.BigEndian.AppendUint64(dst, h.DeviceID)
	dst = binary.BigEndian.AppendUint32(dst, h.PackageSeq)
	dst = binary.BigEndian.AppendUint64(dst, h.BaseTimeMs)
	dst = binary.BigEndian.AppendUint16(dst, h.MessageCount)
	dst = binary.BigEndian.AppendUint32(dst, h.BodyLen)
	if h.Version != 1 {
		dst = binary.BigEndian.AppendUint16(dst, h.Firmware)
	}
	return binary.BigEndian.AppendUint32(dst, crc(dst[start:]))
}

// AssemblePackage appends a package of header h (used as is, MessageCount
// included, however wrong) and the record bytes records, snappy-compressed
// first when h.Flags has FlagSnappy. BodyLen is set to the body's length.
func AssemblePackage(dst []byte, h Header, records []byte) []byte {
	body := records
	if h.Flags&FlagSnappy != 0 {
		body = snappyEncode(nil, records)
	}
	h.BodyLen = uint32(len(body))
	dst = AppendHeader(dst, h)
	return append(dst, body...)
}

// ResealHeader recomputes the header CRC of package pkg after header bytes
// were changed on purpose. The layout is chosen by pkg's version byte as in
// AppendHeader. It fails if pkg is shorter than that header.
func ResealHeader(pkg []byte) error {
	if len(pkg) < 3 {
		return fmt.Errorf("%w: %d bytes, no version byte", ErrEncode, len(pkg))
	}
	hl := HeaderLenV2
	if pkg[2] == 1 {
		hl = HeaderLenV1
	}
	if len(pkg) < hl {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrEncode, len(pkg), hl)
	}
	binary.BigEndian.PutUint32(pkg[hl-4:], crc(pkg[:hl-4]))
	return nil
}
