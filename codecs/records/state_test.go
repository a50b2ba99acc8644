package records

import (
	"reflect"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
)

func TestDeviceStateRoundTrip(t *testing.T) {
	s := DeviceState{DeviceID: 1<<64 - 1, Messages: 10, Duplicates: 2, Invalid: 3, PackagesRejected: 1, LastSeenMs: 1700000000123, Version: 2, Firmware: 0x0102}
	s.Observe(Reading{DeviceID: s.DeviceID, TimeMs: 5, Type: protocol.TypeGPS, LatDeg: 52.5, LonDeg: -13.25, SpeedKmh: 88.8, HeadingDeg: 359, Hdop: 1.2, Satellites: 9})
	s.Observe(Reading{DeviceID: s.DeviceID, TimeMs: 6, Type: protocol.TypeBattery, BatteryV: 12.345})
	s.Observe(Reading{DeviceID: s.DeviceID, TimeMs: 7, Type: protocol.TypeAccel, XG: -1.5, YG: 0.001, ZG: 16})
	b, err := DeviceStateCodec{}.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DeviceStateCodec{}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
	if got.Latest[0].Type != protocol.TypeGPS || got.Latest[1].Type != protocol.TypeAccel || got.Latest[2].Type != protocol.TypeBattery {
		t.Errorf("latest not ordered by type: %+v", got.Latest)
	}
}

// A late reading never replaces a newer one.
func TestDeviceStateObserveKeepsNewest(t *testing.T) {
	var s DeviceState
	if !s.Observe(Reading{TimeMs: 100, Type: protocol.TypeEngine, RPM: 1000}) {
		t.Fatal("first reading not taken")
	}
	if s.Observe(Reading{TimeMs: 99, Type: protocol.TypeEngine, RPM: 5}) {
		t.Error("late reading taken")
	}
	if !s.Observe(Reading{TimeMs: 100, Type: protocol.TypeEngine, RPM: 2000}) {
		t.Error("reading of equal time not taken")
	}
	if r, _ := s.LatestOf(protocol.TypeEngine); r.RPM != 2000 || len(s.Latest) != 1 {
		t.Errorf("latest = %+v", s.Latest)
	}
	if _, ok := s.LatestOf(protocol.TypeGPS); ok {
		t.Error("gps reported without one")
	}
}

func FuzzDeviceStateDecode(f *testing.F) {
	b, _ := DeviceStateCodec{}.Encode(DeviceState{DeviceID: 3, Messages: 1, Latest: []Reading{{DeviceID: 3, TimeMs: 9, Type: protocol.TypeEvent, EventCode: 3, Severity: 4}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DeviceStateCodec{}.Decode(b)
		if err != nil {
			return
		}
		again, err := DeviceStateCodec{}.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DeviceStateCodec{}.Decode(again)
		if err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("re-encoded state differs: %v", err)
		}
	})
}
