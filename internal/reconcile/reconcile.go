// Package reconcile compares the simulator's ground truth with what the
// pipeline holds: the rows of the store, the view API's device states and
// the records of the dead-letter topic. The demo prints its report, and the
// end-to-end tests assert on it.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/IBM/sarama"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// Outcome counts what became of the messages and packages.
type Outcome struct {
	Messages         int `json:"messages"`
	Duplicates       int `json:"duplicates"`
	Invalid          int `json:"invalid"`
	PackagesRejected int `json:"packages_rejected"`
	DeadLetters      int `json:"dead_letters"`
}

// SinkOutcome is what the store holds.
type SinkOutcome struct {
	Messages int `json:"messages"`
}

// ViewOutcome is what the view's device states add up to.
type ViewOutcome struct {
	Messages         int `json:"messages"`
	Duplicates       int `json:"duplicates"`
	Invalid          int `json:"invalid"`
	PackagesRejected int `json:"packages_rejected"`
}

// DeadLetterOutcome is what the dead-letter topic holds: message-level and
// package-level rejections, and all its records.
type DeadLetterOutcome struct {
	Invalid          int `json:"invalid"`
	PackagesRejected int `json:"packages_rejected"`
	DeadLetters      int `json:"dead_letters"`
}

// Report is the comparison. OK is true when every source agrees with the
// truth (exactly, or within its bounds when some attempts were uncertain).
type Report struct {
	OK    bool `json:"ok"`
	Exact bool `json:"exact"`
	// Truth is what the simulator expects; TruthMax its upper bounds when
	// some attempts were uncertain.
	Truth    Outcome  `json:"truth"`
	TruthMax *Outcome `json:"truth_max,omitempty"`
	// Sink counts the stored rows of the fleet's devices.
	Sink SinkOutcome `json:"sink"`
	// View sums the view's device states.
	View ViewOutcome `json:"view"`
	// DeadLetterTopic counts the dead-letter topic's records.
	DeadLetterTopic DeadLetterOutcome `json:"dead_letter_topic"`
	// DeadLettersByReason counts them by reason; TruthDeadLettersByReason
	// is what the simulator expects.
	DeadLettersByReason      map[string]int `json:"dead_letters_by_reason"`
	TruthDeadLettersByReason map[string]int `json:"truth_dead_letters_by_reason"`
	Devices                  int            `json:"devices"`
	// Time, when set, compares the summaries and the silent-device alerts
	// (CheckTime); OK and the mismatches then cover it too.
	Time *TimeReport `json:"time,omitempty"`
	// Mismatches lists the first disagreements; MismatchCount counts all.
	Mismatches    []string `json:"mismatches,omitempty"`
	MismatchCount int      `json:"mismatch_count"`
}

// ViewSource is the view API's data source (views.Source).
type ViewSource interface {
	Get(deviceID uint64) (records.DeviceState, bool, error)
}

// Sources are where the pipeline's results are read from.
type Sources struct {
	View  ViewSource
	Store sinks.Store
	// DeadLetters counts the dead-letter topic's records by reason.
	DeadLetters func(ctx context.Context) (map[string]int, error)
}

const maxListed = 20

// Check compares truth with the sources.
func Check(ctx context.Context, truth simulator.Truth, src Sources) (Report, error) {
	r := Report{Exact: truth.Exact(), Devices: len(truth.Devices), TruthDeadLettersByReason: truth.DeadLetters}
	r.Truth = outcomeOf(truth.Totals)
	if !r.Exact {
		m := outcomeOf(truth.Max)
		r.TruthMax = &m
	}
	miss := func(format string, args ...any) {
		r.MismatchCount++
		if len(r.Mismatches) < maxListed {
			r.Mismatches = append(r.Mismatches, fmt.Sprintf(format, args...))
		}
	}
	ids := make([]uint64, 0, len(truth.Devices))
	for id := range truth.Devices {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return r, fmt.Errorf("reconcile: %w", err)
		}
		d := truth.Devices[id]
		if err := checkView(&r, d, src.View, miss); err != nil {
			return r, err
		}
		if err := checkStore(ctx, &r, d, src.Store, miss); err != nil {
			return r, err
		}
	}
	byReason, err := src.DeadLetters(ctx)
	if err != nil {
		return r, err
	}
	r.DeadLettersByReason = byReason
	for reason, n := range byReason {
		r.DeadLetterTopic.DeadLetters += n
		if lo, hi := truth.DeadLetters[reason], truth.DeadLettersMax[reason]; !within(n, lo, max(lo, hi)) {
			miss("dead letters %q: topic has %d, truth %d..%d", reason, n, lo, max(lo, hi))
		}
		if reason, err := protocol.ParseReason(reason); err == nil {
			if messageLevel(reason) {
				r.DeadLetterTopic.Invalid += n
			} else {
				r.DeadLetterTopic.PackagesRejected += n
			}
		}
	}
	for reason, lo := range truth.DeadLetters {
		if _, ok := byReason[reason]; !ok && lo > 0 {
			miss("dead letters %q: topic has none, truth %d", reason, lo)
		}
	}
	hi := r.Truth
	if r.TruthMax != nil {
		hi = *r.TruthMax
	}
	if !within(r.DeadLetterTopic.DeadLetters, r.Truth.DeadLetters, hi.DeadLetters) {
		miss("dead-letter topic holds %d records, truth %d..%d", r.DeadLetterTopic.DeadLetters, r.Truth.DeadLetters, hi.DeadLetters)
	}
	r.OK = r.MismatchCount == 0
	return r, nil
}

func outcomeOf(c simulator.Counts) Outcome {
	return Outcome{Messages: c.Messages, Duplicates: c.Duplicates, Invalid: c.Invalid, PackagesRejected: c.PackagesRejected, DeadLetters: c.DeadLetters}
}

func within(n, lo, hi int) bool { return n >= lo && n <= max(lo, hi) }

func checkView(r *Report, d *simulator.DeviceTruth, v ViewSource, miss func(string, ...any)) error {
	st, ok, err := v.Get(d.ID)
	if err != nil {
		return fmt.Errorf("reconcile: view of device %d: %w", d.ID, err)
	}
	if !ok {
		if d.Counts != (simulator.Counts{}) {
			miss("device %d: no state in the view, truth %+v", d.ID, d.Counts)
		}
		return nil
	}
	r.View.Messages += int(st.Messages)
	r.View.Duplicates += int(st.Duplicates)
	r.View.Invalid += int(st.Invalid)
	r.View.PackagesRejected += int(st.PackagesRejected)
	hi := d.Max
	for _, c := range []struct {
		name      string
		got       uint64
		want, max int
	}{
		{"messages", st.Messages, d.Messages, hi.Messages},
		{"duplicates", st.Duplicates, d.Duplicates, hi.Duplicates},
		{"invalid", st.Invalid, d.Invalid, hi.Invalid},
		{"packages_rejected", st.PackagesRejected, d.PackagesRejected, hi.PackagesRejected},
	} {
		if !within(int(c.got), c.want, c.max) {
			miss("device %d: view %s = %d, truth %d..%d", d.ID, c.name, c.got, c.want, max(c.want, c.max))
		}
	}
	if st.LastSeenMs != d.LastSeenMs {
		miss("device %d: view last_seen %d, truth %d", d.ID, st.LastSeenMs, d.LastSeenMs)
	}
	if d.FirmwareRaw != 0 && st.Firmware != d.FirmwareRaw {
		miss("device %d: view firmware %#04x, truth %#04x", d.ID, st.Firmware, d.FirmwareRaw)
	}
	for typ, want := range d.Latest {
		got, ok := st.LatestOf(typ)
		if !ok {
			miss("device %d: view has no latest %s", d.ID, typ)
			continue
		}
		if got.TimeMs != want.TimeMs {
			miss("device %d: latest %s at %d, truth %d", d.ID, typ, got.TimeMs, want.TimeMs)
			continue
		}
		want := want.Normal()
		for name, gv := range normal(got) {
			if wv, ok := want[name]; ok && math.Abs(gv-wv) > 1e-9 {
				miss("device %d: latest %s %s = %v, truth %v", d.ID, typ, name, gv, wv)
			}
		}
	}
	return nil
}

// normal names a reading's fields as simulator.Reading.Normal does.
func normal(r records.Reading) map[string]float64 {
	switch r.Type {
	case protocol.TypeGPS:
		return map[string]float64{"lat_deg": r.LatDeg, "lon_deg": r.LonDeg, "speed_kmh": r.SpeedKmh, "heading_deg": r.HeadingDeg, "hdop": r.Hdop, "satellites": r.Satellites}
	case protocol.TypeAccel:
		return map[string]float64{"x_g": r.XG, "y_g": r.YG, "z_g": r.ZG}
	case protocol.TypeEngine:
		return map[string]float64{"rpm": r.RPM, "coolant_c": r.CoolantC, "fuel_pct": r.FuelPct}
	case protocol.TypeEvent:
		return map[string]float64{"code": r.EventCode, "severity": r.Severity}
	case protocol.TypeBattery:
		return map[string]float64{"battery_v": r.BatteryV}
	}
	return nil
}

func checkStore(ctx context.Context, r *Report, d *simulator.DeviceTruth, s sinks.Store, miss func(string, ...any)) error {
	rows, err := s.Readings(ctx, sinks.Query{DeviceID: d.ID})
	if err != nil {
		return fmt.Errorf("reconcile: rows of device %d: %w", d.ID, err)
	}
	r.Sink.Messages += len(rows)
	got := make(map[simulator.Identity]bool, len(rows))
	for _, row := range rows {
		id := simulator.Identity{DeviceID: row.DeviceID, TimeMs: row.TimeMs, ContentCRC: row.ContentCRC}
		got[id] = true
		if _, ok := d.Stored[id]; !ok && d.Forgotten == 0 && d.Exact() {
			miss("device %d: stored row %d/%08x the truth does not have", d.ID, row.TimeMs, row.ContentCRC)
		}
	}
	for id := range d.Stored {
		if !got[id] {
			miss("device %d: row %d/%08x missing from the store", d.ID, id.TimeMs, id.ContentCRC)
		}
	}
	if !within(len(rows), d.Messages, d.Max.Messages) {
		miss("device %d: store has %d rows, truth %d..%d", d.ID, len(rows), d.Messages, max(d.Messages, d.Max.Messages))
	}
	return nil
}

func messageLevel(r protocol.Reason) bool {
	switch r {
	case protocol.ReasonMessageCRC, protocol.ReasonBadLength, protocol.ReasonUnknownType,
		protocol.ReasonOutOfRange, protocol.ReasonStaleTimestamp, protocol.ReasonFutureTimestamp:
		return true
	}
	return false
}

// DeadLetterCounter returns a function that reads the whole dead-letter
// topic (up to its end when called) with a plain Kafka consumer and counts
// its distinct envelopes by reason. After a crash a stage replays the
// records it had not committed and writes their envelopes again, so an
// envelope may appear twice: envelopes with equal records.EnvelopeKey are
// counted once, as device state counts them. Records that are not
// envelopes are counted under "<undecodable>", each one.
func DeadLetterCounter(k topology.Kafka, topic string) func(ctx context.Context) (map[string]int, error) {
	return func(ctx context.Context) (map[string]int, error) {
		out := map[string]int{}
		seen := map[uint64]struct{}{}
		err := readTopic(ctx, k, topic, func(v []byte) {
			e, err := records.EnvelopeCodec{}.Decode(v)
			if err != nil {
				out["<undecodable>"]++
			} else if k := records.EnvelopeKey(&e); !seenBefore(seen, k) {
				out[e.Reason]++
			}
		})
		return out, err
	}
}

// AlertReader returns a function that reads the whole alerts topic (up to
// its end when called): TimeSources.Alerts. An undecodable record is an
// error.
func AlertReader(k topology.Kafka, topic string) func(ctx context.Context) ([]records.Alert, error) {
	return func(ctx context.Context) ([]records.Alert, error) {
		var out []records.Alert
		var bad error
		err := readTopic(ctx, k, topic, func(v []byte) {
			a, err := records.AlertCodec{}.Decode(v)
			if err != nil {
				bad = fmt.Errorf("reconcile: alert in %s: %w", topic, err)
				return
			}
			out = append(out, a)
		})
		return out, errors.Join(err, bad)
	}
}

// readTopic hands fn the value of every record of topic, partition by
// partition, up to each partition's end when called.
func readTopic(ctx context.Context, k topology.Kafka, topic string, fn func([]byte)) error {
	c, err := sarama.NewConsumer(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		return fmt.Errorf("reconcile: consumer: %w", err)
	}
	defer c.Close()
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		return fmt.Errorf("reconcile: client: %w", err)
	}
	defer client.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		return fmt.Errorf("reconcile: partitions of %s: %w", topic, err)
	}
	for _, part := range parts {
		end, err := client.GetOffset(topic, part, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("reconcile: end of %s/%d: %w", topic, part, err)
		}
		if end == 0 {
			continue
		}
		pc, err := c.ConsumePartition(topic, part, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("reconcile: consume %s/%d: %w", topic, part, err)
		}
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				fn(m.Value)
				done = m.Offset+1 >= end
			case <-ctx.Done():
				pc.Close()
				return fmt.Errorf("reconcile: read %s/%d: %w", topic, part, ctx.Err())
			}
		}
		pc.Close()
	}
	return nil
}

// seenBefore reports whether k is in seen, and adds it.
func seenBefore(seen map[uint64]struct{}, k uint64) bool {
	if _, ok := seen[k]; ok {
		return true
	}
	seen[k] = struct{}{}
	return false
}
