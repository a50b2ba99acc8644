package deadletter

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// The framework's own check of its envelope format (codecs/records holds
// the golden bytes and the fuzz test through its aliases): a round trip
// keeps every field, nil and empty apart, and every cut or longer record is
// refused as corrupt.
func TestEnvelopeRoundTripAndCorruption(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 4, time.UTC)
	e := Envelope{Stage: "sink", Reason: "too_large", Error: "no room", Topic: "in", Partition: 3, Offset: 1 << 40,
		Key: []byte{}, Value: nil, Headers: []Header{{Key: "h", Value: nil}, {Key: "", Value: []byte("v")}},
		Timestamp: at, Attempts: 7, FirstFailure: at.Add(time.Second), LastFailure: at.Add(time.Minute)}
	b, err := Codec{}.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Codec{}.Decode(b)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip: %#v, %v", got, err)
	}
	for n := range len(b) {
		if _, err := (Codec{}).Decode(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("a %d-byte prefix: %v, want ErrCorrupt", n, err)
		}
	}
	if _, err := (Codec{}).Decode(append(b, 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a trailing byte: %v, want ErrCorrupt", err)
	}
	b[0] = Version + 1
	if _, err := (Codec{}).Decode(b); !errors.Is(err, ErrVersion) {
		t.Fatalf("a newer version: %v, want ErrVersion", err)
	}
}
