package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode decodes arbitrary bytes, seeded with the test vectors and a
// typical package, and checks the decoder's promises: no panic, no change
// to the input, every rejection a *PackageError with a known reason,
// agreement with CheckHeader and with the reference path alone, an accepted
// package's records all accounted for, and kept messages that re-encode to
// the same messages.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.pkg)
	}
	f.Add(typicalPackage(f, 40))
	var d Decoder // reused across inputs, as in production
	var p Package
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, &d, &p, b) })
}

// FuzzDecodeBody fuzzes the body behind a header with a valid CRC, which
// random mutations of whole packages rarely produce: the fuzzer's bytes are
// the version, flags, message count and the body, compressed or raw.
func FuzzDecodeBody(f *testing.F) {
	for _, v := range loadVectors(f) {
		h, err := CheckHeader(v.pkg)
		if err != nil {
			continue
		}
		f.Add(h.Version, h.Flags, h.MessageCount, v.pkg[h.Len():])
	}
	var d Decoder
	var p Package
	f.Fuzz(func(t *testing.T, version, flags uint8, count uint16, body []byte) {
		h := Header{Version: 1 + version%2, Flags: flags & FlagSnappy, DeviceID: 4242, PackageSeq: 1,
			BaseTimeMs: 1763900000000, MessageCount: count, BodyLen: uint32(len(body)), Firmware: 0x0203}
		checkDecode(t, &d, &p, append(AppendHeader(nil, h), body...))
	})
}

// checkDecode decodes b with d into p and checks the promises above.
func checkDecode(t *testing.T, d *Decoder, p *Package, b []byte) {
	in := bytes.Clone(b)
	// A slice with no spare capacity: a read past the end panics.
	err := d.Decode(b[:len(b):len(b)], p)
	if !bytes.Equal(in, b) {
		t.Fatal("Decode changed its input")
	}
	if cap(d.body) > MaxBodyLen || len(d.table) > 2*2*MaxMessages {
		t.Fatalf("scratch beyond the spec's limits: body %d, table %d", cap(d.body), len(d.table))
	}
	// The fast path and the reference path alone agree on everything.
	decodeBoth(t, d, b[:len(b):len(b)])
	_, herr := CheckHeader(b)
	var hpe *PackageError
	if herr != nil && !errors.As(herr, &hpe) {
		t.Fatalf("CheckHeader error %v is not a *PackageError", herr)
	}
	if err != nil {
		var pe *PackageError
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *PackageError", err)
		}
		if !pe.Reason.Valid() || pe.Reason >= ReasonMessageCRC || pe.Check < 1 || pe.Check > 6 {
			t.Fatalf("rejection without a proper package reason: %#v", pe)
		}
		if hpe != nil && (hpe.Reason != pe.Reason || hpe.Check != pe.Check) {
			t.Fatalf("CheckHeader %v, Decode %v", herr, err)
		}
		if hpe == nil && pe.Check < 5 {
			t.Fatalf("CheckHeader passed, Decode failed check %d", pe.Check)
		}
		if len(p.Messages)+len(p.Rejected)+p.IntraPackageDuplicates != 0 {
			t.Fatal("a rejected package left messages behind")
		}
		return
	}
	if herr != nil {
		t.Fatalf("CheckHeader %v on an accepted package", herr)
	}
	if n := len(p.Messages) + len(p.Rejected) + p.IntraPackageDuplicates; n != int(p.Header.MessageCount) {
		t.Fatalf("kept %d + rejected %d + duplicates %d != message_count %d",
			len(p.Messages), len(p.Rejected), p.IntraPackageDuplicates, p.Header.MessageCount)
	}
	last := -1
	for _, r := range p.Rejected {
		if r.Index <= last || r.Index >= int(p.Header.MessageCount) {
			t.Fatalf("rejections out of order or range: %v", p.Rejected)
		}
		last = r.Index
		if r.Reason != ReasonMessageCRC && r.Reason != ReasonBadLength && r.Reason != ReasonUnknownType {
			t.Fatalf("record rejected with %s", r.Reason)
		}
	}
	if len(p.Messages) == 0 {
		return
	}
	// Re-encoding the kept messages gives back the same messages, CRCs
	// included (the payloads are rebuilt bit for bit).
	re, err := Encode(p.Header, p.Messages)
	if err != nil {
		t.Fatalf("kept messages do not re-encode: %v", err)
	}
	var d2 Decoder
	var p2 Package
	if err := d2.Decode(re, &p2); err != nil {
		t.Fatalf("re-encoded package rejected: %v", err)
	}
	if len(p2.Messages) != len(p.Messages) || len(p2.Rejected) != 0 || p2.IntraPackageDuplicates != 0 {
		t.Fatalf("re-encoded: kept %d rejected %d dups %d, want %d kept", len(p2.Messages), len(p2.Rejected), p2.IntraPackageDuplicates, len(p.Messages))
	}
	for i := range p.Messages {
		if p.Messages[i] != p2.Messages[i] {
			t.Fatalf("message %d: %+v re-decodes as %+v", i, p.Messages[i], p2.Messages[i])
		}
	}
}
