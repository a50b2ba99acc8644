package views

import (
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
)

// t0 is 2024-05-01T12:00:00.000Z in Unix ms.
const t0 = 1714564800000

// stateV2 is a version 2 device with every kind of reading, built from
// wire messages as the pipeline builds it.
func stateV2() records.DeviceState {
	const id = 18446744073709551615
	s := records.DeviceState{
		DeviceID: id, Messages: 120, Duplicates: 3, Invalid: 1, PackagesRejected: 2,
		LastSeenMs: t0 + 123, Version: 2, Firmware: 2<<8 | 3,
		Silent: true, SilentAlerts: 2, BackAlerts: 1,
	}
	for _, m := range []protocol.Message{
		{Type: protocol.TypeGPS, TimeMs: t0, LatE7: 525200000, LonE7: 134050000, SpeedDkmh: 875, HeadingDeg: 270, HdopD: 9, Satellites: 11},
		{Type: protocol.TypeAccel, TimeMs: t0 + 1, XMg: 12, YMg: -250, ZMg: 1003},
		{Type: protocol.TypeEngine, TimeMs: t0 + 20, RPM: 2100, CoolantRaw: 128, FuelPct: 64},
		{Type: protocol.TypeEvent, TimeMs: t0 + 123, Code: uint8(protocol.EventHarshBrake), Severity: 4},
		{Type: protocol.TypeBattery, TimeMs: t0 - 60000, Millivolts: 12600},
	} {
		s.Observe(records.NewReading(id, &m))
	}
	return s
}

const wantV2 = `{
	"device_id": "18446744073709551615",
	"messages": 120, "duplicates": 3, "invalid": 1, "packages_rejected": 2,
	"silent": true, "silent_alerts": 2, "back_alerts": 1,
	"last_seen": "2024-05-01T12:00:00.123Z",
	"firmware": "2.3", "firmware_raw": 515,
	"protocol_version": 2,
	"gps": {"time": "2024-05-01T12:00:00.000Z", "lat_deg": 52.52, "lon_deg": 13.405,
		"speed_kmh": 87.5, "heading_deg": 270, "hdop": 0.9, "satellites": 11},
	"engine": {"time": "2024-05-01T12:00:00.020Z", "rpm": 2100, "coolant_c": 88, "fuel_pct": 64},
	"accel": {"time": "2024-05-01T12:00:00.001Z", "x_g": 0.012, "y_g": -0.25, "z_g": 1.003},
	"battery": {"time": "2024-05-01T11:59:00.000Z", "battery_v": 12.6},
	"event": {"time": "2024-05-01T12:00:00.123Z", "code": 3, "name": "harsh_brake", "severity": 4}
}`

// stateV1 is a version 1 device: no firmware, battery, hdop or
// satellites, and a negative position and temperature.
func stateV1() records.DeviceState {
	const id = 1001
	s := records.DeviceState{DeviceID: id, Messages: 7, LastSeenMs: 999, Version: 1}
	for _, m := range []protocol.Message{
		{Type: protocol.TypeGPS, TimeMs: 999, LatE7: -339249000, LonE7: -1802000, SpeedDkmh: 0, HeadingDeg: 0},
		{Type: protocol.TypeEngine, TimeMs: 5, RPM: 0, CoolantRaw: 10, FuelPct: 100},
	} {
		s.Observe(records.NewReading(id, &m))
	}
	return s
}

const wantV1 = `{
	"device_id": "1001",
	"messages": 7, "duplicates": 0, "invalid": 0, "packages_rejected": 0,
	"silent": false, "silent_alerts": 0, "back_alerts": 0,
	"last_seen": "1970-01-01T00:00:00.999Z",
	"protocol_version": 1,
	"gps": {"time": "1970-01-01T00:00:00.999Z", "lat_deg": -33.9249, "lon_deg": -0.1802,
		"speed_kmh": 0, "heading_deg": 0},
	"engine": {"time": "1970-01-01T00:00:00.005Z", "rpm": 0, "coolant_c": -30, "fuel_pct": 100}
}`

func TestDeviceV2AllFields(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV2())
	w := hs.get(t, "/v1/devices/18446744073709551615", testKey)
	if w.Code != http.StatusOK {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	if got, want := w.Body.String(), compact(t, wantV2); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

func TestDeviceV1(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	w := hs.get(t, "/v1/devices/1001", testKey)
	if w.Code != http.StatusOK {
		t.Fatalf("code %d: %s", w.Code, w.Body)
	}
	if got, want := w.Body.String(), compact(t, wantV1); got != want {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
	for _, absent := range []string{"firmware", "hdop", "satellites", "battery", "accel", "event"} {
		if strings.Contains(w.Body.String(), `"`+absent) {
			t.Errorf("body has %q: %s", absent, w.Body)
		}
	}
}

func TestDeviceWithoutMessages(t *testing.T) {
	hs := newHarness(t, Keys{}, records.DeviceState{DeviceID: 5, Invalid: 2, PackagesRejected: 1, Version: 2, Firmware: 1<<8 | 2})
	w := hs.get(t, "/v1/devices/5", testKey)
	want := `{"device_id":"5","messages":0,"duplicates":0,"invalid":2,"packages_rejected":1,` +
		`"silent":false,"silent_alerts":0,"back_alerts":0,"last_seen":null,` +
		`"firmware":"1.2","firmware_raw":258,"protocol_version":2}` + "\n"
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Errorf("got %d %s\nwant 200 %s", w.Code, w.Body, want)
	}
}

func TestTimeFormat(t *testing.T) {
	for _, c := range []struct {
		ms   uint64
		want string
	}{
		{0, `"1970-01-01T00:00:00.000Z"`},
		{1, `"1970-01-01T00:00:00.001Z"`},
		{t0 + 123, `"2024-05-01T12:00:00.123Z"`},
		{t0 + 1000, `"2024-05-01T12:00:01.000Z"`},
		{maxTimeMs, `"9999-12-31T23:59:59.999Z"`},
	} {
		b, err := msTime(c.ms).MarshalJSON()
		if err != nil || string(b) != c.want {
			t.Errorf("%d: got %s, %v; want %s", c.ms, b, err, c.want)
		}
	}
	if b, err := msTime(maxTimeMs + 1).MarshalJSON(); err == nil {
		t.Errorf("after year 9999: got %s, want an error", b)
	}
}

func TestTimeBeyondRFC3339Is500(t *testing.T) {
	s := records.DeviceState{DeviceID: 9, LastSeenMs: 1 << 63}
	hs := newHarness(t, Keys{}, s)
	w := hs.get(t, "/v1/devices/9", testKey)
	if w.Code != http.StatusInternalServerError || w.Body.String() != bodyInternal {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
}

func TestEventNames(t *testing.T) {
	for c, want := range map[float64]string{1: "ignition_on", 3: "harsh_brake", 8: "idling", 9: "event(9)", 0: "event(0)", 255: "event(255)", 256: "event(256)", 1.5: "event(1.5)", -1: "event(-1)"} {
		if got := eventName(c); got != want {
			t.Errorf("eventName(%v) = %q, want %q", c, got, want)
		}
	}
}

func TestUnknownDevice(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	for _, id := range []string{"1002", "0", "18446744073709551615"} {
		w := hs.get(t, "/v1/devices/"+id, testKey)
		if w.Code != http.StatusNotFound || w.Body.String() != `{"error":"unknown device"}`+"\n" {
			t.Errorf("%s: got %d %s", id, w.Code, w.Body)
		}
	}
}

func TestMalformedDeviceIDs(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	for _, id := range []string{
		"", "18446744073709551616", "99999999999999999999999", "-1", "+1", "1e3", " 1", "1 ", "0x10",
		"01", "00", "1.0", "1,0", "1/", "1/2", "/1", "１", "1\x00", "abc", "%31", "%2B1", "1%00",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		u, err := url.Parse("/v1/devices/" + id)
		if err != nil {
			// Not a parseable target: set the decoded path directly, as a
			// server would for its escaped form.
			u = &url.URL{Path: "/v1/devices/" + id}
		}
		r.URL = u
		r.Header.Set("Authorization", "Bearer "+testKey)
		w := hs.do(t, r)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%q: got %d %s, want 400", id, w.Code, w.Body)
		}
	}
}

func TestParseDeviceID(t *testing.T) {
	for s, want := range map[string]uint64{"0": 0, "1": 1, "1001": 1001, "18446744073709551615": 1<<64 - 1} {
		got, err := ParseDeviceID(s)
		if err != nil || got != want {
			t.Errorf("ParseDeviceID(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "18446744073709551616", "-1", "+1", " 1", "0x10", "1e3", "01", "1_000"} {
		if _, err := ParseDeviceID(s); !errors.Is(err, ErrMalformedDeviceID) {
			t.Errorf("ParseDeviceID(%q): error %v, want ErrMalformedDeviceID", s, err)
		}
	}
}

func TestQueryRejected(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	for _, target := range []string{"/v1/devices/1001?x=1", "/v1/devices/1001?"} {
		w := hs.get(t, target, testKey)
		if w.Code != http.StatusBadRequest || w.Body.String() != bodyQuery {
			t.Errorf("%s: got %d %s", target, w.Code, w.Body)
		}
	}
}

func TestNotFoundPaths(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	for _, p := range []string{"/", "/v1/devices", "/v1/device/1001", "/v2/devices/1001", "//v1/devices/1001", "/v1//devices/1001"} {
		w := hs.get(t, p, testKey)
		if w.Code != http.StatusNotFound || w.Body.String() != bodyNotFound {
			t.Errorf("%s: got %d %s", p, w.Code, w.Body)
		}
	}
}

func TestUnauthorized(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	for name, headers := range map[string][]string{
		"missing":         nil,
		"wrong key":       {"Bearer not-the-key"},
		"prefix of key":   {"Bearer " + testKey[:len(testKey)-1]},
		"longer key":      {"Bearer " + testKey + "x"},
		"trailing space":  {"Bearer " + testKey + " "},
		"two spaces":      {"Bearer  " + testKey},
		"no key":          {"Bearer "},
		"scheme only":     {"Bearer"},
		"basic":           {"Basic " + testKey},
		"bare key":        {testKey},
		"two headers":     {"Bearer " + testKey, "Bearer " + testKey},
		"empty header":    {""},
		"key in password": {"Bearer:" + testKey},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v1/devices/1001", nil)
		for _, h := range headers {
			r.Header.Add("Authorization", h)
		}
		w := hs.do(t, r)
		if w.Code != http.StatusUnauthorized || w.Body.String() != bodyUnauthorized {
			t.Errorf("%s: got %d %s", name, w.Code, w.Body)
		}
		if a := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(a, "Bearer") {
			t.Errorf("%s: WWW-Authenticate = %q", name, a)
		}
	}
	// The scheme is case-insensitive.
	r := httptest.NewRequest(http.MethodGet, "/v1/devices/1001", nil)
	r.Header.Set("Authorization", "bearer "+testKey)
	if w := hs.do(t, r); w.Code != http.StatusOK {
		t.Errorf("lowercase scheme: got %d %s", w.Code, w.Body)
	}
}

// TestUnauthorizedBeforeID checks that a client without a key learns
// nothing about ids or readiness.
func TestUnauthorizedBeforeID(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	hs.src.setReady(errors.New("catching up"))
	for _, p := range []string{"/v1/devices/1001", "/v1/devices/x", "/v1/devices/1?q"} {
		if w := hs.get(t, p, ""); w.Code != http.StatusUnauthorized {
			t.Errorf("%s: got %d %s", p, w.Code, w.Body)
		}
	}
}

// scopedKeys has keys for fleet north, for device 3001 alone, and for
// fleet south plus device 1001.
func scopedKeys(t testing.TB) Keys {
	t.Helper()
	k, err := NewKeys(map[string]Scope{
		testKey:                        {All: true},
		"north-key-0123456789abcdef":   {Fleets: []string{"north"}},
		"device-key-0123456789abcdef":  {Devices: []uint64{3001}},
		"south-plus-0123456789abcdef":  {Fleets: []string{"south"}, Devices: []uint64{1001}},
		"empty-fleet-0123456789abcdef": {Fleets: []string{"north", "south"}},
	}, map[uint64]string{1001: "north", 1002: "north", 2001: "south"})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestScopes(t *testing.T) {
	var states []records.DeviceState
	for _, id := range []uint64{1001, 1002, 2001, 3001} {
		states = append(states, records.DeviceState{DeviceID: id, Version: 1})
	}
	hs := newHarness(t, scopedKeys(t), states...)
	sees := map[string][]uint64{
		testKey:                       {1001, 1002, 2001, 3001},
		"north-key-0123456789abcdef":  {1001, 1002},
		"device-key-0123456789abcdef": {3001},
		"south-plus-0123456789abcdef": {1001, 2001},
	}
	for key, visible := range sees {
		for _, id := range []uint64{1001, 1002, 2001, 3001, 4001} {
			path := "/v1/devices/" + strconv.FormatUint(id, 10)
			w := hs.get(t, path, key)
			want := http.StatusNotFound
			for _, v := range visible {
				if v == id {
					want = http.StatusOK
				}
			}
			if w.Code != want {
				t.Errorf("key %s, device %d: got %d %s, want %d", key, id, w.Code, w.Body, want)
			}
		}
	}
}

// TestOutOfScopeLikeUnknown checks that a device outside the key's scope
// answers exactly what an unknown device answers.
func TestOutOfScopeLikeUnknown(t *testing.T) {
	hs := newHarness(t, scopedKeys(t), records.DeviceState{DeviceID: 2001, Version: 1})
	outside := hs.get(t, "/v1/devices/2001", "north-key-0123456789abcdef")
	unknown := hs.get(t, "/v1/devices/1002", "north-key-0123456789abcdef")
	if outside.Code != http.StatusNotFound || unknown.Code != http.StatusNotFound {
		t.Fatalf("codes %d and %d, want 404", outside.Code, unknown.Code)
	}
	if outside.Body.String() != unknown.Body.String() {
		t.Errorf("bodies differ: %q and %q", outside.Body, unknown.Body)
	}
	if len(outside.Header()) != len(unknown.Header()) {
		t.Errorf("headers differ: %v and %v", outside.Header(), unknown.Header())
	}
	for k := range unknown.Header() {
		if outside.Header().Get(k) != unknown.Header().Get(k) {
			t.Errorf("header %s differs: %q and %q", k, outside.Header().Get(k), unknown.Header().Get(k))
		}
	}
}

func TestNotReady(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	hs.src.setReady(errors.New("views: device-state view not ready: catching up with the table"))
	for _, id := range []string{"1001", "4242"} {
		w := hs.get(t, "/v1/devices/"+id, testKey)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: got %d %s", id, w.Code, w.Body)
		}
		if ra := w.Header().Get("Retry-After"); ra != "5" {
			t.Errorf("Retry-After = %q", ra)
		}
		// The reason is for the operators' listener, not API clients.
		if w.Body.String() != bodyNotReady {
			t.Errorf("body %s, want %s without the reason", w.Body, bodyNotReady)
		}
	}
	hs.src.setReady(nil)
	if w := hs.get(t, "/v1/devices/1001", testKey); w.Code != http.StatusOK {
		t.Errorf("ready: got %d %s", w.Code, w.Body)
	}
}

func TestRetryAfterOption(t *testing.T) {
	keys, err := FullScopeKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	src := newFakeSource()
	src.setReady(errors.New("no"))
	srv, err := New(Options{Source: src, Keys: keys, RetryAfter: 1500_000_000})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/devices/1", nil)
	r.Header.Set("Authorization", "Bearer "+testKey)
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, r)
	if ra := w.Header().Get("Retry-After"); w.Code != http.StatusServiceUnavailable || ra != "2" {
		t.Errorf("got %d, Retry-After %q; want 503, 2", w.Code, ra)
	}
}

func TestSourceError(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	hs.src.getErr = errors.New("leveldb: corrupted block 77")
	w := hs.get(t, "/v1/devices/1001", testKey)
	if w.Code != http.StatusInternalServerError || w.Body.String() != bodyInternal {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
	if !strings.Contains(hs.log.String(), "corrupted block 77") {
		t.Errorf("log lacks the detail: %s", hs.log)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions, "BREW"} {
		r := httptest.NewRequest(m, "/v1/devices/1001", nil)
		r.Header.Set("Authorization", "Bearer "+testKey)
		w := httptest.NewRecorder()
		hs.h.ServeHTTP(w, r)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodGet {
			t.Errorf("%s: got %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", m, ct)
		}
	}
}

func TestMetrics(t *testing.T) {
	hs := newHarness(t, Keys{}, stateV1())
	hs.get(t, "/v1/devices/1001", testKey)
	hs.get(t, "/v1/devices/1001", testKey)
	hs.get(t, "/v1/devices/1002", testKey)
	hs.get(t, "/v1/devices/1001", "")
	mfs, err := hs.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]float64{}
	var observed uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "watershed_view_requests_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "code" {
						codes[l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			case "watershed_view_request_duration_seconds":
				observed = m.GetHistogram().GetSampleCount()
			}
		}
	}
	if want := map[string]float64{"200": 2, "404": 1, "401": 1}; !maps.Equal(codes, want) {
		t.Errorf("requests by code %v, want %v", codes, want)
	}
	if observed != 4 {
		t.Errorf("%d durations observed, want 4", observed)
	}
}

func TestNewErrors(t *testing.T) {
	keys, err := FullScopeKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Keys: keys}); err == nil {
		t.Error("no source: no error")
	}
	if _, err := New(Options{Source: newFakeSource()}); err == nil {
		t.Error("no keys: no error")
	}
	hs := newHarness(t, Keys{})
	if _, err := New(Options{Source: newFakeSource(), Keys: keys, Registerer: hs.reg}); err == nil {
		t.Error("metrics registered twice: no error")
	}
}

// TestConcurrent serves requests in parallel, for the race detector.
func TestConcurrent(t *testing.T) {
	hs := newHarness(t, scopedKeys(t), stateV1(), stateV2())
	done := make(chan struct{})
	for i := 0; i < 8; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := 0; j < 50; j++ {
				r := httptest.NewRequest(http.MethodGet, "/v1/devices/1001", nil)
				r.Header.Set("Authorization", "Bearer north-key-0123456789abcdef")
				w := httptest.NewRecorder()
				hs.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					t.Errorf("got %d", w.Code)
					return
				}
			}
		}()
	}
	for i := 0; i < 8; i++ {
		<-done
	}
}
