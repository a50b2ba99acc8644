package processors

import (
	"strconv"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/ingest"
	"github.com/watershed-io/watershed/topology"
)

// The device-state group keeps each device's counters and latest readings
// from telemetry.normalized, counts the device's dead letters, and raises
// device_silent and device_back alerts (silencetimer.go).

// DefaultReplayHorizon is the default Config.ReplayHorizon: device-state
// recognises a copy of a package's Readings that dedupe writes again when
// it replays if the package was received within this time of the device's
// newest one (and is among its last records.PackagesLimit packages).
const DefaultReplayHorizon = 30 * time.Minute

// StageEdge is the stage name the ingest edge writes on its dead letters.
const StageEdge = ingest.Stage

// descDeviceState describes the device-state stage, on its own group or
// fused.
const descDeviceState = "each device's counters and latest readings by message time; counts its dead letters; device_silent and device_back alerts"

func (p *Pipeline) declareDeviceState(parts, byDevice topology.TopicOption) {
	fused := p.cfg.Fuse.Has(FuseAlerts)
	g := p.stageGroup(GroupDeviceState, descDeviceState, fused, GroupAlerts, descAlerts)
	p.DeviceState = topology.Persist(g, records.DeviceStateCodec{}, parts, byDevice)
	alerts := topology.Produce(g, p.Alerts)
	silence := p.declareSilence(g, alerts)
	topology.Consume(g, p.Normalized, func(c *topology.Context, key string, rs records.Readings) error {
		// Alerts go out for every delivery, a replay's too, as the alerts
		// group does: they must not hang on whether the state write of a
		// first delivery survived a crash.
		if fused {
			if err := p.emitAlerts(c, alerts, key, &rs); err != nil {
				return err
			}
		}
		st, _, err := p.DeviceState.Get(c)
		if err != nil {
			return err
		}
		if replayed(c, &st) {
			// The record that ended a silence raises its device_back
			// again: its state write may have landed without its alert.
			return silence.backAgain(c, key, &st, rs.ReceivedMs)
		}
		// A copy of a record an upstream stage wrote again when it replayed
		// (same package identity, another offset) is applied once.
		if !applyOnce(&st, &rs, p.cfg.ReplayHorizon) {
			return nil
		}
		if err := silence.received(c, key, &st, rs.ReceivedMs); err != nil {
			return err
		}
		return p.DeviceState.Set(c, st)
	})
	topology.Consume(g, p.DeadLetters, func(c *topology.Context, key string, e records.Envelope) error {
		if !p.deviceFailure(&e) {
			return nil // failures of later stages are not the device's doing
		}
		id, err := strconv.ParseUint(key, 10, 64)
		if err != nil {
			return nil // not a device's record
		}
		reason, err := protocol.ParseReason(e.Reason)
		if err != nil {
			return nil
		}
		st, _, err := p.DeviceState.Get(c)
		if err != nil {
			return err
		}
		if replayed(c, &st) {
			return nil
		}
		// A stage that replays a record writes its dead letters again: an
		// envelope is counted once by its identity.
		k := records.EnvelopeKey(&e)
		if st.WasApplied(k) {
			return nil
		}
		st.MarkApplied(k)
		st.DeviceID = id
		if messageLevel(reason) {
			st.Invalid++
		} else {
			st.PackagesRejected++
		}
		return p.DeviceState.Set(c, st)
	})
}

// inputOf is the input record of c, as device states name it.
func inputOf(c *topology.Context) records.InputOffset {
	return records.InputOffset{Source: records.InputSource(c.Topic(), c.Partition()), Offset: c.Offset()}
}

// replayed reports whether the record of c was applied to st already (the
// group replays its input since the last commit after a crash, a restart
// or a rebalance) and otherwise marks it applied: every state written from
// here on says how far into the record's input partition it got.
func replayed(c *topology.Context, st *records.DeviceState) bool {
	in := inputOf(c)
	if st.Replayed(in.Source, in.Offset) {
		return true
	}
	st.MarkInput(in.Source, in.Offset)
	return false
}

// deviceFailure reports whether a dead letter is the device's doing: the
// edge's, or the decode stage's, on its own group or fused into dedupe
// (dedupe's envelopes of raw packages). Both kinds count whatever this
// process's fusion, since the topic holds envelopes of earlier ones.
func (p *Pipeline) deviceFailure(e *records.Envelope) bool {
	switch e.Stage {
	case StageEdge, p.cfg.Prefix + GroupDecode:
		return true
	case p.cfg.Prefix + GroupDedupe:
		return e.Topic == p.Raw.Name()
	}
	return false
}

// applyOnce applies a Readings record to its device's state unless it is
// a replay (same package identity) of one applied already, and reports
// whether it applied it. Identities are remembered for horizon of receive
// time (records.AppliedPackages.Add).
func applyOnce(st *records.DeviceState, rs *records.Readings, horizon time.Duration) bool {
	if rs.HasIdentity() {
		if st.PackageApplied(rs.RawOffset, rs.Part) {
			return false
		}
		st.MarkPackage(rs.RawOffset, rs.Part, rs.ReceivedMs, horizon)
	}
	st.DeviceID = rs.DeviceID
	applyReadings(st, rs)
	return true
}

// applyReadings adds one package's stored readings and duplicates to a
// device's state. A late reading never moves the state back in time.
func applyReadings(st *records.DeviceState, rs *records.Readings) {
	st.Messages += uint64(len(rs.Items))
	st.Duplicates += rs.Duplicates
	for _, r := range rs.Items {
		st.Observe(r)
		st.LastSeenMs = max(st.LastSeenMs, r.TimeMs)
	}
	if rs.Version != 0 {
		st.Version = rs.Version
		if rs.Version >= 2 {
			st.Firmware = rs.Firmware
		}
	}
}

// messageLevel reports whether a dead letter's reason rejects one message
// (counted as invalid) rather than its whole package.
func messageLevel(r protocol.Reason) bool {
	switch r {
	case protocol.ReasonMessageCRC, protocol.ReasonBadLength, protocol.ReasonUnknownType,
		protocol.ReasonOutOfRange, protocol.ReasonStaleTimestamp, protocol.ReasonFutureTimestamp:
		return true
	}
	return false
}
