package faults

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/internal/reconcile"
)

// HTTPView is a reconcile.ViewSource that reads device states from a view
// server's API, GET /v1/devices/{id}, and maps the JSON back to
// records.DeviceState.
type HTTPView struct {
	// BaseURL is the view server's base URL ("http://127.0.0.1:8081").
	BaseURL string
	// Key is the API key presented as a bearer token.
	Key string
	// Client sends the requests (default: one with a 10 s timeout).
	Client *http.Client
	// Ctx bounds every request (default context.Background()).
	Ctx context.Context
}

var _ reconcile.ViewSource = (*HTTPView)(nil)

// ErrNotCaughtUp is wrapped by Get's error when the view answers 503.
var ErrNotCaughtUp = errors.New("faults: view not caught up")

// deviceJSON is the part of the view API's answer that the comparison
// reads (views/json.go writes it).
type deviceJSON struct {
	DeviceID         string  `json:"device_id"`
	Messages         uint64  `json:"messages"`
	Duplicates       uint64  `json:"duplicates"`
	Invalid          uint64  `json:"invalid"`
	PackagesRejected uint64  `json:"packages_rejected"`
	LastSeen         *string `json:"last_seen"`
	FirmwareRaw      *uint16 `json:"firmware_raw"`
	ProtocolVersion  uint8   `json:"protocol_version"`
	GPS              *struct {
		Time       string   `json:"time"`
		LatDeg     float64  `json:"lat_deg"`
		LonDeg     float64  `json:"lon_deg"`
		SpeedKmh   float64  `json:"speed_kmh"`
		HeadingDeg float64  `json:"heading_deg"`
		Hdop       *float64 `json:"hdop"`
		Satellites *float64 `json:"satellites"`
	} `json:"gps"`
	Engine *struct {
		Time     string  `json:"time"`
		RPM      float64 `json:"rpm"`
		CoolantC float64 `json:"coolant_c"`
		FuelPct  float64 `json:"fuel_pct"`
	} `json:"engine"`
	Accel *struct {
		Time string  `json:"time"`
		XG   float64 `json:"x_g"`
		YG   float64 `json:"y_g"`
		ZG   float64 `json:"z_g"`
	} `json:"accel"`
	Battery *struct {
		Time     string  `json:"time"`
		BatteryV float64 `json:"battery_v"`
	} `json:"battery"`
	Event *struct {
		Time     string  `json:"time"`
		Code     float64 `json:"code"`
		Severity float64 `json:"severity"`
	} `json:"event"`
}

// Get returns the device's state: found false on 404, an error wrapping
// ErrNotCaughtUp on 503, and an error on any other answer.
func (v *HTTPView) Get(deviceID uint64) (records.DeviceState, bool, error) {
	ctx := v.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	client := v.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	u := strings.TrimSuffix(v.BaseURL, "/") + "/v1/devices/" + strconv.FormatUint(deviceID, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return records.DeviceState{}, false, fmt.Errorf("faults: view request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+v.Key)
	resp, err := client.Do(req)
	if err != nil {
		return records.DeviceState{}, false, fmt.Errorf("faults: view of device %d: %w", deviceID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return records.DeviceState{}, false, fmt.Errorf("faults: view of device %d: %w", deviceID, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return records.DeviceState{}, false, nil
	case http.StatusServiceUnavailable:
		return records.DeviceState{}, false, fmt.Errorf("%w: device %d: %s", ErrNotCaughtUp, deviceID, strings.TrimSpace(string(body)))
	default:
		return records.DeviceState{}, false, fmt.Errorf("faults: view of device %d answered %d: %s", deviceID, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var d deviceJSON
	if err := json.Unmarshal(body, &d); err != nil {
		return records.DeviceState{}, false, fmt.Errorf("faults: view of device %d: %w", deviceID, err)
	}
	st, err := d.state()
	if err != nil {
		return records.DeviceState{}, false, fmt.Errorf("faults: view of device %d: %w", deviceID, err)
	}
	return st, true, nil
}

// state maps the JSON back to a device state.
func (d *deviceJSON) state() (records.DeviceState, error) {
	id, err := strconv.ParseUint(d.DeviceID, 10, 64)
	if err != nil {
		return records.DeviceState{}, fmt.Errorf("device_id %q: %w", d.DeviceID, err)
	}
	s := records.DeviceState{
		DeviceID: id, Messages: d.Messages, Duplicates: d.Duplicates, Invalid: d.Invalid,
		PackagesRejected: d.PackagesRejected, Version: d.ProtocolVersion,
	}
	if d.LastSeen != nil {
		if s.LastSeenMs, err = parseMs(*d.LastSeen); err != nil {
			return s, fmt.Errorf("last_seen: %w", err)
		}
	}
	if d.FirmwareRaw != nil {
		s.Firmware = *d.FirmwareRaw
	}
	add := func(name, at string, r records.Reading) error {
		ms, err := parseMs(at)
		if err != nil {
			return fmt.Errorf("%s time: %w", name, err)
		}
		r.DeviceID, r.TimeMs = id, ms
		s.Latest = append(s.Latest, r)
		return nil
	}
	var errs []error
	if g := d.GPS; g != nil {
		r := records.Reading{Type: protocol.TypeGPS, LatDeg: g.LatDeg, LonDeg: g.LonDeg, SpeedKmh: g.SpeedKmh, HeadingDeg: g.HeadingDeg}
		if g.Hdop != nil {
			r.Hdop = *g.Hdop
		}
		if g.Satellites != nil {
			r.Satellites = *g.Satellites
		}
		errs = append(errs, add("gps", g.Time, r))
	}
	if e := d.Engine; e != nil {
		errs = append(errs, add("engine", e.Time, records.Reading{Type: protocol.TypeEngine, RPM: e.RPM, CoolantC: e.CoolantC, FuelPct: e.FuelPct}))
	}
	if a := d.Accel; a != nil {
		errs = append(errs, add("accel", a.Time, records.Reading{Type: protocol.TypeAccel, XG: a.XG, YG: a.YG, ZG: a.ZG}))
	}
	if b := d.Battery; b != nil {
		errs = append(errs, add("battery", b.Time, records.Reading{Type: protocol.TypeBattery, BatteryV: b.BatteryV}))
	}
	if e := d.Event; e != nil {
		errs = append(errs, add("event", e.Time, records.Reading{Type: protocol.TypeEvent, EventCode: e.Code, Severity: e.Severity}))
	}
	for _, err := range errs {
		if err != nil {
			return s, err
		}
	}
	// A device state holds its latest readings ordered by type.
	slices.SortFunc(s.Latest, func(a, b records.Reading) int { return cmp.Compare(a.Type, b.Type) })
	return s, nil
}

// parseMs reads an RFC 3339 time into Unix milliseconds.
func parseMs(s string) (uint64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("parse time: %w", err)
	}
	return uint64(t.UnixMilli()), nil
}
