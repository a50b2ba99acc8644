package protocol

import (
	"bytes"
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
			r := records{body: body, msgs: make([]Message, n), specs: &payloadSpecs[h.Version&1], crcTables: &crcTables, version: h.Version, base: h.BaseTimeMs}
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
