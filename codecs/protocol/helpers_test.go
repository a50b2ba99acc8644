package protocol

import (
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const vectorDir = "testdata/vectors"

// vector is one test vector: NAME.hex decoded, and NAME.json's text.
type vector struct {
	name string
	pkg  []byte
	json []byte
}

// loadVectors reads every vector and fails the test if any file of the
// directory is not part of a NAME.hex + NAME.json pair.
func loadVectors(t testing.TB) []vector {
	t.Helper()
	entries, err := os.ReadDir(vectorDir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if e.IsDir() || (ext != ".hex" && ext != ".json") {
			t.Fatalf("%s: not a vector file (want NAME.hex or NAME.json)", name)
		}
		base := strings.TrimSuffix(name, ext)
		if files[base] == nil {
			files[base] = map[string]bool{}
		}
		files[base][ext] = true
	}
	var names []string
	for base, exts := range files {
		if !exts[".hex"] || !exts[".json"] {
			t.Fatalf("vector %s lacks its .hex or .json file", base)
		}
		names = append(names, base)
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("no vectors")
	}
	var out []vector
	for _, n := range names {
		h, err := os.ReadFile(filepath.Join(vectorDir, n+".hex"))
		if err != nil {
			t.Fatal(err)
		}
		pkg, err := hex.DecodeString(strings.Join(strings.Fields(string(h)), ""))
		if err != nil {
			t.Fatalf("%s.hex: %v", n, err)
		}
		j, err := os.ReadFile(filepath.Join(vectorDir, n+".json"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, vector{name: n, pkg: pkg, json: j})
	}
	return out
}

// randMessage returns a random valid message of a random type for the
// version, with a time within the offset range of base.
func randMessage(r *rand.Rand, version uint8, base uint64) Message {
	types := []MsgType{TypeGPS, TypeAccel, TypeEngine, TypeEvent}
	if version >= 2 {
		types = append(types, TypeBattery)
	}
	m := Message{Type: types[r.IntN(len(types))], TimeMs: base + uint64(r.IntN(MaxTimeOffsetMs+1))}
	switch m.Type {
	case TypeGPS:
		m.LatE7 = int32(r.Uint32())
		m.LonE7 = int32(r.Uint32())
		m.SpeedDkmh = uint16(r.IntN(1 << 12))
		m.HeadingDeg = uint16(r.IntN(1 << 9))
		if version >= 2 {
			m.HdopD = uint8(r.IntN(1 << 8))
			m.Satellites = uint8(r.IntN(1 << 5))
		}
	case TypeAccel:
		m.XMg = int16(r.Uint32())
		m.YMg = int16(r.Uint32())
		m.ZMg = int16(r.Uint32())
	case TypeEngine:
		m.RPM = uint16(r.IntN(1 << 14))
		m.CoolantRaw = uint8(r.IntN(1 << 8))
		m.FuelPct = uint8(r.IntN(1 << 7))
	case TypeEvent:
		m.Code = uint8(r.IntN(1 << 8))
		m.Severity = uint8(r.IntN(1 << 3))
	case TypeBattery:
		m.Millivolts = uint16(r.IntN(1 << 16))
	}
	return m
}

// typicalMessages returns n realistic messages (mostly GPS and accel, some
// engine, events and battery), one every 250 ms from base.
func typicalMessages(r *rand.Rand, n int, base uint64) []Message {
	msgs := make([]Message, n)
	lat, lon := int32(474979530), int32(190402360)
	for i := range msgs {
		m := Message{TimeMs: base + uint64(i)*250}
		switch k := i % 10; {
		case k < 4:
			lat += int32(r.IntN(200) - 100)
			lon += int32(r.IntN(200) - 100)
			m.Type, m.LatE7, m.LonE7 = TypeGPS, lat, lon
			m.SpeedDkmh, m.HeadingDeg, m.HdopD, m.Satellites = uint16(800+r.IntN(100)), uint16(r.IntN(360)), 9, 11
		case k < 8:
			m.Type, m.XMg, m.YMg, m.ZMg = TypeAccel, int16(r.IntN(600)-300), int16(r.IntN(600)-300), int16(1000+r.IntN(20))
		case k == 8:
			m.Type, m.RPM, m.CoolantRaw, m.FuelPct = TypeEngine, uint16(2000+r.IntN(500)), 128, 63
		default:
			if i%20 == 9 {
				m.Type, m.Millivolts = TypeBattery, uint16(12600+r.IntN(100))
			} else {
				m.Type, m.Code, m.Severity = TypeEvent, uint8(1+r.IntN(8)), uint8(r.IntN(6))
			}
		}
		msgs[i] = m
	}
	return msgs
}

// typicalPackage is a version 2 snappy package of n typical messages.
func typicalPackage(t testing.TB, n int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(42, uint64(n)))
	base := uint64(1763900000000)
	h := Header{Version: 2, Flags: FlagSnappy, DeviceID: 4242, PackageSeq: 7, BaseTimeMs: base, Firmware: 515}
	pkg, err := Encode(h, typicalMessages(r, n, base))
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}
