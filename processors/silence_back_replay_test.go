package processors_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
)

// A silent device's package raises device_back in the callback that also
// writes its state. When the state write is acknowledged and the alert's
// emit is refused, the record is replayed (by the runner restarting the
// group in place, or by a new one on the same folder) and found applied:
// it must raise its device_back again all the same.
func TestDeviceBackRaisedAgainOnReplay(t *testing.T) {
	for _, f := range tableFaults { // the alerts topic refuses the same ways
		t.Run(f.name, func(t *testing.T) { testDeviceBackReplay(t, f.err, f.count) })
	}
}

func testDeviceBackReplay(t *testing.T, fault *kerr.Error, count int) {
	// A threshold long enough that the device is not silent again before
	// the replay is checked; the wall clock as the clock.
	b, k, p := startPipelineWith(t, processors.Config{Partitions: 1, Silence: 3 * time.Second})
	dir, key := t.TempDir(), strconv.Itoa(device)
	pkg := func(raw int64) records.Readings {
		rs := oneReading(raw)
		rs.ReceivedMs = time.Now().UnixMilli()
		return rs
	}

	run := startGroup(t, k, p, processors.GroupDeviceState, dir)
	first := pkg(1)
	send(t, k, p.Normalized, key, first)
	waitUntil(t, func() error {
		if a := readAlerts(t, k, p); len(a) != 1 || a[0].Kind != records.AlertSilent {
			return fmt.Errorf("alerts %+v, want one device_silent", a)
		}
		return nil
	})

	refused := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: p.Alerts.Name(), Err: fault, Count: count})
	back := pkg(2)
	send(t, k, p.Normalized, key, back)
	run = replayAfterFailure(t, refused, count, run, func() *groupRun { return startGroup(t, k, p, processors.GroupDeviceState, dir) })
	run.stop(t)

	want := records.Alert{DeviceID: device, Kind: records.AlertBack, TimeMs: uint64(back.ReceivedMs), SinceMs: uint64(first.ReceivedMs)}
	var backs []records.Alert
	for _, a := range readAlerts(t, k, p) {
		if a.Kind == records.AlertBack {
			backs = append(backs, a)
		}
	}
	if len(backs) != 1 || backs[0] != want {
		t.Errorf("device_back alerts %+v, want %+v once", backs, want)
	}
}

// readAlerts reads the alerts topic (one partition).
func readAlerts(t *testing.T, k topology.Kafka, p *processors.Pipeline) []records.Alert {
	t.Helper()
	var out []records.Alert
	for _, r := range readTopic(t, k, p.Alerts.Name()) {
		a, err := p.Alerts.Codec().Decode(r.value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}
