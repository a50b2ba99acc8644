package simulator

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// DeviceInfo describes one simulated device.
type DeviceInfo struct {
	// ID is the device_id, never 0; some are above 2^63.
	ID uint64
	// Version is the firmware's protocol version, 1 or 2.
	Version uint8
	// Firmware is major<<8 | minor for version 2 devices, 0 for version 1.
	Firmware uint16
}

// FirmwareString returns "major.minor" for version 2 devices and "" for
// version 1.
func (d DeviceInfo) FirmwareString() string { return firmwareString(d.Version, d.Firmware) }

func firmwareString(version uint8, fw uint16) string {
	if version < 2 {
		return ""
	}
	return fmt.Sprintf("%d.%d", fw>>8, fw&0xff)
}

// histEntry is a message the device sent in a package it expected the edge
// to accept, kept for re-batching.
type histEntry struct {
	msg  protocol.Message
	base uint64 // base_time_ms of the package it was sent in
}

const (
	historyLen = 64
	// lateMinMs and lateMaxMs bound how much older than the device's latest
	// message a late message is.
	lateMinMs = 30_000
	lateMaxMs = 600_000
	// futureMinMs and futureMaxMs bound how far ahead of now a future
	// message is: far beyond the 5-minute slack, so that a few minutes of
	// retries cannot make it valid.
	futureMinMs = 20 * 60_000
	futureMaxMs = 30 * 60_000
	// catchUpMs: a device whose clock fell this far behind now jumps to
	// now minus this (it was switched off for a while).
	catchUpMs = 15 * 60_000
)

// device is one simulated device's state.
type device struct {
	DeviceInfo
	seq uint32
	// clock is the time of the device's newest regular message, in ms.
	clock uint64
	// used holds the times already given to this device's messages, so
	// that a late message never shares a millisecond with another one
	// (keeping "latest by message time" unambiguous). Pruned as the clock
	// moves on.
	used map[uint64]struct{}
	// history is a ring of recently sent messages, for re-batching.
	history []histEntry
	histPos int

	// Vehicle state, for plausible values.
	latE7, lonE7 int64
	speedDkmh    int
	heading      int
	fuel         int
	coolantC     int
	batteryMv    int
}

func newDevice(info DeviceInfo, rng *rand.Rand, nowMs uint64) *device {
	d := &device{
		DeviceInfo: info,
		seq:        rng.Uint32N(1000),
		clock:      nowMs - 2*60_000 - rng.Uint64N(8*60_000),
		used:       make(map[uint64]struct{}),
		latE7:      int64(rng.IntN(1_200_000_000)) - 550_000_000,
		lonE7:      int64(rng.IntN(3_400_000_000)) - 1_700_000_000,
		speedDkmh:  rng.IntN(900),
		heading:    rng.IntN(360),
		fuel:       20 + rng.IntN(80),
		coolantC:   60 + rng.IntN(30),
		batteryMv:  12000 + rng.IntN(2000),
	}
	return d
}

// nextTime advances the device clock for a regular message. The clock
// steps 20-400 ms while it stays behind now, and 1 ms once it has caught
// up, so that it never runs far ahead of now (with a frozen clock in
// tests, 1 ms a message).
func (d *device) nextTime(rng *rand.Rand, nowMs uint64) uint64 {
	step := 20 + rng.Uint64N(381)
	if d.clock+step > nowMs {
		step = 1
	}
	d.clock += step
	d.markUsed(d.clock)
	return d.clock
}

// catchUp moves a clock that fell far behind now (a device that was off)
// to a little behind now.
func (d *device) catchUp(rng *rand.Rand, nowMs uint64) {
	if nowMs > catchUpMs && d.clock < nowMs-catchUpMs {
		d.clock = nowMs - catchUpMs + rng.Uint64N(60_000)
	}
}

func (d *device) markUsed(t uint64) {
	d.used[t] = struct{}{}
	if len(d.used) > 4096 && d.clock > 2*lateMaxMs {
		horizon := d.clock - 2*lateMaxMs
		for k := range d.used {
			if k < horizon {
				delete(d.used, k)
			}
		}
	}
}

// lateTime returns a time older than the device's newest message by 30 s to
// 10 min, used by no other message of the device.
func (d *device) lateTime(rng *rand.Rand) uint64 {
	t := d.clock - lateMinMs - rng.Uint64N(lateMaxMs-lateMinMs)
	for {
		if _, ok := d.used[t]; !ok {
			break
		}
		t--
	}
	d.markUsed(t)
	return t
}

// futureTime returns a time 20 to 30 minutes ahead of now (or of the
// device clock, if that is ahead), used by no other message.
func (d *device) futureTime(rng *rand.Rand, nowMs uint64) uint64 {
	t := max(nowMs, d.clock) + futureMinMs + rng.Uint64N(futureMaxMs-futureMinMs)
	for {
		if _, ok := d.used[t]; !ok {
			break
		}
		t++
	}
	d.markUsed(t)
	return t
}

// remember records messages sent in a package of base time base.
func (d *device) remember(base uint64, msgs []protocol.Message) {
	for _, m := range msgs {
		e := histEntry{msg: m, base: base}
		if len(d.history) < historyLen {
			d.history = append(d.history, e)
		} else {
			d.history[d.histPos] = e
			d.histPos = (d.histPos + 1) % historyLen
		}
	}
}

// message returns a plausible valid message of a type valid for the
// device's version, at time t.
func (d *device) message(rng *rand.Rand, t uint64) protocol.Message {
	r := rng.IntN(100)
	var typ protocol.MsgType
	switch {
	case r < 40:
		typ = protocol.TypeGPS
	case r < 60:
		typ = protocol.TypeEngine
	case r < 80:
		typ = protocol.TypeAccel
	case r < 88:
		typ = protocol.TypeEvent
	default:
		typ = protocol.TypeBattery
		if d.Version == 1 {
			typ = protocol.TypeGPS
		}
	}
	return d.messageOf(rng, typ, t)
}

// messageOf returns a plausible valid message of type typ at time t.
func (d *device) messageOf(rng *rand.Rand, typ protocol.MsgType, t uint64) protocol.Message {
	m := protocol.Message{Type: typ, TimeMs: t}
	switch typ {
	case protocol.TypeGPS:
		d.speedDkmh = clamp(d.speedDkmh+rng.IntN(81)-40, 0, 1500)
		d.heading = (d.heading + rng.IntN(21) - 10 + 360) % 360
		// About one second of travel: speed (0.1 km/h) / 36 m, 1e-7 deg
		// is about 1.1 cm.
		dist := float64(d.speedDkmh) / 36 * 90
		rad := float64(d.heading) * math.Pi / 180
		d.latE7 = clamp64(d.latE7+int64(dist*math.Cos(rad)), -890_000_000, 890_000_000)
		d.lonE7 += int64(dist * math.Sin(rad))
		if d.lonE7 > 1_800_000_000 {
			d.lonE7 -= 3_600_000_000
		} else if d.lonE7 < -1_800_000_000 {
			d.lonE7 += 3_600_000_000
		}
		m.LatE7, m.LonE7 = int32(d.latE7), int32(d.lonE7)
		m.SpeedDkmh, m.HeadingDeg = uint16(d.speedDkmh), uint16(d.heading)
		if d.Version >= 2 {
			m.HdopD = uint8(5 + rng.IntN(36))
			m.Satellites = uint8(4 + rng.IntN(17))
		}
	case protocol.TypeAccel:
		if rng.IntN(20) == 0 { // a harsh manoeuvre
			m.XMg = int16(rng.IntN(6001) - 3000)
			m.YMg = int16(rng.IntN(6001) - 3000)
		} else {
			m.XMg = int16(rng.IntN(601) - 300)
			m.YMg = int16(rng.IntN(601) - 300)
		}
		m.ZMg = int16(950 + rng.IntN(101))
	case protocol.TypeEngine:
		d.fuel = clamp(d.fuel-rng.IntN(2), 0, 100)
		if d.fuel < 5 {
			d.fuel = 100 // refuelled
		}
		d.coolantC = clamp(d.coolantC+rng.IntN(7)-3, 60, 105)
		c := d.coolantC
		if rng.IntN(10) == 0 {
			c = 121 + rng.IntN(25) // overheating, still in range
		}
		m.RPM = uint16(700 + rng.IntN(4800))
		m.CoolantRaw = uint8(c + 40)
		m.FuelPct = uint8(d.fuel)
	case protocol.TypeEvent:
		m.Code = uint8(1 + rng.IntN(8))
		m.Severity = uint8(rng.IntN(6))
	case protocol.TypeBattery:
		d.batteryMv = clamp(d.batteryMv+rng.IntN(201)-100, 11500, 14600)
		m.Millivolts = uint16(d.batteryMv)
	}
	return m
}

// outOfRange returns a message at time t that breaks one physical limit.
func (d *device) outOfRange(rng *rand.Rand, t uint64) protocol.Message {
	m := d.message(rng, t)
	switch m.Type {
	case protocol.TypeGPS:
		switch rng.IntN(4) {
		case 0:
			m.LatE7 = 910_000_000 + int32(rng.IntN(50_000_000))
		case 1:
			m.LonE7 = -1_810_000_000 - int32(rng.IntN(100_000_000))
		case 2:
			m.SpeedDkmh = uint16(3001 + rng.IntN(1000))
		default:
			m.HeadingDeg = uint16(360 + rng.IntN(150))
		}
	case protocol.TypeAccel:
		m.YMg = int16(16001 + rng.IntN(10000))
	case protocol.TypeEngine:
		switch rng.IntN(3) {
		case 0:
			m.RPM = uint16(12001 + rng.IntN(4000))
		case 1:
			m.CoolantRaw = uint8(191 + rng.IntN(60))
		default:
			m.FuelPct = uint8(101 + rng.IntN(27))
		}
	case protocol.TypeEvent:
		if rng.IntN(2) == 0 {
			m.Code = uint8([]int{0, 9, 42, 255}[rng.IntN(4)])
		} else {
			m.Severity = uint8(6 + rng.IntN(2))
		}
	case protocol.TypeBattery:
		m.Millivolts = uint16(36001 + rng.IntN(20000))
	}
	return m
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }

func clamp64(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
