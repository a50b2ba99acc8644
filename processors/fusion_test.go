package processors_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

func TestParseFusion(t *testing.T) {
	for in, want := range map[string]processors.Fusion{
		"": processors.FuseNone, "none": processors.FuseNone, "all": processors.FuseAll,
		"decode": processors.FuseDecode, "alerts": processors.FuseAlerts, " alerts, decode ": processors.FuseAll,
	} {
		got, err := processors.ParseFusion(in)
		if err != nil || got != want {
			t.Errorf("ParseFusion(%q) = %v, %v; want %v", in, got, err, want)
		}
		back, err := processors.ParseFusion(got.String())
		if err != nil || back != got {
			t.Errorf("ParseFusion(%q.String() = %q) = %v, %v", in, got.String(), back, err)
		}
	}
	if _, err := processors.ParseFusion("decode,sink"); err == nil {
		t.Error("the sink was fused")
	}
}

// The fused pipeline declares neither the decoded topic nor the decode and
// alerts groups; its groups say which stages they run, and each runs on
// its own.
func TestFusedTopology(t *testing.T) {
	p := processors.New(processors.Config{Fuse: processors.FuseAll})
	if err := p.Topology.Validate(); err != nil {
		t.Fatal(err)
	}
	if g := p.Topology.Groups(); !slices.Equal(g, []string{"dedupe", "device-state", "summaries", "sink", "sink-retry"}) {
		t.Errorf("groups = %v", g)
	}
	if slices.Contains(p.Topology.Topics(), processors.TopicDecoded) {
		t.Errorf("topics %v hold %s", p.Topology.Topics(), processors.TopicDecoded)
	}
	for _, g := range p.Topology.Describe().Groups {
		switch g.Group {
		case "dedupe":
			if !strings.Contains(g.Description, "decode+dedupe") || !slices.Contains(g.Inputs, processors.TopicRaw) {
				t.Errorf("dedupe: %+v", g)
			}
		case "device-state":
			if !strings.Contains(g.Description, "alerts+device-state") || !slices.Contains(g.Outputs, processors.TopicAlerts) {
				t.Errorf("device-state: %+v", g)
			}
		}
	}
	if _, err := p.Topology.Select([]string{"decode"}); err == nil {
		t.Error("the fused pipeline selects a decode group")
	}
	// The fused dedupe group runs without the sink's store; the sink
	// does not.
	k := topology.Kafka{Brokers: []string{"unused:9092"}}
	if _, err := topology.NewRunner(builtPlan(t, p.Topology), topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Groups: []string{"dedupe"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := topology.NewRunner(builtPlan(t, p.Topology), topology.RunnerOptions{Kafka: k, DataDir: t.TempDir(), Groups: []string{"sink"}}); !errors.Is(err, topology.ErrMissingResource) {
		t.Fatalf("a runner of the sink without a store: %v, want ErrMissingResource", err)
	}

	// The fused dedupe group alone turns raw packages into readings.
	d := topologytest.New(t, p.Topology, "dedupe")
	d.SendRaw(p.Raw.Name(), strconv.Itoa(device), encode(t, baseTime, 1, gps(baseTime+1000, 1), gps(baseTime+1000, 1)),
		topologytest.Header(edge.HeaderReceivedMs, received.UnixMilli()))
	out := topologytest.Read(d, p.Normalized)
	if len(out) != 1 || len(out[0].Value.Items) != 1 || out[0].Value.Duplicates != 1 || out[0].Key != strconv.Itoa(device) {
		t.Fatalf("normalized = %+v", out)
	}
}

// outcome is everything a run of the pipeline leaves behind that users
// see: stored rows, the view's states, alerts and dead letters.
type outcome struct {
	rows   map[[3]uint64]records.Reading
	states map[string]records.DeviceState
	alerts []string
	// dead counts the dead letters by key, reason, topic, offset and error;
	// stages maps each stage to its count.
	dead   map[string]int
	stages map[string]int
}

// runFleet sends a seeded fleet's packages, every fault included, through
// the pipeline as the edge would: accepted ones to the raw topic, the
// edge's 422s as its dead letters.
func runFleet(t *testing.T, fuse processors.Fusion, packages int) outcome {
	t.Helper()
	f := newFixture(t, processors.Config{Fuse: fuse})
	now := received
	fleet, err := simulator.NewFleet(simulator.FleetConfig{Seed: 42, Devices: 25, Faults: simulator.DefaultFaultMix(),
		Secret: []byte("s"), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for range packages {
		now = now.Add(700 * time.Millisecond)
		pkg, err := fleet.Next()
		if err != nil {
			t.Fatal(err)
		}
		key := strconv.FormatUint(pkg.Expect.Device, 10)
		switch pkg.Expect.Code {
		case 202:
			f.d.SendRaw(f.p.Raw.Name(), key, pkg.Bytes, topologytest.Header(edge.HeaderReceivedMs, now.UnixMilli()))
		case 422:
			topologytest.Send(f.d, f.p.DeadLetters, key, records.Envelope{Stage: processors.StageEdge,
				Reason: pkg.Expect.Reject.String(), Error: "edge", Topic: f.p.Raw.Name(), Partition: -1, Offset: -1,
				Key: []byte(key), Value: pkg.Bytes, Timestamp: now})
		}
	}
	o := outcome{rows: f.store.rows, states: map[string]records.DeviceState{}, dead: map[string]int{}, stages: map[string]int{}}
	for _, k := range topologytest.TableKeys(f.d, f.p.DeviceState) {
		st, _ := topologytest.TableValue(f.d, f.p.DeviceState, k)
		// Replay bookkeeping: keys of envelopes name their stage, and the
		// inputs' order is the order the groups handled them in.
		st.Applied, st.Inputs = nil, nil
		o.states[k] = st
	}
	for _, a := range topologytest.Read(f.d, f.p.Alerts) {
		o.alerts = append(o.alerts, fmt.Sprintf("%s %+v", a.Key, a.Value))
	}
	slices.Sort(o.alerts)
	for _, e := range f.d.DeadLetters() {
		if e.Stage == processors.StageEdge {
			continue // sent by the test
		}
		o.dead[fmt.Sprintf("%s %s %s@%d %s", e.Key, e.Reason, e.Topic, e.Offset, e.Error)]++
		o.stages[e.Stage]++
	}
	return o
}

// On the same simulated input, every fusion leaves the same rows, states,
// alerts and dead letters as the unfused pipeline; only the stage named on
// the decoder's dead letters changes.
func TestFusionKeepsOutcomes(t *testing.T) {
	const packages = 600
	want := runFleet(t, processors.FuseNone, packages)
	var dups, invalid, rejected uint64
	for _, st := range want.states {
		dups, invalid, rejected = dups+st.Duplicates, invalid+st.Invalid, rejected+st.PackagesRejected
	}
	if len(want.rows) == 0 || len(want.alerts) == 0 || dups == 0 || invalid == 0 || rejected == 0 || want.stages["decode"] == 0 {
		t.Fatalf("the fleet did not exercise every outcome: %d rows, %d alerts, duplicates %d, invalid %d, rejected %d, dead letters %v",
			len(want.rows), len(want.alerts), dups, invalid, rejected, want.stages)
	}
	for _, fuse := range []processors.Fusion{processors.FuseDecode, processors.FuseAlerts, processors.FuseAll} {
		t.Run(fuse.String(), func(t *testing.T) {
			got := runFleet(t, fuse, packages)
			if !maps.Equal(got.rows, want.rows) {
				t.Errorf("stored rows differ: %d, unfused %d", len(got.rows), len(want.rows))
			}
			if !maps.EqualFunc(got.states, want.states, func(a, b records.DeviceState) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
				for k, st := range want.states {
					if fmt.Sprint(got.states[k]) != fmt.Sprint(st) {
						t.Errorf("device %s: %+v, unfused %+v", k, got.states[k], st)
					}
				}
			}
			if !slices.Equal(got.alerts, want.alerts) {
				t.Errorf("%d alerts, unfused %d", len(got.alerts), len(want.alerts))
			}
			if !maps.Equal(got.dead, want.dead) {
				t.Errorf("dead letters differ:\n%v\nunfused:\n%v", got.dead, want.dead)
			}
			decoder := "decode"
			if fuse.Has(processors.FuseDecode) {
				decoder = "dedupe"
			}
			if !maps.Equal(got.stages, map[string]int{decoder: want.stages["decode"]}) {
				t.Errorf("dead letters by stage = %v, want %d of %s", got.stages, want.stages["decode"], decoder)
			}
		})
	}
}

// A raw record keyed otherwise than by its header's device is counted
// under the header's device, fused or not.
func TestFusedDecodeRekeysByHeader(t *testing.T) {
	for _, fuse := range []processors.Fusion{processors.FuseNone, processors.FuseDecode} {
		f := newFixture(t, processors.Config{Fuse: fuse})
		pkg := encode(t, baseTime, 1, gps(baseTime+1000, 1), engine(baseTime+2000, 80))
		f.d.SendRaw(f.p.Raw.Name(), "17", pkg, topologytest.Header(edge.HeaderReceivedMs, received.UnixMilli()))
		f.d.SendRaw(f.p.Raw.Name(), "18", pkg, topologytest.Header(edge.HeaderReceivedMs, received.UnixMilli()))
		if st := f.state(); st.Messages != 2 || st.Duplicates != 2 {
			t.Errorf("fusion %s: state %+v", fuse, st)
		}
		if _, ok := topologytest.TableValue(f.d, f.p.DeviceState, "17"); ok {
			t.Errorf("fusion %s: state under the record's key", fuse)
		}
	}
}

// Dead letters of the fused decoder name the dedupe group; the device's
// state counts them, and `watershed dlq replay`, which aims a replay at
// the envelope's stage, reaches the fused group. Replays aimed at the
// decode group of an unfused pipeline reach it too, and the other way
// round.
func TestFusedDecodeDeadLettersAndReplays(t *testing.T) {
	f := newFixture(t, processors.Config{Fuse: processors.FuseAll})
	garbage := []byte{0x05, 0xff, 0xff, 0xff, 0xff, 0xff}
	broken := protocol.AppendHeader(nil, protocol.Header{Version: 2, Flags: protocol.FlagSnappy, DeviceID: device,
		BaseTimeMs: baseTime, MessageCount: 1, BodyLen: uint32(len(garbage))})
	f.send(append(broken, garbage...))
	f.send(encode(t, baseTime, 2, engine(baseTime+4000, 151)))
	dl := f.d.DeadLetters()
	if len(dl) != 2 || dl[0].Stage != "dedupe" || dl[0].Reason != "bad_compression" || dl[0].Topic != processors.TopicRaw || dl[1].Reason != "out_of_range" {
		t.Fatalf("dead letters = %+v", dl)
	}
	if st := f.state(); st.PackagesRejected != 1 || st.Invalid != 1 {
		t.Fatalf("state = %+v", st)
	}
	// A dedupe failure on a loop record is not the device's doing.
	other := dl[0]
	other.Topic, other.Offset = "dedupe-loop", 99
	topologytest.Send(f.d, f.p.DeadLetters, strconv.Itoa(device), other)
	if st := f.state(); st.PackagesRejected != 1 {
		t.Fatalf("a loop record's dead letter was counted: %+v", st)
	}

	for i, target := range []string{dl[0].Stage, processors.GroupDecode} {
		f.d.SendRaw(f.p.Raw.Name(), strconv.Itoa(device), encode(t, baseTime, uint32(10+i), gps(baseTime+uint64(10_000*(i+1)), 1)),
			topologytest.Header(edge.HeaderReceivedMs, received.UnixMilli()),
			topology.Header{Key: topology.HeaderReplayGroup, Value: []byte(target)})
		if st := f.state(); st.Messages != uint64(i+1) {
			t.Fatalf("a replay for %s did not reach the fused group: %+v", target, st)
		}
	}

	u := newFixture(t, processors.Config{})
	u.d.SendRaw(u.p.Raw.Name(), strconv.Itoa(device), encode(t, baseTime, 1, gps(baseTime+1000, 1)),
		topologytest.Header(edge.HeaderReceivedMs, received.UnixMilli()),
		topology.Header{Key: topology.HeaderReplayGroup, Value: []byte(processors.GroupDedupe)})
	if st := u.state(); st.Messages != 1 {
		t.Fatalf("a fused decoder's replay did not reach the decode group: %+v", st)
	}
}

// Dead letters of the fused alerts+device-state group name device-state:
// once alerts run on their own group again, a replay aimed at device-state
// reaches the alerts group too, so that its alerts are not skipped.
func TestUnfusedAlertsTakeDeviceStateReplays(t *testing.T) {
	f := newFixture(t, processors.Config{})
	key := strconv.Itoa(device)
	hot := engine(baseTime+1000, 130)
	rs := records.Readings{DeviceID: device, Items: []records.Reading{records.NewReading(device, &hot)}}
	topologytest.Send(f.d, f.p.Normalized, key, rs,
		topology.Header{Key: topology.HeaderReplayGroup, Value: []byte(processors.GroupDeviceState)})
	if alerts := topologytest.Read(f.d, f.p.Alerts); len(alerts) != 1 || alerts[0].Value.Kind != records.AlertCoolant {
		t.Fatalf("alerts of a replay for device-state = %+v, want the coolant alert", alerts)
	}
	topologytest.Send(f.d, f.p.Normalized, key, rs,
		topology.Header{Key: topology.HeaderReplayGroup, Value: []byte(processors.GroupSink)})
	if alerts := topologytest.Read(f.d, f.p.Alerts); len(alerts) != 0 {
		t.Errorf("a replay for the sink raised alerts: %+v", alerts)
	}
}
