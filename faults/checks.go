package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// ReadTopic calls fn with every record of topic that exists when it is
// called, partition by partition.
func ReadTopic(ctx context.Context, k topology.Kafka, topic string, fn func(*sarama.ConsumerMessage) error) error {
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		return fmt.Errorf("faults: client: %w", err)
	}
	defer client.Close()
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("faults: consumer: %w", err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		return fmt.Errorf("faults: partitions of %s: %w", topic, err)
	}
	for _, part := range parts {
		end, err := client.GetOffset(topic, part, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("faults: end of %s/%d: %w", topic, part, err)
		}
		start, err := client.GetOffset(topic, part, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("faults: start of %s/%d: %w", topic, part, err)
		}
		if end <= start {
			continue
		}
		pc, err := c.ConsumePartition(topic, part, start)
		if err != nil {
			return fmt.Errorf("faults: consume %s/%d: %w", topic, part, err)
		}
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				if err := fn(m); err != nil {
					pc.Close()
					return err
				}
				done = m.Offset+1 >= end
			case <-ctx.Done():
				pc.Close()
				return fmt.Errorf("faults: read %s/%d: %w", topic, part, ctx.Err())
			}
		}
		pc.Close()
	}
	return nil
}

// NormalizedCopies counts, for every message identity in
// telemetry.normalized, the raw packages it came from. A package replayed
// after a crash emits its readings again under the same raw offset (that
// is at-least-once, not a duplicate); an identity that came from two
// packages passed dedupe twice.
type NormalizedCopies struct {
	// Records and Readings count what the topic holds.
	Records, Readings int
	// Sources maps each identity to its raw packages: raw offset to the
	// copies under it.
	Sources map[simulator.Identity]map[int64]int
	// Unrecognised are the copies (same device, raw offset and part as an
	// earlier record) that device-state cannot tell from a new package: no
	// longer among the package identities it keeps per device when they
	// arrive (the topic's order; records.AppliedPackages with
	// processors.DefaultReplayHorizon). Each one counts its messages twice
	// in the views.
	Unrecognised []LateCopy

	devices map[uint64]*appliedKeys
	unknown int64
}

// LateCopy is a copy of a Readings record in telemetry.normalized that came
// later than device-state remembers its package: received more than the
// replay horizon before the device's newest, or after more than
// records.PackagesLimit of its packages.
type LateCopy struct {
	DeviceID  uint64
	RawOffset int64
	Part      int64
	Messages  int
	// Partition and Offset place the copy, First its first record.
	Partition int32
	Offset    int64
	First     int64
}

// LateCopies sums Unrecognised by device: the messages each device's view
// counts twice.
func (n NormalizedCopies) LateCopies() map[uint64]int {
	out := map[uint64]int{}
	for _, c := range n.Unrecognised {
		out[c.DeviceID] += c.Messages
	}
	return out
}

// appliedKeys follows device-state's bookkeeping of one device: the
// package identities it keeps, and where each identity came first.
type appliedKeys struct {
	state records.DeviceState
	first map[[2]int64]int64
}

// ReadNormalized reads topic (a telemetry.normalized) into NormalizedCopies.
func ReadNormalized(ctx context.Context, k topology.Kafka, topic string) (NormalizedCopies, error) {
	out := NewNormalizedCopies()
	err := ReadTopic(ctx, k, topic, func(m *sarama.ConsumerMessage) error {
		rs, err := records.ReadingsCodec{}.Decode(m.Value)
		if err != nil {
			return fmt.Errorf("faults: %s/%d@%d: %w", topic, m.Partition, m.Offset, err)
		}
		out.Add(m.Partition, m.Offset, &rs)
		return nil
	})
	return *out, err
}

// NewNormalizedCopies returns an empty NormalizedCopies to Add records to.
func NewNormalizedCopies() *NormalizedCopies {
	return &NormalizedCopies{Sources: map[simulator.Identity]map[int64]int{}, devices: map[uint64]*appliedKeys{}}
}

// Add counts the record of telemetry.normalized at offset of partition;
// each partition's records are added in offset order.
func (n *NormalizedCopies) Add(partition int32, offset int64, rs *records.Readings) {
	n.Records++
	src := rs.RawOffset
	if rs.HasIdentity() {
		n.follow(partition, offset, rs)
	} else {
		// Without the package's identity every record counts as a
		// package of its own (negative, so it meets no real offset).
		n.unknown--
		src = n.unknown
	}
	for _, r := range rs.Items {
		n.Readings++
		id := simulator.Identity{DeviceID: r.DeviceID, TimeMs: r.TimeMs, ContentCRC: r.ContentCRC}
		s := n.Sources[id]
		if s == nil {
			s = map[int64]int{}
			n.Sources[id] = s
		}
		s[src]++
	}
}

// follow applies rs to its device's keys as device-state does, and notes a
// copy that comes too late to be recognised.
func (n *NormalizedCopies) follow(partition int32, offset int64, rs *records.Readings) {
	d := n.devices[rs.DeviceID]
	if d == nil {
		d = &appliedKeys{first: map[[2]int64]int64{}}
		n.devices[rs.DeviceID] = d
	}
	if d.state.PackageApplied(rs.RawOffset, rs.Part) {
		return
	}
	d.state.MarkPackage(rs.RawOffset, rs.Part, rs.ReceivedMs, processors.DefaultReplayHorizon)
	k := [2]int64{rs.RawOffset, rs.Part}
	if first, seen := d.first[k]; seen {
		n.Unrecognised = append(n.Unrecognised, LateCopy{DeviceID: rs.DeviceID, RawOffset: rs.RawOffset, Part: rs.Part,
			Messages: len(rs.Items), Partition: partition, Offset: offset, First: first})
		return
	}
	d.first[k] = offset
}

// Duplicated returns the identities that came from more than one package,
// and the copies beyond the first that replays added.
func (n NormalizedCopies) Duplicated() (dups []simulator.Identity, replayed int) {
	for id, s := range n.Sources {
		if len(s) > 1 {
			dups = append(dups, id)
		}
		for _, c := range s {
			replayed += c - 1
		}
	}
	return dups, replayed
}

// SinkAudit is what the sink replicas' audit logs (sinks.Audit) say: per
// identity, how often it was handed to the sink and how often a store
// write that held it was acknowledged.
type SinkAudit struct {
	Delivered, Written map[simulator.Identity]int
	// WriteCalls counts the acknowledged writes; Cut the lines a killed
	// process left unfinished.
	WriteCalls, Cut int
}

// ReadSinkAudit reads the audit logs at paths.
func ReadSinkAudit(paths ...string) (SinkAudit, error) {
	a := SinkAudit{Delivered: map[simulator.Identity]int{}, Written: map[simulator.Identity]int{}}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return a, fmt.Errorf("faults: sink audit: %w", err)
		}
		err = a.read(f)
		f.Close()
		if err != nil {
			return a, fmt.Errorf("faults: sink audit %s: %w", p, err)
		}
	}
	return a, nil
}

func (a *SinkAudit) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			if line != "" {
				a.Cut++
			}
			return nil
		}
		if err != nil {
			return err
		}
		f := strings.Fields(line)
		var into map[simulator.Identity]int
		switch {
		case len(f) >= 3 && f[0] == "d":
			into, f = a.Delivered, f[3:]
		case len(f) >= 1 && f[0] == "w":
			into, f = a.Written, f[1:]
			a.WriteCalls++
		default:
			return fmt.Errorf("line %q", strings.TrimSpace(line))
		}
		for _, s := range f {
			id, err := parseIdentity(s)
			if err != nil {
				return err
			}
			into[id]++
		}
	}
}

func parseIdentity(s string) (simulator.Identity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return simulator.Identity{}, fmt.Errorf("identity %q", s)
	}
	dev, err1 := strconv.ParseUint(parts[0], 10, 64)
	ms, err2 := strconv.ParseUint(parts[1], 10, 64)
	crc, err3 := strconv.ParseUint(parts[2], 10, 32)
	if err1 != nil || err2 != nil || err3 != nil {
		return simulator.Identity{}, fmt.Errorf("identity %q", s)
	}
	return simulator.Identity{DeviceID: dev, TimeMs: ms, ContentCRC: uint32(crc)}, nil
}

// Overwritten returns the identities written more often than they were
// handed to the sink: a record written twice, which the store's primary
// key would hide.
func (a SinkAudit) Overwritten() []simulator.Identity {
	var out []simulator.Identity
	for id, w := range a.Written {
		if w > a.Delivered[id] {
			out = append(out, id)
		}
	}
	return out
}

// DeadLetterCopies counts every record of the dead-letter topic by
// reason, and apart how many of them are copies of an earlier one: the
// same stage, source record, reason, error and value (the decode stage's
// message-level dead letters of one package share its value and differ by
// the error, which names the message; the edge's envelopes, which have no
// source record, by records.EnvelopeKey). The framework writes
// each dead letter once, also across replays (docs/reliability.md), so a
// copy is a failure. samples holds up to three error texts per reason, to
// tell an unexpected reason's cause.
func DeadLetterCopies(ctx context.Context, k topology.Kafka, topic string) (byReason map[string]int, copies int, samples map[string][]string, err error) {
	byReason = map[string]int{}
	samples = map[string][]string{}
	seen := map[string]bool{}
	err = ReadTopic(ctx, k, topic, func(m *sarama.ConsumerMessage) error {
		e, err := records.EnvelopeCodec{}.Decode(m.Value)
		if err != nil {
			byReason["<undecodable>"]++
			return nil
		}
		byReason[e.Reason]++
		id := fmt.Sprintf("%s\x00%s\x00%d\x00%d\x00%s\x00%s\x00%s", e.Stage, e.Topic, e.Partition, e.Offset, e.Reason, e.Error, e.Value)
		if e.Partition < 0 || e.Offset < 0 {
			id = strconv.FormatUint(records.EnvelopeKey(&e), 16)
		}
		if seen[id] {
			copies++
		}
		seen[id] = true
		if len(samples[e.Reason]) < 3 {
			samples[e.Reason] = append(samples[e.Reason], e.Error)
		}
		return nil
	})
	return byReason, copies, samples, err
}
