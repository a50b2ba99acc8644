package records

import "testing"

func TestAlertRoundTrip(t *testing.T) {
	for _, a := range []Alert{
		{DeviceID: 1<<64 - 1, TimeMs: 1700000000000, ContentCRC: 0xdeadbeef, Kind: AlertEvent, EventCode: 6, Severity: 5},
		{DeviceID: 7, TimeMs: 1, Kind: AlertCoolant, CoolantC: 121},
		{DeviceID: 8, TimeMs: 1700000600000, Kind: AlertSilent, SinceMs: 1700000000000},
		{DeviceID: 8, TimeMs: 1700000900000, Kind: AlertBack, SinceMs: 1700000000000},
	} {
		b, err := AlertCodec{}.Encode(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AlertCodec{}.Decode(b)
		if err != nil || got != a {
			t.Fatalf("round trip of %+v: %+v, %v", a, got, err)
		}
		if _, err := (AlertCodec{}).Decode(b[:len(b)-1]); err == nil {
			t.Error("truncated alert decoded")
		}
	}
	if AlertEvent.String() != "event" || AlertCoolant.String() != "coolant" ||
		AlertSilent.String() != "device_silent" || AlertBack.String() != "device_back" || AlertKind(9).String() != "unknown" {
		t.Error("alert kind names")
	}
}

// An alert of format version 1 (before SinceMs) still decodes.
func TestAlertDecodesVersion1(t *testing.T) {
	v1 := []byte{1, 7, 1, 0xde, 0xad, 0xbe, 0xef, byte(AlertEvent), 6, 5, 0, 0, 0, 0, 0, 0, 0, 0}
	got, err := AlertCodec{}.Decode(v1)
	want := Alert{DeviceID: 7, TimeMs: 1, ContentCRC: 0xdeadbeef, Kind: AlertEvent, EventCode: 6, Severity: 5}
	if err != nil || got != want {
		t.Fatalf("version 1: %+v, %v; want %+v", got, err, want)
	}
	if _, err := (AlertCodec{}).Decode(append(v1, 0)); err == nil {
		t.Error("version 1 with a trailing byte decoded")
	}
}

func FuzzAlertDecode(f *testing.F) {
	b, _ := AlertCodec{}.Encode(Alert{DeviceID: 3, Kind: AlertEvent, EventCode: 3, Severity: 3})
	f.Add(b)
	b, _ = AlertCodec{}.Encode(Alert{DeviceID: 3, TimeMs: 900, Kind: AlertSilent, SinceMs: 300})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := AlertCodec{}.Decode(b)
		if err != nil {
			return
		}
		again, _ := AlertCodec{}.Encode(a)
		back, err := AlertCodec{}.Decode(again)
		if err != nil || (back != a && a.CoolantC == a.CoolantC) {
			t.Fatalf("re-encoded alert differs: %+v vs %+v (%v)", back, a, err)
		}
	})
}
