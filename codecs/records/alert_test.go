package records

import "testing"

func TestAlertRoundTrip(t *testing.T) {
	for _, a := range []Alert{
		{DeviceID: 1<<64 - 1, TimeMs: 1700000000000, ContentCRC: 0xdeadbeef, Kind: AlertEvent, EventCode: 6, Severity: 5},
		{DeviceID: 7, TimeMs: 1, Kind: AlertCoolant, CoolantC: 121},
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
	if AlertEvent.String() != "event" || AlertCoolant.String() != "coolant" {
		t.Error("alert kind names")
	}
}

func FuzzAlertDecode(f *testing.F) {
	b, _ := AlertCodec{}.Encode(Alert{DeviceID: 3, Kind: AlertEvent, EventCode: 3, Severity: 3})
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
