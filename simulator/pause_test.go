package simulator

import (
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// A paused device sends nothing during its pause and again after it; with
// a message clock hours behind Now, the devices' valid messages follow the
// message clock, and a future message is still ahead of Now (rejected as
// future by validation against the receipt).
func TestFleetPauseAndMessageClock(t *testing.T) {
	wall := testNow
	behind := 3 * time.Hour
	f, err := NewFleet(FleetConfig{Seed: 5, Devices: 4, Secret: []byte("s3cret"), Faults: DefaultFaultMix(),
		Now: func() time.Time { return wall }, MessageClock: func() time.Time { return wall.Add(-behind) },
		Pause: Pause{Devices: 1, From: time.Minute, For: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	paused := f.Devices()[0].ID
	sentBy := func(n int) (count int, valid, future int) {
		for range n {
			p := next(t, f)
			if p.Expect.Device == paused && p.ResendOf == 0 {
				count++
			}
			for _, r := range p.Expect.Records {
				if !r.HasMessage {
					continue
				}
				switch {
				case r.Outcome == OutcomeInvalid && r.Reason == protocol.ReasonFutureTimestamp:
					future++
					if r.Message.TimeMs <= uint64(wall.UnixMilli()) {
						t.Fatalf("a future message at %d is not ahead of Now", r.Message.TimeMs)
					}
				case r.Outcome != OutcomeInvalid && r.Message.TimeMs > uint64(wall.Add(-behind+time.Minute).UnixMilli()): // a caught-up clock steps 1 ms a message
					t.Fatalf("a valid message at %d is well ahead of the message clock", r.Message.TimeMs)
				case r.Outcome != OutcomeInvalid && r.Message.TimeMs > staleBeforeTestMs:
					valid++
				}
			}
		}
		return count, valid, future
	}
	if n, valid, _ := sentBy(200); n == 0 || valid == 0 {
		t.Fatalf("before the pause: %d packages of the paused device, %d valid messages", n, valid)
	}
	wall = wall.Add(90 * time.Second)
	if n, _, _ := sentBy(400); n != 0 {
		t.Fatalf("the paused device sent %d packages during its pause", n)
	}
	wall = wall.Add(time.Minute)
	// (Future messages rarely fit a package whose base time is hours
	// behind Now; those that do are checked above.)
	if n, _, _ := sentBy(400); n == 0 {
		t.Fatal("the paused device sent nothing after its pause")
	}
	if _, err := NewFleet(FleetConfig{Devices: 2, Pause: Pause{Devices: 2}}); err == nil {
		t.Error("a pause of every device was accepted")
	}
}

// staleBeforeTestMs is 2020-01-01: stale messages are older.
const staleBeforeTestMs = 1_577_836_800_000

// When a pause ends, the paused devices send the next packages in turn, so
// that a short run or a large fleet still sees them return.
func TestFleetPausedDevicesReturnFirst(t *testing.T) {
	wall := testNow
	f, err := NewFleet(FleetConfig{Seed: 9, Devices: 500, Secret: []byte("s3cret"),
		Now: func() time.Time { return wall }, Pause: Pause{Devices: 2, From: time.Second, For: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	devs := f.Devices()
	wall = testNow.Add(1500 * time.Millisecond) // in the pause
	for range 50 {
		if d := next(t, f).Expect.Device; d == devs[0].ID || d == devs[1].ID {
			t.Fatalf("paused device %d sent during its pause", d)
		}
	}
	wall = testNow.Add(2 * time.Second) // the pause is over
	for i := range ReturnPackages * 2 {
		if d, want := next(t, f).Expect.Device, devs[i%2].ID; d != want {
			t.Fatalf("package %d after the pause came from device %d, want paused device %d", i, d, want)
		}
	}
}
