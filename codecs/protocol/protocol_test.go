package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// stripDerived clears what the decoder computes and the encoder ignores.
func stripDerived(ms []Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		m.CRC, m.ContentCRC, m.OffsetMs = 0, 0, 0
		out[i] = m
	}
	return out
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	var d Decoder
	var p Package
	for i := range 3000 {
		version := uint8(1 + i%2)
		h := Header{
			Version:    version,
			Flags:      uint8(r.IntN(2)),
			DeviceID:   1 + r.Uint64N(math.MaxUint64),
			PackageSeq: r.Uint32(),
			BaseTimeMs: r.Uint64(),
		}
		if version == 2 {
			h.Firmware = uint16(r.Uint32())
		}
		n := 1 + r.IntN(60)
		if i%100 == 0 {
			n = 1 + r.IntN(MaxMessages)
		}
		msgs := make([]Message, n)
		for j := range msgs {
			msgs[j] = randMessage(r, version, h.BaseTimeMs)
		}
		pkg, err := Encode(h, msgs)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if err := d.Decode(pkg, &p); err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		want := h
		want.MessageCount = uint16(n)
		want.BodyLen = uint32(len(pkg) - want.Len())
		if p.Header != want {
			t.Fatalf("case %d: header %+v, want %+v", i, p.Header, want)
		}
		// Random messages may repeat only by chance; count what is kept.
		if len(p.Rejected) != 0 {
			t.Fatalf("case %d: rejected %v", i, p.Rejected)
		}
		if len(p.Messages)+p.IntraPackageDuplicates != n {
			t.Fatalf("case %d: %d kept + %d dups, want %d", i, len(p.Messages), p.IntraPackageDuplicates, n)
		}
		if p.IntraPackageDuplicates == 0 {
			got := stripDerived(p.Messages)
			for j := range msgs {
				if got[j] != msgs[j] {
					t.Fatalf("case %d message %d: got %+v, want %+v", i, j, got[j], msgs[j])
				}
			}
		}
		for j := range p.Messages {
			m := &p.Messages[j]
			if m.TimeOverflowed() != (m.TimeMs < h.BaseTimeMs) {
				t.Fatalf("case %d message %d: TimeOverflowed %v, base %d time %d", i, j, m.TimeOverflowed(), h.BaseTimeMs, m.TimeMs)
			}
		}
	}
}

// TestContentCRC checks that the content CRC ignores the time offset, and
// that it is the record CRC of the same message sent at offset 0.
func TestContentCRC(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		version := uint8(1 + r.IntN(2))
		base := uint64(1763900000000)
		m := randMessage(r, version, base)
		later := m
		later.TimeMs = m.TimeMs // same message, re-batched with an earlier base
		base2 := m.TimeMs - uint64(r.IntN(1000))
		h1 := Header{Version: version, DeviceID: 1, BaseTimeMs: base}
		h2 := Header{Version: version, DeviceID: 1, BaseTimeMs: base2}
		h0 := Header{Version: version, DeviceID: 1, BaseTimeMs: m.TimeMs}
		p1 := mustDecode(t, mustEncode(t, h1, m))
		p2 := mustDecode(t, mustEncode(t, h2, later))
		p0 := mustDecode(t, mustEncode(t, h0, m))
		a, b, z := p1.Messages[0], p2.Messages[0], p0.Messages[0]
		if a.TimeMs != b.TimeMs || a.ContentCRC != b.ContentCRC {
			t.Fatalf("same message, different identity: %+v %+v", a, b)
		}
		if z.OffsetMs != 0 || z.ContentCRC != z.CRC {
			t.Fatalf("at offset 0 the content CRC must be the record CRC: %+v", z)
		}
		if a.OffsetMs != 0 && a.CRC == z.CRC {
			t.Fatalf("record CRC ignores the offset: %+v", a)
		}
	}
}

func mustEncode(t *testing.T, h Header, msgs ...Message) []byte {
	t.Helper()
	b, err := Encode(h, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDecode(t *testing.T, b []byte) *Package {
	t.Helper()
	p, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func wantReject(t *testing.T, b []byte, want Reason) {
	t.Helper()
	_, err := Decode(b)
	var pe *PackageError
	if !errors.As(err, &pe) || pe.Reason != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func payload(t *testing.T, version uint8, base uint64, m Message) []byte {
	t.Helper()
	p, err := AppendPayload(nil, version, base, &m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const base = uint64(1763900000000)

var (
	hdr1 = Header{Version: 1, DeviceID: 4242, PackageSeq: 1, BaseTimeMs: base}
	hdr2 = Header{Version: 2, DeviceID: 4242, PackageSeq: 1, BaseTimeMs: base, Firmware: 0x0203}
	evt  = Message{Type: TypeEvent, TimeMs: base + 5, Code: 3, Severity: 2}
)

func withCount(h Header, n int, flags uint8) Header {
	h.MessageCount = uint16(n)
	h.Flags = flags
	return h
}

func TestPreambleRules(t *testing.T) {
	rec := AppendRecord(nil, payload(t, 1, base, evt))
	cases := []struct {
		name string
		body []byte
		want Reason
	}{
		{"empty", nil, ReasonBadCompression},
		{"unterminated within body", []byte{0x80, 0x80}, ReasonBadCompression},
		{"six-byte uvarint", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, ReasonBadCompression},
		{"five bytes, huge value", []byte{0xff, 0xff, 0xff, 0xff, 0x7f}, ReasonTooLarge},
		{"just over the limit", binary.AppendUvarint(nil, MaxBodyLen+1), ReasonTooLarge},
		{"at the limit, no data", binary.AppendUvarint(nil, MaxBodyLen), ReasonBadCompression},
		{"length without data", append(binary.AppendUvarint(nil, uint64(len(rec))), 0), ReasonBadCompression},
		{"zero length", []byte{0}, ReasonCountMismatch},
		// An S2 "repeat offset" copy (offset 0) is corrupt standard snappy.
		{"offset 0 copy", []byte{8, 0x04, 'a', 0x01 | 3<<2, 0}, ReasonBadCompression},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := withCount(hdr1, 1, FlagSnappy)
			h.BodyLen = uint32(len(c.body))
			wantReject(t, append(AppendHeader(nil, h), c.body...), c.want)
		})
	}
	// A well-formed body in the same frame is accepted.
	mustDecode(t, AssemblePackage(nil, withCount(hdr1, 1, FlagSnappy), rec))
}

func TestCountMismatch(t *testing.T) {
	rec := AppendRecord(nil, payload(t, 1, base, evt))
	for _, flags := range []uint8{0, FlagSnappy} {
		wantReject(t, AssemblePackage(nil, withCount(hdr1, 2, flags), rec), ReasonCountMismatch)
		wantReject(t, AssemblePackage(nil, withCount(hdr1, 1, flags), append(bytes.Clone(rec), 0)), ReasonCountMismatch)
		wantReject(t, AssemblePackage(nil, withCount(hdr1, 1, flags), rec[:len(rec)-1]), ReasonCountMismatch)
		wantReject(t, AssemblePackage(nil, withCount(hdr1, 1, flags), rec[:3]), ReasonCountMismatch)
		// A record whose payload_len points past the end, even with a bad
		// CRC, is a package-level count_mismatch.
		bad := AppendRecordCRC(nil, make([]byte, 300), 1)[:100]
		wantReject(t, AssemblePackage(nil, withCount(hdr1, 1, flags), bad), ReasonCountMismatch)
	}
}

func TestRecordCheckOrder(t *testing.T) {
	good := payload(t, 2, base, evt)
	unknown := bytes.Clone(good)
	unknown[0] = 0x60 | unknown[0]&0x0f // type 6
	short := []byte{0x60, 0}            // unknown type, but no whole prefix
	longUnknown := append(bytes.Clone(unknown), 0)
	padded := bytes.Clone(good)
	padded[len(padded)-1] |= 1
	wrongLen := append(bytes.Clone(good), 0)
	type rec struct {
		payload []byte
		badCRC  bool
	}
	recs := []rec{
		{good, false},        // 0 kept
		{good, true},         // 1 message_crc (before anything else)
		{good, true},         // 2 message_crc again: a bad-CRC copy is no duplicate
		{good, false},        // 3 duplicate of 0
		{unknown, false},     // 4 unknown_type
		{unknown, false},     // 5 duplicate of a rejected record
		{short, false},       // 6 bad_length (prefix check before type)
		{longUnknown, false}, // 7 unknown_type (type before length)
		{padded, false},      // 8 bad_length (padding)
		{wrongLen, false},    // 9 bad_length
		{padded, false},      // 10 duplicate of 8
		{nil, false},         // 11 bad_length (empty payload)
	}
	var body []byte
	for _, r := range recs {
		if r.badCRC {
			body = AppendRecordCRC(body, r.payload, crc(r.payload)^1)
		} else {
			body = AppendRecord(body, r.payload)
		}
	}
	for _, flags := range []uint8{0, FlagSnappy} {
		p := mustDecode(t, AssemblePackage(nil, withCount(hdr2, len(recs), flags), body))
		want := []RecordRejection{
			{1, ReasonMessageCRC}, {2, ReasonMessageCRC}, {4, ReasonUnknownType},
			{6, ReasonBadLength}, {7, ReasonUnknownType}, {8, ReasonBadLength},
			{9, ReasonBadLength}, {11, ReasonBadLength},
		}
		if len(p.Messages) != 1 || p.IntraPackageDuplicates != 3 || !equalRejections(p.Rejected, want) {
			t.Fatalf("kept %d, dups %d, rejected %v; want 1, 3, %v", len(p.Messages), p.IntraPackageDuplicates, p.Rejected, want)
		}
	}
}

func equalRejections(a, b []RecordRejection) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSameCRCDifferentPayload: equal CRCs alone do not make a duplicate.
func TestSameCRCDifferentPayload(t *testing.T) {
	a := payload(t, 1, base, evt)
	b := forgeSameCRC(a)
	if bytes.Equal(a, b) || crc(a) != crc(b) {
		t.Fatal("forgery failed")
	}
	body := AppendRecord(AppendRecord(nil, a), b)
	p := mustDecode(t, AssemblePackage(nil, withCount(hdr1, 2, 0), body))
	if p.IntraPackageDuplicates != 0 || len(p.Messages)+len(p.Rejected) != 2 {
		t.Fatalf("dups %d, kept %d, rejected %v", p.IntraPackageDuplicates, len(p.Messages), p.Rejected)
	}
	// After a CRC collision the decoder keys its table by payload hash:
	// copies of both records, before and after, are still found.
	other := payload(t, 1, base, Message{Type: TypeAccel, TimeMs: base, XMg: 1})
	for _, seq := range [][][]byte{
		{other, a, b, a, b, other},
		{a, other, b, b, other, a},
	} {
		var body []byte
		for _, r := range seq {
			body = AppendRecord(body, r)
		}
		var d Decoder
		var p Package
		if err := d.Decode(AssemblePackage(nil, withCount(hdr1, len(seq), 0), body), &p); err != nil {
			t.Fatal(err)
		}
		if p.IntraPackageDuplicates != 3 || len(p.Messages)+len(p.Rejected) != 3 {
			t.Fatalf("dups %d, kept %d, rejected %v", p.IntraPackageDuplicates, len(p.Messages), p.Rejected)
		}
		if !d.hashMode {
			t.Fatal("collision did not switch to hash mode")
		}
	}
}

// forgeSameCRC returns a copy of p with its fifth-last byte changed and its
// last 4 bytes adjusted so that the CRC stays the same.
func forgeSameCRC(p []byte) []byte {
	q := bytes.Clone(p)
	q[len(q)-5] ^= 1
	return forceCRC(q, crc(p))
}

// forceCRC changes the last 4 bytes of p (at least 4 bytes) in place so
// that its CRC is target, and returns p. The CRC is affine over GF(2):
// flipping bit i changes it by a fixed delta[i], and the 32 deltas of the
// last 4 bytes' bits are independent, so Gaussian elimination finds the
// bits to flip.
func forceCRC(p []byte, target uint32) []byte {
	n := len(p)
	z := crc(make([]byte, n))
	var rows, cmb [32]uint32 // rows[i] is the delta of the bit set cmb[i]
	for i := range rows {
		e := make([]byte, n)
		e[n-4+i/8] ^= 1 << (i % 8)
		rows[i] = crc(e) ^ z
		cmb[i] = 1 << i
	}
	r := 0
	for bit := 31; bit >= 0; bit-- {
		piv := -1
		for i := r; i < 32; i++ {
			if rows[i]>>bit&1 == 1 {
				piv = i
				break
			}
		}
		if piv < 0 {
			continue
		}
		rows[r], rows[piv] = rows[piv], rows[r]
		cmb[r], cmb[piv] = cmb[piv], cmb[r]
		for i := range 32 {
			if i != r && rows[i]>>bit&1 == 1 {
				rows[i] ^= rows[r]
				cmb[i] ^= cmb[r]
			}
		}
		r++
	}
	v := crc(p) ^ target
	var sel uint32
	for i := range r {
		for bit := 31; bit >= 0; bit-- {
			if rows[i]>>bit&1 == 1 {
				if v>>bit&1 == 1 {
					v ^= rows[i]
					sel ^= cmb[i]
				}
				break
			}
		}
	}
	for i := range 32 {
		if sel>>i&1 == 1 {
			p[n-4+i/8] ^= 1 << (i % 8)
		}
	}
	return p
}

func TestTimeOverflow(t *testing.T) {
	h := hdr2
	h.BaseTimeMs = math.MaxUint64 - 10
	m := Message{Type: TypeBattery, TimeMs: h.BaseTimeMs + 100, Millivolts: 12000} // wraps
	p := mustDecode(t, mustEncode(t, h, m))
	got := p.Messages[0]
	if !got.TimeOverflowed() || got.OffsetMs != 100 || got.TimeMs != 89 {
		t.Fatalf("got %+v (overflowed %v), want offset 100, wrapped time 89", got, got.TimeOverflowed())
	}
	// Re-encoding the wrapped time gives back the same offset.
	again := mustDecode(t, mustEncode(t, h, got))
	if again.Messages[0].CRC != got.CRC {
		t.Fatal("re-encoding a wrapped time changed the record")
	}
	m.TimeMs = h.BaseTimeMs + 5
	if mustDecode(t, mustEncode(t, h, m)).Messages[0].TimeOverflowed() {
		t.Fatal("no overflow reported as overflow")
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	ok := Message{Type: TypeEngine, TimeMs: base, RPM: 100}
	cases := []struct {
		name string
		h    Header
		msgs []Message
	}{
		{"version 3", Header{Version: 3, DeviceID: 1, BaseTimeMs: base}, []Message{ok}},
		{"zero device", Header{Version: 1, BaseTimeMs: base}, []Message{ok}},
		{"reserved flag", Header{Version: 1, Flags: 2, DeviceID: 1, BaseTimeMs: base}, []Message{ok}},
		{"no messages", hdr1, nil},
		{"too many", hdr1, make([]Message, MaxMessages+1)},
		{"battery in v1", hdr1, []Message{{Type: TypeBattery, TimeMs: base}}},
		{"type 0", hdr2, []Message{{TimeMs: base}}},
		{"offset too large", hdr1, []Message{{Type: TypeEvent, TimeMs: base + MaxTimeOffsetMs + 1}}},
		{"before base", hdr1, []Message{{Type: TypeEvent, TimeMs: base - 1}}},
		{"rpm too wide", hdr1, []Message{{Type: TypeEngine, TimeMs: base, RPM: 1 << 14}}},
		{"speed too wide", hdr1, []Message{{Type: TypeGPS, TimeMs: base, SpeedDkmh: 1 << 12}}},
		{"satellites too wide", hdr2, []Message{{Type: TypeGPS, TimeMs: base, Satellites: 32}}},
		{"severity too wide", hdr1, []Message{{Type: TypeEvent, TimeMs: base, Severity: 8}}},
	}
	for _, c := range cases {
		if _, err := Encode(c.h, c.msgs); !errors.Is(err, ErrEncode) {
			t.Errorf("%s: err = %v, want ErrEncode", c.name, err)
		}
	}
}

func TestResealHeader(t *testing.T) {
	pkg := mustEncode(t, hdr2, evt)
	pkg[3] = 0x80 // a reserved flag bit
	wantReject(t, pkg, ReasonHeaderCRC)
	if err := ResealHeader(pkg); err != nil {
		t.Fatal(err)
	}
	wantReject(t, pkg, ReasonBadFlags)
	if err := ResealHeader(pkg[:20]); !errors.Is(err, ErrEncode) {
		t.Fatalf("short package: %v", err)
	}
}

func TestReasonWords(t *testing.T) {
	seen := map[string]bool{}
	for r := ReasonNone + 1; r < reasonCount; r++ {
		w := r.String()
		if seen[w] || w == "" {
			t.Fatalf("word %q repeated or empty", w)
		}
		seen[w] = true
		back, err := ParseReason(w)
		if err != nil || back != r {
			t.Fatalf("ParseReason(%q) = %v, %v", w, back, err)
		}
		txt, err := r.MarshalText()
		if err != nil || string(txt) != w {
			t.Fatalf("MarshalText = %q, %v", txt, err)
		}
	}
	if _, err := ParseReason("none"); err == nil {
		t.Fatal("ParseReason accepted the zero reason")
	}
	if _, err := ReasonNone.MarshalText(); err == nil {
		t.Fatal("the zero reason marshalled")
	}
	if Reason(200).Valid() || Reason(200).String() != "reason(200)" {
		t.Fatal("unknown reason")
	}
}

func TestDecodeErrorLeavesHeaderOnlyWhenTrusted(t *testing.T) {
	var d Decoder
	p := Package{Messages: make([]Message, 3), Rejected: make([]RecordRejection, 2), IntraPackageDuplicates: 9}
	pkg := mustEncode(t, hdr2, evt)
	pkg[len(pkg)-1] ^= 0xff // snappy-free body: the record's CRC breaks, not the package
	if err := d.Decode(pkg, &p); err != nil || len(p.Rejected) != 1 || len(p.Messages) != 0 {
		t.Fatalf("err %v, package %+v", err, p)
	}
	err := d.Decode(append(bytes.Clone(pkg), 0), &p)
	var pe *PackageError
	if !errors.As(err, &pe) || pe.Reason != ReasonTrailingBytes || p.Header.DeviceID != 4242 || len(p.Messages)+len(p.Rejected)+p.IntraPackageDuplicates != 0 {
		t.Fatalf("err %v, package %+v", err, p)
	}
	pkg[0] = 'X'
	if err := d.Decode(pkg, &p); err == nil || p.Header != (Header{}) {
		t.Fatalf("err %v, untrusted header kept: %+v", err, p.Header)
	}
}

// TestNoAllocsPerMessage: a warm Decoder allocates the same (nothing) for
// 40 and for 400 messages.
func TestNoAllocsPerMessage(t *testing.T) {
	allocs := func(n int) float64 {
		pkg := typicalPackage(t, n)
		var d Decoder
		var p Package
		if err := d.Decode(pkg, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Messages) != n {
			t.Fatalf("%d of %d messages kept", len(p.Messages), n)
		}
		return testing.AllocsPerRun(100, func() {
			if err := d.Decode(pkg, &p); err != nil {
				t.Fatal(err)
			}
		})
	}
	a40, a400 := allocs(40), allocs(400)
	if a40 != a400 {
		t.Fatalf("allocs per decode: %v for 40 messages, %v for 400", a40, a400)
	}
	if a40 != 0 {
		t.Fatalf("a warm decoder allocates %v times per package", a40)
	}
}

// TestContentCRCDirect checks the table-driven content CRC against the CRC
// of the masked payload, computed directly.
func TestContentCRCDirect(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for range 5000 {
		version := uint8(1 + r.IntN(2))
		m := randMessage(r, version, base)
		p := payload(t, version, base, m)
		masked := bytes.Clone(p)
		masked[0] &= 0xf0
		masked[1], masked[2] = 0, 0
		masked[3] &= 0x3f
		got := mustDecode(t, mustEncode(t, Header{Version: version, DeviceID: 1, BaseTimeMs: base}, m)).Messages[0].ContentCRC
		if want := crc(masked); got != want {
			t.Fatalf("%+v: content CRC %#x, want %#x", m, got, want)
		}
	}
}

// TestReasonValuesStable pins the numeric values, which records store.
func TestReasonValuesStable(t *testing.T) {
	words := []string{"none", "truncated", "bad_magic", "unsupported_version", "header_crc",
		"bad_flags", "zero_device", "bad_count", "too_large", "trailing_bytes", "bad_compression",
		"count_mismatch", "message_crc", "bad_length", "unknown_type", "out_of_range",
		"stale_timestamp", "future_timestamp"}
	for i, w := range words {
		if Reason(i).String() != w {
			t.Fatalf("Reason(%d) = %s, was %s: values are stored in records and must not change", i, Reason(i), w)
		}
	}
}
