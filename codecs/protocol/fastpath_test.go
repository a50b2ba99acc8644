package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestShortCRCTables checks the short-payload CRC tables (shortcrc.go),
// crc4At, crc2At, crc1At and offsetCRC against hash/crc32, for every length
// from 1 to 16.
func TestShortCRCTables(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 16; n++ {
		for range 2000 {
			var q [16]byte
			for j := range q {
				q[j] = byte(r.Uint32()) // bytes past n too: they must not count
			}
			got := crcInit[n]
			j := 0
			for ; j+4 <= n; j += 4 {
				got ^= crc4At(&crcTables, &q, n, j)
			}
			if j+2 <= n {
				got ^= crc2At(&crcTables, &q, n, j)
				j += 2
			}
			if j < n {
				got ^= crc1At(&crcTables, &q, n, j)
			}
			got = ^got
			if want := crc(q[:n]); got != want {
				t.Fatalf("n %d, payload %x: table CRC %#x, want %#x", n, q[:n], got, want)
			}
			if n < 4 {
				continue
			}
			masked := q
			masked[0] &= 0xf0
			masked[1], masked[2] = 0, 0
			masked[3] &= 0x3f
			if got, want := got^offsetCRC(&crcTables, &q, n), crc(masked[:n]); got != want {
				t.Fatalf("n %d, payload %x: content CRC %#x, want %#x", n, q[:n], got, want)
			}
		}
	}
}

// TestFastPathTakesTypicalPackages: fastRecords decodes every record of a
// typical package, compressed or not, the last ones included; otherwise the
// benchmark would measure the reference path.
func TestFastPathTakesTypicalPackages(t *testing.T) {
	for _, n := range []int{1, 40, 400, 4096} {
		for _, flags := range []uint8{0, FlagSnappy} {
			pkg := typicalPackage(t, n)
			if flags == 0 {
				p := mustDecode(t, pkg)
				h := p.Header
				h.Flags = 0
				var err error
				if pkg, err = Encode(h, p.Messages); err != nil {
					t.Fatal(err)
				}
			}
			var d Decoder
			h, perr := checkHeader(pkg)
			if perr != nil {
				t.Fatal(perr)
			}
			body := pkg[h.Len():len(pkg):len(pkg)]
			if flags != 0 {
				if body, perr = d.decompress(body); perr != nil {
					t.Fatal(perr)
				}
			}
			d.resetTable(n)
			r := d.newRecords(h, body, make([]Message, n))
			if i := d.fastRecords(&r, 0, n); i != n || r.off != len(body) || r.kept != n {
				// An uncompressed body has no spare bytes after it: its last
				// record may be left to the reference path.
				if flags != 0 || i < n-1 {
					t.Fatalf("%d messages, flags %d: fastRecords stopped at record %d of %d", n, flags, i, n)
				}
			}
		}
	}
}

// decodeBoth decodes pkg with the fast path and with the reference path
// alone, and fails if they disagree in any way.
func decodeBoth(t *testing.T, fast *Decoder, pkg []byte) {
	t.Helper()
	var pf, ps Package
	slow := Decoder{slowOnly: true}
	ef := fast.Decode(pkg, &pf)
	es := slow.Decode(pkg, &ps)
	var pef, pes *PackageError
	if errors.As(ef, &pef) != errors.As(es, &pes) || (pef != nil && (pef.Reason != pes.Reason || pef.Check != pes.Check)) {
		t.Fatalf("package %x: fast path %v, reference path %v", pkg, ef, es)
	}
	if !reflect.DeepEqual(pf.Header, ps.Header) || pf.IntraPackageDuplicates != ps.IntraPackageDuplicates ||
		!equalRejections(pf.Rejected, ps.Rejected) || len(pf.Messages) != len(ps.Messages) {
		t.Fatalf("package %x:\nfast path %+v\nreference %+v", pkg, pf, ps)
	}
	for i := range pf.Messages {
		if pf.Messages[i] != ps.Messages[i] {
			t.Fatalf("package %x, message %d:\nfast path %+v\nreference %+v", pkg, i, pf.Messages[i], ps.Messages[i])
		}
	}
}

// TestFastPathMatchesReference decodes random packages, mostly good records
// with every kind of bad or duplicate one mixed in, with the fast path and
// with the reference path alone, and compares everything.
func TestFastPathMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var fast Decoder // reused, as in production
	for _, v := range loadVectors(t) {
		decodeBoth(t, &fast, v.pkg)
	}
	for iter := range 3000 {
		version := uint8(1 + r.IntN(2))
		base := uint64(1763900000000)
		n := 1 + r.IntN(60)
		var body []byte
		var payloads [][]byte
		for range n {
			var p []byte
			switch k := r.IntN(20); {
			case k == 0 && len(payloads) > 0: // an exact copy
				p = payloads[r.IntN(len(payloads))]
			case k == 1 && len(payloads) > 0: // a different payload, same CRC
				if q := payloads[r.IntN(len(payloads))]; len(q) >= 5 {
					p = forgeSameCRC(q)
				}
			case k == 2: // random bytes, any short length
				p = make([]byte, r.IntN(20))
				for j := range p {
					p[j] = byte(r.Uint32())
				}
			case k == 3: // a good payload one byte too long or short
				p = payload(t, version, base, randMessage(r, version, base))
				if r.IntN(2) == 0 {
					p = append(p, 0)
				} else {
					p = p[:len(p)-1]
				}
			case k == 4: // padding bits set
				p = payload(t, version, base, randMessage(r, version, base))
				p[len(p)-1] |= 1
			}
			if p == nil {
				p = payload(t, version, base, randMessage(r, version, base))
			}
			payloads = append(payloads, p)
			if r.IntN(25) == 0 {
				body = AppendRecordCRC(body, p, crc(p)^uint32(1+r.IntN(1<<20)))
			} else {
				body = AppendRecord(body, p)
			}
		}
		flags := uint8(r.IntN(2))
		h := Header{Version: version, Flags: flags, DeviceID: 7, BaseTimeMs: base, MessageCount: uint16(n)}
		pkg := AssemblePackage(nil, h, body)
		decodeBoth(t, &fast, pkg)
		if iter%10 == 0 { // and a framing error
			h.MessageCount = uint16(n + 1 - 2*r.IntN(2))
			if h.MessageCount > 0 {
				decodeBoth(t, &fast, AssemblePackage(nil, h, body))
			}
		}
		if iter%10 == 1 { // and a payload that runs past the end
			decodeBoth(t, &fast, AssemblePackage(nil, h, body[:len(body)-1-r.IntN(min(len(body), 8))]))
		}
	}
	// Typical packages, and the same with one byte of one payload changed.
	for _, n := range []int{40, 400} {
		pkg := typicalPackage(t, n)
		decodeBoth(t, &fast, pkg)
		p := mustDecode(t, pkg)
		h := p.Header
		h.Flags = 0
		raw, err := Encode(h, p.Messages)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			q := bytes.Clone(raw)
			q[HeaderLenV2+r.IntN(len(q)-HeaderLenV2)] ^= byte(1 + r.IntN(255))
			decodeBoth(t, &fast, q)
		}
	}
}

// TestFastPathConstants checks the constants fastLoop uses for each kept
// type and version against their definitions: the padding masks against
// payloadSpecs, and the content CRC bases against hash/crc32.
func TestFastPathConstants(t *testing.T) {
	for _, c := range []struct {
		version      uint8
		typ          MsgType
		padHi, padLo uint64
		base         uint32
	}{
		{2, TypeGPS, 0, padGPS2, contentBaseGPS2},
		{1, TypeGPS, 0, padGPS1, contentBaseGPS1},
		{1, TypeAccel, 0, padAccel, contentBaseAccel},
		{2, TypeAccel, 0, padAccel, contentBaseAccel},
		{1, TypeEngine, padEngine, 0, contentBaseEngine},
		{2, TypeEngine, padEngine, 0, contentBaseEngine},
		{1, TypeEvent, padEvent, 0, contentBaseEvent},
		{2, TypeEvent, padEvent, 0, contentBaseEvent},
		{2, TypeBattery, padBattery, 0, contentBaseBattery},
	} {
		spec := payloadSpecs[c.version&1][c.typ]
		if spec.padHi != c.padHi || spec.padLo != c.padLo {
			t.Errorf("version %d %v: padding %#x:%#x, spec %#x:%#x", c.version, c.typ, c.padHi, c.padLo, spec.padHi, spec.padLo)
		}
		p := make([]byte, spec.len)
		p[0] = byte(c.typ) << 4
		if want := crc(p); c.base != want {
			t.Errorf("version %d %v: content base %#08x, want %#08x", c.version, c.typ, c.base, want)
		}
	}
}

// TestFastPathEveryTypeAndLength decodes, with both paths, a record of
// every type (0-15) at every payload length from 0 to 17 in both versions,
// with random content, with clean padding and with every padding bit of its
// type set in turn:
// the fast path's per-case length and padding checks must leave exactly
// what the reference path rejects.
func TestFastPathEveryTypeAndLength(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var fast Decoder
	for _, version := range []uint8{1, 2} {
		for typ := range 16 {
			for n := range 18 {
				var variants [][]byte
				for range 3 {
					p := make([]byte, n)
					for j := range p {
						p[j] = byte(r.Uint32())
					}
					if n > 0 {
						p[0] = byte(typ)<<4 | p[0]&0x0f
					}
					variants = append(variants, p)
				}
				// A payload with clean padding, then each padding bit set,
				// for the type at this length in either version (a version
				// 1 battery or a version 2 GPS of 14 bytes must be left to
				// the reference path too).
				for _, spec := range []payloadSpec{payloadSpecs[0][typ], payloadSpecs[1][typ]} {
					if spec.len != n || n == 0 {
						continue
					}
					hi, lo := load128(variants[0])
					hi &^= spec.padHi
					lo &^= spec.padLo
					clean := make([]byte, 16)
					binary.BigEndian.PutUint64(clean, hi)
					binary.BigEndian.PutUint64(clean[8:], lo)
					variants = append(variants, clean[:n])
					for bit := range 128 {
						var set bool
						if bit < 64 {
							set = spec.padHi&(1<<(63-bit)) != 0
						} else {
							set = spec.padLo&(1<<(127-bit)) != 0
						}
						if set {
							p := bytes.Clone(clean[:n])
							p[bit/8] |= 0x80 >> (bit % 8)
							variants = append(variants, p)
						}
					}
				}
				for _, p := range variants {
					// The record between two good ones, so that the fast
					// path is running when it reaches it.
					m := randMessage(r, version, 1763900000000)
					good := payload(t, version, 1763900000000, m)
					var body []byte
					body = AppendRecord(body, good)
					body = AppendRecord(body, p)
					body = AppendRecord(body, forgeSameCRC(good))
					for _, flags := range []uint8{0, FlagSnappy} {
						h := Header{Version: version, Flags: flags, DeviceID: 7, BaseTimeMs: 1763900000000, MessageCount: 3}
						decodeBoth(t, &fast, AssemblePackage(nil, h, body))
					}
				}
			}
		}
	}
}
