package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strconv"
	"testing"
)

// parseJSON decodes a vector's JSON with numbers kept exact.
func parseJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// num returns a JSON number as a uint64, or as an int64 when negative.
func num(t *testing.T, where string, v any) (u uint64, i int64, neg bool) {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%s: %v is not a number", where, v)
	}
	if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
		return u, int64(u), false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return 0, i, true
}

// eqNum fails unless the JSON number v equals got.
func eqNum[T ~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64](t *testing.T, where string, v any, got T) {
	t.Helper()
	u, i, neg := num(t, where, v)
	if neg {
		if int64(got) != i {
			t.Errorf("%s = %d, want %d", where, got, i)
		}
		return
	}
	if got < 0 || uint64(got) != u {
		t.Errorf("%s = %d, want %d", where, got, u)
	}
}

// fieldsByType lists, by the spec, the typed fields of each message type's
// JSON object (v2 adds hdop_d and satellites to gps).
var fieldsByType = map[string][]string{
	"gps":     {"lat_e7", "lon_e7", "speed_dkmh", "heading_deg"},
	"accel":   {"x_mg", "y_mg", "z_mg"},
	"engine":  {"rpm", "coolant_raw", "fuel_pct"},
	"event":   {"code", "severity"},
	"battery": {"millivolts"},
}

// checkMessage compares a decoded message with a vector's message object,
// every key of it, and fails if the object lacks a field of its type.
func checkMessage(t *testing.T, where string, version uint8, m *Message, want map[string]any) {
	t.Helper()
	typ, _ := want["type"].(string)
	if m.Type.String() != typ {
		t.Errorf("%s: type %s, want %q", where, m.Type, typ)
		return
	}
	expect := append([]string{"type", "time_ms", "crc"}, fieldsByType[typ]...)
	if typ == "gps" && version == 2 {
		expect = append(expect, "hdop_d", "satellites")
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sort.Strings(expect)
	if !reflect.DeepEqual(keys, expect) {
		t.Errorf("%s: vector keys %v, want the spec's %v", where, keys, expect)
	}
	for _, k := range keys {
		v := want[k]
		w := where + "." + k
		switch k {
		case "type":
		case "time_ms":
			eqNum(t, w, v, m.TimeMs)
		case "crc":
			eqNum(t, w, v, m.CRC)
		case "lat_e7":
			eqNum(t, w, v, m.LatE7)
		case "lon_e7":
			eqNum(t, w, v, m.LonE7)
		case "speed_dkmh":
			eqNum(t, w, v, m.SpeedDkmh)
		case "heading_deg":
			eqNum(t, w, v, m.HeadingDeg)
		case "hdop_d":
			eqNum(t, w, v, m.HdopD)
		case "satellites":
			eqNum(t, w, v, m.Satellites)
		case "x_mg":
			eqNum(t, w, v, m.XMg)
		case "y_mg":
			eqNum(t, w, v, m.YMg)
		case "z_mg":
			eqNum(t, w, v, m.ZMg)
		case "rpm":
			eqNum(t, w, v, m.RPM)
		case "coolant_raw":
			eqNum(t, w, v, m.CoolantRaw)
		case "fuel_pct":
			eqNum(t, w, v, m.FuelPct)
		case "code":
			eqNum(t, w, v, m.Code)
		case "severity":
			eqNum(t, w, v, m.Severity)
		case "millivolts":
			eqNum(t, w, v, m.Millivolts)
		default:
			t.Errorf("%s: key not checked by this test", w)
		}
	}
	// Fields of other types (and v2 fields in v1) must be zero.
	z := Message{Type: m.Type, OffsetMs: m.OffsetMs, TimeMs: m.TimeMs, CRC: m.CRC, ContentCRC: m.ContentCRC}
	switch m.Type {
	case TypeGPS:
		z.LatE7, z.LonE7, z.SpeedDkmh, z.HeadingDeg, z.HdopD, z.Satellites = m.LatE7, m.LonE7, m.SpeedDkmh, m.HeadingDeg, m.HdopD, m.Satellites
		if version == 1 {
			z.HdopD, z.Satellites = 0, 0
		}
	case TypeAccel:
		z.XMg, z.YMg, z.ZMg = m.XMg, m.YMg, m.ZMg
	case TypeEngine:
		z.RPM, z.CoolantRaw, z.FuelPct = m.RPM, m.CoolantRaw, m.FuelPct
	case TypeEvent:
		z.Code, z.Severity = m.Code, m.Severity
	case TypeBattery:
		z.Millivolts = m.Millivolts
	}
	if *m != z {
		t.Errorf("%s: fields of other types are set: %+v", where, *m)
	}
}

// checkVector compares a decoding result with a vector's JSON, key by key,
// failing on any key it does not know.
func checkVector(t *testing.T, p *Package, err error, want map[string]any) {
	t.Helper()
	if word, ok := want["reject"]; ok {
		if len(want) != 1 {
			t.Errorf("reject vector has other keys: %v", want)
		}
		wr, perr := ParseReason(word.(string))
		if perr != nil {
			t.Fatal(perr)
		}
		var pe *PackageError
		if !errors.As(err, &pe) {
			t.Fatalf("err = %v, want package rejection %s", err, wr)
		}
		if pe.Reason != wr {
			t.Errorf("rejected with %s (%v), want %s", pe.Reason, err, wr)
		}
		return
	}
	if err != nil {
		t.Fatalf("err = %v, want an accepted package", err)
	}
	h := &p.Header
	if _, ok := want["firmware"]; !ok && (h.Version != 1 || h.Firmware != 0) {
		t.Errorf("no firmware in vector, but version %d firmware %d", h.Version, h.Firmware)
	}
	for k, v := range want {
		switch k {
		case "version":
			eqNum(t, k, v, h.Version)
		case "flags":
			eqNum(t, k, v, h.Flags)
		case "device_id":
			if s, _ := v.(string); s != strconv.FormatUint(h.DeviceID, 10) {
				t.Errorf("device_id = %d, want %v", h.DeviceID, v)
			}
		case "package_seq":
			eqNum(t, k, v, h.PackageSeq)
		case "base_time_ms":
			eqNum(t, k, v, h.BaseTimeMs)
		case "firmware":
			if h.Version != 2 {
				t.Errorf("firmware in a version %d vector", h.Version)
			}
			eqNum(t, k, v, h.Firmware)
		case "message_count":
			eqNum(t, k, v, h.MessageCount)
		case "intra_package_duplicates":
			eqNum(t, k, v, p.IntraPackageDuplicates)
		case "messages":
			ms, _ := v.([]any)
			if len(ms) != len(p.Messages) {
				t.Errorf("%d messages, want %d", len(p.Messages), len(ms))
				continue
			}
			for i, mv := range ms {
				obj, _ := mv.(map[string]any)
				checkMessage(t, "messages["+strconv.Itoa(i)+"]", h.Version, &p.Messages[i], obj)
			}
		case "rejected":
			rs, _ := v.([]any)
			if len(rs) != len(p.Rejected) {
				t.Errorf("rejected = %v, want %v", p.Rejected, rs)
				continue
			}
			for i, rv := range rs {
				obj, _ := rv.(map[string]any)
				if len(obj) != 2 {
					t.Errorf("rejected[%d]: keys %v, want index and reason", i, obj)
				}
				eqNum(t, "rejected index", obj["index"], p.Rejected[i].Index)
				if s, _ := obj["reason"].(string); s != p.Rejected[i].Reason.String() {
					t.Errorf("rejected[%d].reason = %s, want %v", i, p.Rejected[i].Reason, obj["reason"])
				}
			}
		default:
			t.Errorf("vector key %q not checked by this test", k)
		}
	}
	if n := len(p.Messages) + len(p.Rejected) + p.IntraPackageDuplicates; n != int(h.MessageCount) {
		t.Errorf("kept + rejected + duplicates = %d, message_count %d", n, h.MessageCount)
	}
}

func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	var shared Decoder // one warm decoder across all vectors
	var sp Package
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			want := parseJSON(t, v.json)
			in := bytes.Clone(v.pkg)
			p, err := Decode(in)
			checkVector(t, p, err, want)
			if !bytes.Equal(in, v.pkg) {
				t.Error("Decode changed its input")
			}
			err = shared.Decode(v.pkg, &sp)
			checkVector(t, &sp, err, want)
		})
	}
}

func TestVectorJSON(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			got, err := MarshalVectorJSON(Decode(v.pkg))
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, got)
			}
			if err := json.Unmarshal(v.json, &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("got\n%s\nwant\n%s", got, v.json)
			}
		})
	}
}

func TestMarshalVectorJSONRejectsOtherErrors(t *testing.T) {
	if _, err := MarshalVectorJSON(nil, errors.New("boom")); err == nil {
		t.Fatal("a non-protocol error was marshalled")
	}
}

func TestCheckHeaderOnVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			h, herr := CheckHeader(v.pkg)
			p, derr := Decode(v.pkg)
			var dpe, hpe *PackageError
			errors.As(derr, &dpe)
			if errors.As(herr, &hpe) {
				// A header rejection is the decoder's rejection too.
				if dpe == nil || dpe.Reason != hpe.Reason || dpe.Check != hpe.Check {
					t.Fatalf("CheckHeader: %v; Decode: %v", herr, derr)
				}
				if hpe.Check < 1 || hpe.Check > 4 {
					t.Fatalf("CheckHeader failed check %d", hpe.Check)
				}
				if hpe.HeaderTrusted() != (hpe.Check >= 3) {
					t.Fatal("HeaderTrusted disagrees with Check")
				}
				if !hpe.HeaderTrusted() && h != (Header{}) {
					t.Fatalf("untrusted header returned: %+v", h)
				}
				if hpe.HeaderTrusted() && h.DeviceID != 4242 && hpe.Reason != ReasonZeroDevice {
					t.Fatalf("trusted header lacks the device id: %+v", h)
				}
				return
			}
			if herr != nil {
				t.Fatalf("CheckHeader error is not a *PackageError: %v", herr)
			}
			if dpe != nil && dpe.Check < 5 {
				t.Fatalf("CheckHeader passed, Decode failed check %d: %v", dpe.Check, derr)
			}
			if derr == nil && p.Header != h {
				t.Fatalf("CheckHeader header %+v, Decode header %+v", h, p.Header)
			}
		})
	}
}

// TestCheckHeaderGroups pins which vectors fail in which group: the ingest
// edge answers 400 for checks 1-2 and 422 for checks 3-4.
func TestCheckHeaderGroups(t *testing.T) {
	byName := map[string]vector{}
	for _, v := range loadVectors(t) {
		byName[v.name] = v
	}
	cases := []struct {
		name    string
		reason  Reason
		trusted bool
	}{
		{"bad-magic", ReasonBadMagic, false},
		{"unsupported-version", ReasonUnsupportedVersion, false},
		{"truncated-header", ReasonTruncated, false},
		{"header-crc", ReasonHeaderCRC, false},
		{"bad-flags", ReasonBadFlags, true},
		{"zero-device", ReasonZeroDevice, true},
		{"zero-count", ReasonBadCount, true},
		{"truncated-body", ReasonTruncated, true},
		{"trailing-bytes", ReasonTrailingBytes, true},
	}
	for _, c := range cases {
		v, ok := byName[c.name]
		if !ok {
			t.Fatalf("vector %s missing", c.name)
		}
		_, err := CheckHeader(v.pkg)
		var pe *PackageError
		if !errors.As(err, &pe) || pe.Reason != c.reason || pe.HeaderTrusted() != c.trusted {
			t.Errorf("%s: CheckHeader = %v (trusted %v), want %s trusted %v", c.name, err, pe != nil && pe.HeaderTrusted(), c.reason, c.trusted)
		}
	}
	for _, name := range []string{"bad-compression", "count-mismatch-long", "decompression-bomb", "v2-all-types"} {
		if _, err := CheckHeader(byName[name].pkg); err != nil {
			t.Errorf("%s: CheckHeader = %v, want nil (body checks are not its job)", name, err)
		}
	}
}
