package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks/local"
)

func runReadingsT(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runReadings(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// readingsDataDir writes rs into a local store in <dir>/sink and returns
// dir.
func readingsDataDir(t *testing.T, rs []records.Reading) string {
	t.Helper()
	dir := t.TempDir()
	s, err := local.Open(filepath.Join(dir, "sink"), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// 2025-06-01T00:00:00Z.
const readingsBase = 1748736000000

// readingsFixture returns the readings the tests store.
func readingsFixture() []records.Reading {
	return []records.Reading{
		{DeviceID: 18446744073709551615, TimeMs: readingsBase + 1, ContentCRC: 0xdeadbeef, Type: protocol.TypeGPS,
			LatDeg: 52.52, LonDeg: -13.405, SpeedKmh: 0, HeadingDeg: 271, Hdop: 0.9, Satellites: 11},
		{DeviceID: 18446744073709551615, TimeMs: readingsBase + 1001, ContentCRC: 1, Type: protocol.TypeAccel,
			XG: 0.012, YG: -0.981, ZG: 1},
		{DeviceID: 18446744073709551615, TimeMs: readingsBase + 2002, ContentCRC: 2, Type: protocol.TypeEngine,
			RPM: 2450, CoolantC: -12, FuelPct: 63},
		{DeviceID: 18446744073709551615, TimeMs: readingsBase + 3003, ContentCRC: 3, Type: protocol.TypeEvent,
			EventCode: 3, Severity: 2},
		{DeviceID: 18446744073709551615, TimeMs: readingsBase + 4004, ContentCRC: 4, Type: protocol.TypeBattery,
			BatteryV: 12.604},
		// Another device: never listed for the first.
		{DeviceID: 5, TimeMs: readingsBase, ContentCRC: 9, Type: protocol.TypeBattery, BatteryV: 11},
	}
}

// readingsLines returns the lines for readingsFixture's first device.
func readingsLines() []string {
	return []string{
		`{"device_id":"18446744073709551615","time":"2025-06-01T00:00:00.001Z","time_ms":1748736000001,"content_crc":3735928559,"type":"gps","lat_deg":52.52,"lon_deg":-13.405,"speed_kmh":0,"heading_deg":271,"hdop":0.9,"satellites":11}`,
		`{"device_id":"18446744073709551615","time":"2025-06-01T00:00:01.001Z","time_ms":1748736001001,"content_crc":1,"type":"accel","x_g":0.012,"y_g":-0.981,"z_g":1}`,
		`{"device_id":"18446744073709551615","time":"2025-06-01T00:00:02.002Z","time_ms":1748736002002,"content_crc":2,"type":"engine","rpm":2450,"coolant_c":-12,"fuel_pct":63}`,
		`{"device_id":"18446744073709551615","time":"2025-06-01T00:00:03.003Z","time_ms":1748736003003,"content_crc":3,"type":"event","event_code":3,"event":"harsh_brake","severity":2}`,
		`{"device_id":"18446744073709551615","time":"2025-06-01T00:00:04.004Z","time_ms":1748736004004,"content_crc":4,"type":"battery","battery_v":12.604}`,
	}
}

// checkLines compares output lines with want, key for key and in order of
// keys.
func checkLines(t *testing.T, out string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if out == "" {
		lines = nil
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i := range lines {
		if !json.Valid([]byte(lines[i])) {
			t.Errorf("line %d is not JSON: %s", i, lines[i])
		}
		if lines[i] != want[i] {
			t.Errorf("line %d:\ngot:  %s\nwant: %s", i, lines[i], want[i])
		}
	}
}

func TestReadingsListsDevice(t *testing.T) {
	dir := readingsDataDir(t, readingsFixture())
	code, out, errOut := runReadingsT(t, "--device", "18446744073709551615", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	checkLines(t, out, readingsLines())

	code, out, errOut = runReadingsT(t, "--device", "5", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("device 5: exit %d, stderr: %s", code, errOut)
	}
	checkLines(t, out, []string{`{"device_id":"5","time":"2025-06-01T00:00:00.000Z","time_ms":1748736000000,"content_crc":9,"type":"battery","battery_v":11}`})

	code, out, _ = runReadingsT(t, "--device", "6", "--data-dir", dir)
	if code != 0 || out != "" {
		t.Errorf("unknown device: exit %d, output %q; want 0 and nothing", code, out)
	}
}

func TestReadingsBounds(t *testing.T) {
	dir := readingsDataDir(t, readingsFixture())
	dev := "18446744073709551615"
	readingsWant := readingsLines()
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"from rfc3339", []string{"--from", "2025-06-01T00:00:01.001Z"}, readingsWant[1:]},
		{"from unix ms", []string{"--from", "1748736001002"}, readingsWant[2:]},
		{"to exclusive", []string{"--to", "1748736002002"}, readingsWant[:2]},
		{"from and to with offset", []string{"--from", "2025-06-01T02:00:01+02:00", "--to", "2025-06-01T00:00:03.004Z"}, readingsWant[1:4]},
		{"limit", []string{"--limit", "2"}, readingsWant[:2]},
		{"from and limit", []string{"--from", "1748736001001", "--limit", "1"}, readingsWant[1:2]},
		{"limit 0 is all", []string{"--limit", "0"}, readingsWant},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runReadingsT(t, append([]string{"--device", dev, "--data-dir", dir}, c.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr: %s", code, errOut)
			}
			checkLines(t, out, c.want)
		})
	}
}

func TestReadingsBadFlags(t *testing.T) {
	dir := readingsDataDir(t, readingsFixture())
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"missing device", []string{"--data-dir", dir}, "--device is required"},
		{"negative device", []string{"--device", "-1", "--data-dir", dir}, "--device"},
		{"device too large", []string{"--device", "18446744073709551616", "--data-dir", dir}, "--device"},
		{"hex device", []string{"--device", "0x10", "--data-dir", dir}, "--device"},
		{"bad from", []string{"--device", "5", "--from", "yesterday", "--data-dir", dir}, "--from"},
		{"bad to", []string{"--device", "5", "--to", "2025-06-01", "--data-dir", dir}, "--to"},
		{"to ms out of range", []string{"--device", "5", "--to", "99999999999999999999", "--data-dir", dir}, "--to"},
		{"negative limit", []string{"--device", "5", "--limit", "-1", "--data-dir", dir}, "--limit"},
		{"limit not a number", []string{"--device", "5", "--limit", "many", "--data-dir", dir}, "limit"},
		{"unknown flag", []string{"--device", "5", "--nope"}, "nope"},
		{"extra argument", []string{"--device", "5", "--data-dir", dir, "extra"}, "extra"},
		{"cassandra without hosts", []string{"--device", "5", "--store", "cassandra", "--cassandra-hosts", ""}, "--cassandra-hosts"},
		{"cassandra bad consistency", []string{"--device", "5", "--store", "cassandra", "--cassandra-hosts", "h", "--cassandra-consistency", "most"}, "--cassandra-consistency"},
		{"unknown store", []string{"--device", "5", "--store", "redis"}, "unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runReadingsT(t, c.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errOut, c.msg) {
				t.Errorf("stderr %q does not mention %q", errOut, c.msg)
			}
		})
	}
}

func TestReadingsStoreErrors(t *testing.T) {
	// No store in the data directory: a store error, and no store created.
	empty := t.TempDir()
	code, _, errOut := runReadingsT(t, "--device", "5", "--data-dir", empty)
	if code != 1 || !strings.Contains(errOut, "no local store") {
		t.Errorf("missing store: exit %d, stderr %q; want 1 and 'no local store'", code, errOut)
	}
	if code, _, _ := runReadingsT(t, "--device", "5", "--data-dir", empty); code != 1 {
		t.Errorf("missing store, second run: exit %d, want 1 (the first run must not create one)", code)
	}

	// A writer holds the store.
	dir := readingsDataDir(t, readingsFixture())
	s, err := local.Open(filepath.Join(dir, "sink"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, out, errOut := runReadingsT(t, "--device", "5", "--data-dir", dir)
	if code != 1 || out != "" {
		t.Errorf("store held by a writer: exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if !strings.Contains(errOut, "holds the store") {
		t.Errorf("store held by a writer: stderr %q does not say so", errOut)
	}
}

func TestReadingsCancelled(t *testing.T) {
	dir := readingsDataDir(t, readingsFixture())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	if code := runReadings(ctx, []string{"--device", "5", "--data-dir", dir}, nil, &stdout, &stderr); code != 1 {
		t.Errorf("cancelled: exit %d, want 1; stderr: %s", code, stderr.String())
	}
}
