package processors_test

import (
	"context"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

const hourMs = records.SummaryWindowMs

// fixAt is a GPS reading of device at message time ms.
func fixAt(device, ms uint64, lat, speed float64) records.Reading {
	return records.Reading{DeviceID: device, TimeMs: ms, ContentCRC: uint32(ms), Type: protocol.TypeGPS, LatDeg: lat, LonDeg: 8, SpeedKmh: speed}
}

// The summaries group emits each device's hour once, when stream time (the
// partition's newest message time) passes its end plus 10 minutes, with
// what Summarize makes of its readings; a record without readings moves
// no stream time (its Kafka timestamp is far ahead), a late reading is
// left out of the closed window and not dead-lettered, and the next hour
// stays open in the windowed table.
func TestSummariesGroupEmitsClosedWindows(t *testing.T) {
	p := processors.New(processors.Config{})
	d := topologytest.New(t, p.Topology, processors.GroupSummaries)
	w0 := uint64(baseTime) - uint64(baseTime)%hourMs
	key := strconv.Itoa(device)
	send := func(offset int64, items ...records.Reading) {
		rs := records.Readings{DeviceID: device, Items: items, RawOffset: offset, Part: 0, ReceivedMs: int64(w0 + 5*hourMs)}
		// The Kafka timestamp is hours after the message times: only the
		// readings' times may count.
		topologytest.SendAt(d, p.Normalized, key, time.UnixMilli(int64(w0+5*hourMs)), rs)
	}
	a, b, c := fixAt(device, w0+1000, 47.0, 20), fixAt(device, w0+3000, 47.01, 60), fixAt(device, w0+2000, 47.005, 40)
	send(1, a, b)
	send(2, c)
	send(2, c)                                            // a replay of the same package: applied once
	send(3)                                               // no readings
	send(4, fixAt(device, w0+hourMs+9*60_000, 47.02, 10)) // within the grace: hour 0 stays open
	if got := topologytest.Read(d, p.Summaries); len(got) != 0 {
		t.Fatalf("summaries before any window closed: %+v", got)
	}
	send(5, fixAt(device, w0+hourMs+10*60_000, 47.03, 10)) // stream time reaches end + grace
	send(6, fixAt(device, w0+4000, 47.04, 99))             // late for hour 0

	want := processors.InitSummary(device, w0)
	for _, r := range []records.Reading{a, b, c} {
		processors.AddReading(&want, &r)
	}
	got := topologytest.Read(d, p.Summaries)
	if len(got) != 1 || !reflect.DeepEqual(got[0].Value, processors.Summarize(&want)) {
		t.Fatalf("summaries = %+v, want one: %+v", got, processors.Summarize(&want))
	}
	if s := got[0].Value; s.Messages != 3 || s.DistanceM == 0 || s.MaxSpeedKmh != 60 {
		t.Errorf("summary %+v", s)
	}
	if dl := topologytest.Read(d, p.DeadLetters); len(dl) != 0 {
		t.Errorf("dead letters: %+v", dl)
	}
	ws := topologytest.Windows(d, p.SummaryWindows, key, time.UnixMilli(int64(w0)), time.UnixMilli(int64(w0+3*hourMs)))
	if len(ws) != 2 || !ws[0].Closed || ws[1].Closed || ws[1].Value.Messages != 2 {
		t.Fatalf("windows = %+v, want hour 0 closed and hour 1 open with 2 readings", ws)
	}

	// The view's open window comes from the same windows.
	open := processors.OpenSummaries{Windows: p.SummaryWindows, Source: windowsOf(d, p.SummaryWindows),
		Now: func() time.Time { return time.UnixMilli(int64(w0 + hourMs)) }}
	s, ok, err := open.OpenSummary(context.Background(), device)
	if err != nil || !ok || s.WindowStartMs != w0+hourMs || s.Messages != 2 {
		t.Fatalf("open summary = %+v, %v, %v", s, ok, err)
	}
	if _, ok, err := open.OpenSummary(context.Background(), device+1); ok || err != nil {
		t.Errorf("an unknown device has an open window (%v)", err)
	}
}

// windowsOf is a topology.WindowSource over the driver's windows of w.
func windowsOf[A any](d *topologytest.Driver, w topology.Windowed[A]) topology.WindowSource {
	return driverWindows[A]{d: d, w: w}
}

type driverWindows[A any] struct {
	d *topologytest.Driver
	w topology.Windowed[A]
}

func (s driverWindows[A]) FetchWindows(_, key string, from, to time.Time) ([]topology.StoredWindow, error) {
	var out []topology.StoredWindow
	for _, v := range topologytest.Windows(s.d, s.w, key, from, to) {
		b, err := records.SummaryAccCodec{}.Encode(any(v.Value).(records.SummaryAcc))
		if err != nil {
			return nil, err
		}
		out = append(out, topology.StoredWindow{Window: v.Window, Closed: v.Closed, Value: b})
	}
	return out, nil
}

// A device the edge receives nothing from for the silence threshold (wall
// clock) gets one device_silent alert, however long the silence lasts, and
// one device_back when it sends again; the device state counts both.
func TestDeviceStateRaisesSilentAndBack(t *testing.T) {
	p := processors.New(processors.Config{Silence: 10 * time.Minute})
	d := topologytest.New(t, p.Topology, processors.GroupDeviceState)
	key := strconv.Itoa(device)
	offset := int64(0)
	receive := func() {
		offset++
		topologytest.Send(d, p.Normalized, key, records.Readings{DeviceID: device, RawOffset: offset, Part: -1,
			ReceivedMs: d.Now().UnixMilli(), Items: []records.Reading{fixAt(device, uint64(d.Now().UnixMilli()), 47, 10)}})
	}
	kinds := func() []records.AlertKind {
		var out []records.AlertKind
		for _, r := range topologytest.Read(d, p.Alerts) {
			out = append(out, r.Value.Kind)
		}
		return out
	}
	receive()
	first := d.Now()
	d.AdvanceWall(9 * time.Minute)
	receive() // moves the timer
	d.AdvanceWall(9 * time.Minute)
	if k := kinds(); len(k) != 0 {
		t.Fatalf("alerts before the threshold passed: %v", k)
	}
	d.AdvanceWall(2 * time.Minute)
	alerts := topologytest.Read(d, p.Alerts)
	if len(alerts) != 1 || alerts[0].Value.Kind != records.AlertSilent ||
		alerts[0].Value.SinceMs != uint64(first.Add(9*time.Minute).UnixMilli()) {
		t.Fatalf("alerts = %+v, want one device_silent since the second package", alerts)
	}
	d.AdvanceWall(time.Hour)
	if k := kinds(); len(k) != 0 {
		t.Fatalf("more alerts while silent: %v", k)
	}
	receive()
	alerts = topologytest.Read(d, p.Alerts)
	if len(alerts) != 1 || alerts[0].Value.Kind != records.AlertBack || alerts[0].Value.TimeMs != uint64(d.Now().UnixMilli()) {
		t.Fatalf("alerts = %+v, want one device_back", alerts)
	}
	st, _ := topologytest.TableValue(d, p.DeviceState, key)
	if st.SilentAlerts != 1 || st.BackAlerts != 1 || st.Silent {
		t.Errorf("state: silent %d back %d silent-now %v", st.SilentAlerts, st.BackAlerts, st.Silent)
	}
	d.AdvanceWall(11 * time.Minute)
	if k := kinds(); len(k) != 1 || k[0] != records.AlertSilent {
		t.Errorf("after the return, a new silence raised %v", k)
	}
}
