package views

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
)

// timeLayout is RFC 3339 with milliseconds; times are formatted in UTC,
// so the zone is "Z".
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// maxTimeMs is 9999-12-31T23:59:59.999Z, the last time RFC 3339 can
// write.
const maxTimeMs = 253402300799999

// msTime is a time in Unix milliseconds that marshals as an RFC 3339
// string in UTC with milliseconds.
type msTime uint64

// MarshalJSON writes t as "2024-05-01T12:00:00.123Z". Times after the
// year 9999 have no RFC 3339 form and are an error.
func (t msTime) MarshalJSON() ([]byte, error) {
	if t > maxTimeMs {
		return nil, fmt.Errorf("views: time %d ms is after the year 9999", uint64(t))
	}
	b := make([]byte, 0, len(timeLayout)+2)
	b = append(b, '"')
	b = time.UnixMilli(int64(t)).UTC().AppendFormat(b, timeLayout)
	return append(b, '"'), nil
}

// deviceJSON is the body of a 200 answer; see the package comment.
type deviceJSON struct {
	DeviceID         string `json:"device_id"`
	Messages         uint64 `json:"messages"`
	Duplicates       uint64 `json:"duplicates"`
	Invalid          uint64 `json:"invalid"`
	PackagesRejected uint64 `json:"packages_rejected"`
	// Silent is set while the device is silent; SilentAlerts and
	// BackAlerts count its device_silent and device_back alerts.
	Silent          bool         `json:"silent"`
	SilentAlerts    uint64       `json:"silent_alerts"`
	BackAlerts      uint64       `json:"back_alerts"`
	LastSeen        *msTime      `json:"last_seen"`
	Firmware        string       `json:"firmware,omitempty"`
	FirmwareRaw     *uint16      `json:"firmware_raw,omitempty"`
	ProtocolVersion uint8        `json:"protocol_version"`
	GPS             *gpsJSON     `json:"gps,omitempty"`
	Engine          *engineJSON  `json:"engine,omitempty"`
	Accel           *accelJSON   `json:"accel,omitempty"`
	Battery         *batteryJSON `json:"battery,omitempty"`
	Event           *eventJSON   `json:"event,omitempty"`
}

type gpsJSON struct {
	Time       msTime   `json:"time"`
	LatDeg     float64  `json:"lat_deg"`
	LonDeg     float64  `json:"lon_deg"`
	SpeedKmh   float64  `json:"speed_kmh"`
	HeadingDeg float64  `json:"heading_deg"`
	Hdop       *float64 `json:"hdop,omitempty"`
	Satellites *float64 `json:"satellites,omitempty"`
}

type engineJSON struct {
	Time     msTime  `json:"time"`
	RPM      float64 `json:"rpm"`
	CoolantC float64 `json:"coolant_c"`
	FuelPct  float64 `json:"fuel_pct"`
}

type accelJSON struct {
	Time msTime  `json:"time"`
	XG   float64 `json:"x_g"`
	YG   float64 `json:"y_g"`
	ZG   float64 `json:"z_g"`
}

type batteryJSON struct {
	Time     msTime  `json:"time"`
	BatteryV float64 `json:"battery_v"`
}

type eventJSON struct {
	Time     msTime  `json:"time"`
	Code     float64 `json:"code"`
	Name     string  `json:"name"`
	Severity float64 `json:"severity"`
}

// newDeviceJSON returns the answer for the state s of device id.
func newDeviceJSON(id uint64, s *records.DeviceState) *deviceJSON {
	d := &deviceJSON{
		DeviceID:         strconv.FormatUint(id, 10),
		Messages:         s.Messages,
		Duplicates:       s.Duplicates,
		Invalid:          s.Invalid,
		PackagesRejected: s.PackagesRejected,
		Silent:           s.Silent,
		SilentAlerts:     s.SilentAlerts,
		BackAlerts:       s.BackAlerts,
		ProtocolVersion:  s.Version,
	}
	if s.LastSeenMs != 0 {
		t := msTime(s.LastSeenMs)
		d.LastSeen = &t
	}
	v2 := s.Version == 2
	if v2 {
		fw := s.Firmware
		d.Firmware = fmt.Sprintf("%d.%d", fw>>8, fw&0xff)
		d.FirmwareRaw = &fw
	}
	for i := range s.Latest {
		r := &s.Latest[i]
		t := msTime(r.TimeMs)
		switch r.Type {
		case protocol.TypeGPS:
			g := &gpsJSON{Time: t, LatDeg: r.LatDeg, LonDeg: r.LonDeg, SpeedKmh: r.SpeedKmh, HeadingDeg: r.HeadingDeg}
			if v2 {
				hdop, sats := r.Hdop, r.Satellites
				g.Hdop, g.Satellites = &hdop, &sats
			}
			d.GPS = g
		case protocol.TypeEngine:
			d.Engine = &engineJSON{Time: t, RPM: r.RPM, CoolantC: r.CoolantC, FuelPct: r.FuelPct}
		case protocol.TypeAccel:
			d.Accel = &accelJSON{Time: t, XG: r.XG, YG: r.YG, ZG: r.ZG}
		case protocol.TypeBattery:
			d.Battery = &batteryJSON{Time: t, BatteryV: r.BatteryV}
		case protocol.TypeEvent:
			d.Event = &eventJSON{Time: t, Code: r.EventCode, Name: eventName(r.EventCode), Severity: r.Severity}
		}
	}
	return d
}

// eventName returns the name of event code c ("harsh_brake"), or
// "event(N)" for a code without one.
func eventName(c float64) string {
	if c >= 0 && c <= math.MaxUint8 && c == math.Trunc(c) {
		return protocol.EventCode(c).String()
	}
	return "event(" + strconv.FormatFloat(c, 'g', -1, 64) + ")"
}

// ReadingJSON is a stored reading as the readings endpoint and `watershed
// readings` write it: the fields meaningful for the reading's type are
// set, the others nil and left out.
type ReadingJSON struct {
	DeviceID   string   `json:"device_id"`
	Time       string   `json:"time"`
	TimeMs     uint64   `json:"time_ms"`
	ContentCRC uint32   `json:"content_crc"`
	Type       string   `json:"type"`
	LatDeg     *float64 `json:"lat_deg,omitempty"`
	LonDeg     *float64 `json:"lon_deg,omitempty"`
	SpeedKmh   *float64 `json:"speed_kmh,omitempty"`
	HeadingDeg *float64 `json:"heading_deg,omitempty"`
	Hdop       *float64 `json:"hdop,omitempty"`
	Satellites *float64 `json:"satellites,omitempty"`
	XG         *float64 `json:"x_g,omitempty"`
	YG         *float64 `json:"y_g,omitempty"`
	ZG         *float64 `json:"z_g,omitempty"`
	RPM        *float64 `json:"rpm,omitempty"`
	CoolantC   *float64 `json:"coolant_c,omitempty"`
	FuelPct    *float64 `json:"fuel_pct,omitempty"`
	EventCode  *float64 `json:"event_code,omitempty"`
	Event      *string  `json:"event,omitempty"`
	Severity   *float64 `json:"severity,omitempty"`
	BatteryV   *float64 `json:"battery_v,omitempty"`
}

// NewReadingJSON returns the JSON form of r. It points into r.
func NewReadingJSON(r *records.Reading) ReadingJSON {
	// Every uint64 millisecond has a time (RFC 3339 or not), so a stored
	// reading never fails to print.
	t := time.Unix(int64(r.TimeMs/1000), int64(r.TimeMs%1000)*int64(time.Millisecond)).UTC()
	j := ReadingJSON{
		DeviceID:   strconv.FormatUint(r.DeviceID, 10),
		Time:       t.Format(timeLayout),
		TimeMs:     r.TimeMs,
		ContentCRC: r.ContentCRC,
		Type:       r.Type.String(),
	}
	switch r.Type {
	case protocol.TypeGPS:
		j.LatDeg, j.LonDeg, j.SpeedKmh = &r.LatDeg, &r.LonDeg, &r.SpeedKmh
		j.HeadingDeg, j.Hdop, j.Satellites = &r.HeadingDeg, &r.Hdop, &r.Satellites
	case protocol.TypeAccel:
		j.XG, j.YG, j.ZG = &r.XG, &r.YG, &r.ZG
	case protocol.TypeEngine:
		j.RPM, j.CoolantC, j.FuelPct = &r.RPM, &r.CoolantC, &r.FuelPct
	case protocol.TypeEvent:
		name := eventName(r.EventCode)
		j.EventCode, j.Event, j.Severity = &r.EventCode, &name, &r.Severity
	case protocol.TypeBattery:
		j.BatteryV = &r.BatteryV
	}
	return j
}
