package processors_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// A replica that takes device-state's partition over replays every record
// since the partition's last commit, however many that is: a group catching
// up, or one whose commits fail (its coordinator down) while its table
// writes go through, applies far more than a second of a device's records
// between commits. Here the commits of normalized are refused while
// records.AppliedLimit+36 packages of one device are applied and their
// table writes acknowledged; a replica on another folder then rebuilds the
// table from the topic and replays them all. Each package must count once.
func TestDeviceStateReplayBeyondAppliedKeys(t *testing.T) {
	b, k, p := startPipeline(t)
	key := strconv.Itoa(device)
	n := int64(records.AppliedLimit + 36)

	run := startGroup(t, k, p, processors.GroupDeviceState, t.TempDir())
	// Load in progress: sarama keeps the offsets and tries again at the
	// next commit, so the group runs on, committing nothing.
	refused := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Topic: p.Normalized.Name(), Err: kerr.CoordinatorLoadInProgress, Count: -1})
	vs := make([]records.Readings, n)
	for i := range vs {
		vs[i] = oneReading(int64(i) + 1)
	}
	send(t, k, p.Normalized, key, vs...)
	waitUntil(t, func() error { return tableHolds(k, p.DeviceState.Name(), n) })
	run.cancel()
	<-run.done // its last commit is refused too: not checked
	refused.Remove()

	replica := startGroup(t, k, p, processors.GroupDeviceState, t.TempDir())
	waitCommitted(t, context.Background(), replica.r)
	replica.stop(t)
	st, err := p.DeviceState.Codec().Decode(topicTable(t, k, p.DeviceState.Name())[key])
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != uint64(n) {
		t.Errorf("after the replay the device counts %d messages, want %d", st.Messages, n)
	}
}

// tableHolds reports whether partition 0 of a table topic holds at least n
// records.
func tableHolds(k topology.Kafka, topic string, n int64) error {
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		return err
	}
	defer client.Close()
	end, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	if err != nil {
		return err
	}
	if end < n {
		return fmt.Errorf("%s holds %d records, want %d", topic, end, n)
	}
	return nil
}

// Dedupe writes a package's Readings again (same raw offset and part, a new
// offset of telemetry.normalized) when it replays the package after a crash
// or a takeover; under load the copy can come after many of the device's
// later packages. Device state recognises it by its identity for as long as
// the package was received within the replay horizon of the device's
// newest one, not just among its last records.AppliedLimit records.
func TestDeviceStateLateCopyCountedOnce(t *testing.T) {
	f := newFixture(t, processors.Config{})
	key := strconv.Itoa(device)
	const n = 3 * records.AppliedLimit
	at := func(raw int64) records.Readings {
		rs := oneReading(raw)
		rs.ReceivedMs = received.UnixMilli() + raw*100 // ten packages a second
		return rs
	}
	for raw := int64(1); raw <= n; raw++ {
		topologytest.Send(f.d, f.p.Normalized, key, at(raw))
	}
	topologytest.Send(f.d, f.p.Normalized, key, at(1)) // the copy, 3*64 packages later
	topologytest.Send(f.d, f.p.Normalized, key, at(2))
	if st := f.state(); st.Messages != n {
		t.Errorf("after two late copies the device counts %d messages, want %d", st.Messages, n)
	}
}
