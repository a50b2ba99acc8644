package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MarshalVectorJSON returns the JSON form of a decoding result that the
// test vectors' .json files use (PROTOCOL.md, "Test vectors"), indented by
// two spaces with keys sorted as in those files, without a final newline.
// When err is a package rejection (a *PackageError, possibly wrapped) the
// form is {"reject": REASON} and p is not used; any other non-nil err is
// returned wrapped. Otherwise p is the decoded package: device_id is a
// decimal string, firmware appears only for version 2, messages carry their
// type's name, time_ms, crc and their type's fields named with their units
// (hdop_d and satellites only for version 2).
func MarshalVectorJSON(p *Package, err error) ([]byte, error) {
	if err != nil {
		var pe *PackageError
		if !errors.As(err, &pe) {
			return nil, fmt.Errorf("protocol: not a package rejection: %w", err)
		}
		return json.MarshalIndent(map[string]any{"reject": pe.Reason.String()}, "", "  ")
	}
	if p == nil {
		return nil, errors.New("protocol: no package to marshal")
	}
	return json.MarshalIndent(VectorForm(p), "", "  ")
}

// VectorForm returns p in the test vectors' form as generic JSON values
// (maps, slices, strings and integers), as MarshalVectorJSON writes it.
func VectorForm(p *Package) map[string]any {
	h := &p.Header
	out := map[string]any{
		"version":                  h.Version,
		"flags":                    h.Flags,
		"device_id":                strconv.FormatUint(h.DeviceID, 10),
		"package_seq":              h.PackageSeq,
		"base_time_ms":             h.BaseTimeMs,
		"message_count":            h.MessageCount,
		"intra_package_duplicates": p.IntraPackageDuplicates,
	}
	if h.Version == 2 {
		out["firmware"] = h.Firmware
	}
	msgs := make([]any, 0, len(p.Messages))
	for i := range p.Messages {
		msgs = append(msgs, messageForm(h.Version, &p.Messages[i]))
	}
	out["messages"] = msgs
	rej := make([]any, 0, len(p.Rejected))
	for _, r := range p.Rejected {
		rej = append(rej, map[string]any{"index": r.Index, "reason": r.Reason.String()})
	}
	out["rejected"] = rej
	return out
}

func messageForm(version uint8, m *Message) map[string]any {
	o := map[string]any{"type": m.Type.String(), "time_ms": m.TimeMs, "crc": m.CRC}
	switch m.Type {
	case TypeGPS:
		o["lat_e7"] = m.LatE7
		o["lon_e7"] = m.LonE7
		o["speed_dkmh"] = m.SpeedDkmh
		o["heading_deg"] = m.HeadingDeg
		if version >= 2 {
			o["hdop_d"] = m.HdopD
			o["satellites"] = m.Satellites
		}
	case TypeAccel:
		o["x_mg"] = m.XMg
		o["y_mg"] = m.YMg
		o["z_mg"] = m.ZMg
	case TypeEngine:
		o["rpm"] = m.RPM
		o["coolant_raw"] = m.CoolantRaw
		o["fuel_pct"] = m.FuelPct
	case TypeEvent:
		o["code"] = m.Code
		o["severity"] = m.Severity
	case TypeBattery:
		o["millivolts"] = m.Millivolts
	}
	return o
}
