package cassandra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

func TestDay(t *testing.T) {
	for _, c := range []struct {
		ms   uint64
		want int64
	}{
		{0, 0},
		{DayMs - 1, 0},
		{DayMs, 1},
		{uint64(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()), 20240},
		{uint64(time.Date(2025, 6, 1, 23, 59, 59, 999e6, time.UTC).UnixMilli()), 20240},
		{uint64(time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC).UnixMilli()), 20241},
		{MaxTimeMs, MaxTimeMs / DayMs},
	} {
		if got := Day(c.ms); got != c.want {
			t.Errorf("Day(%d) = %d, want %d", c.ms, got, c.want)
		}
	}
	// A day is UTC whatever the time's zone was.
	berlin := time.FixedZone("CEST", 2*3600)
	ms := uint64(time.Date(2025, 6, 2, 1, 0, 0, 0, berlin).UnixMilli()) // 2025-06-01T23:00Z
	if got := Day(ms); got != 20240 {
		t.Errorf("Day of 01:00 CEST = %d, want the UTC day 20240", got)
	}
}

func TestDeviceKey(t *testing.T) {
	for _, c := range []struct {
		id   uint64
		want int64
	}{
		{0, 0}, {1, 1}, {math.MaxInt64, math.MaxInt64},
		{1 << 63, math.MinInt64}, {1<<63 + 1, math.MinInt64 + 1}, {math.MaxUint64, -1},
	} {
		if got := DeviceKey(c.id); got != c.want {
			t.Errorf("DeviceKey(%d) = %d, want %d", c.id, got, c.want)
		}
		if back := DeviceID(DeviceKey(c.id)); back != c.id {
			t.Errorf("DeviceID(DeviceKey(%d)) = %d", c.id, back)
		}
	}
}

// requestError is a server error answer with a code.
type requestError struct{ code int }

func (e requestError) Code() int       { return e.code }
func (e requestError) Message() string { return fmt.Sprintf("code %#x", e.code) }
func (e requestError) Error() string   { return e.Message() }

func TestClassify(t *testing.T) {
	// An outage: the cluster cannot take the write now, whatever the rows.
	// gocql's own error types, as the driver returns them (pointers).
	outages := []error{
		&gocql.RequestErrUnavailable{Consistency: gocql.LocalQuorum, Required: 2, Alive: 1},
		&gocql.RequestErrWriteTimeout{Consistency: gocql.LocalQuorum, Received: 1, BlockFor: 2, WriteType: "UNLOGGED_BATCH"},
		&gocql.RequestErrReadTimeout{},
		&gocql.RequestErrOverloaded{},
		&gocql.RequestErrBootstrapping{},
		requestError{gocql.ErrCodeOverloaded},
		requestError{gocql.ErrCodeBootstrapping},
		gocql.ErrNoConnections,
		gocql.ErrConnectionClosed,
		gocql.ErrTimeoutNoResponse,
		gocql.ErrNoConnectionsStarted,
		&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED},
		io.EOF,
		context.DeadlineExceeded,
		context.Canceled,
		fmt.Errorf("wrapped: %w", gocql.ErrNoConnections),
		fmt.Errorf("batch 2: %w", &gocql.RequestErrUnavailable{Consistency: gocql.LocalQuorum, Required: 2, Alive: 1}),
	}
	// The cluster answered and failed the write: may pass, may be the
	// rows' own doing.
	failed := []error{
		&gocql.RequestErrWriteFailure{Consistency: gocql.LocalQuorum, Received: 1, BlockFor: 2, NumFailures: 1},
		&gocql.RequestErrReadFailure{},
		requestError{gocql.ErrCodeServer},
		requestError{gocql.ErrCodeWriteFailure},
		fmt.Errorf("wrapped: %w", requestError{gocql.ErrCodeServer}),
	}
	permanent := []error{
		requestError{gocql.ErrCodeSyntax},
		requestError{gocql.ErrCodeInvalid},
		requestError{gocql.ErrCodeUnauthorized},
		requestError{gocql.ErrCodeCredentials},
		requestError{gocql.ErrCodeConfig},
		requestError{gocql.ErrCodeProtocol},
		gocql.MarshalError("can not marshal"),
		gocql.ErrSessionClosed,
		ErrClosed,
		fmt.Errorf("reading 3: %w", ErrTimeRange),
		fmt.Errorf("wrapped: %w", requestError{gocql.ErrCodeInvalid}),
	}
	for _, err := range outages {
		if Permanent(err) {
			t.Errorf("Permanent(%T %v) = true", err, err)
		}
		if c := Classify(err); !errors.Is(c, sinks.ErrUnavailable) || errors.Is(c, sinks.ErrWriteFailed) || !errors.Is(c, err) {
			t.Errorf("Classify(%T %v) = %v, want it wrapped in sinks.ErrUnavailable only", err, err, c)
		}
	}
	for _, err := range failed {
		if Permanent(err) {
			t.Errorf("Permanent(%T %v) = true", err, err)
		}
		if c := Classify(err); !errors.Is(c, sinks.ErrWriteFailed) || errors.Is(c, sinks.ErrUnavailable) || !errors.Is(c, err) {
			t.Errorf("Classify(%T %v) = %v, want it wrapped in sinks.ErrWriteFailed only", err, err, c)
		}
	}
	for _, err := range permanent {
		if !Permanent(err) {
			t.Errorf("Permanent(%T %v) = false", err, err)
		}
		if c := Classify(err); errors.Is(c, sinks.ErrUnavailable) || errors.Is(c, sinks.ErrWriteFailed) || !errors.Is(c, err) {
			t.Errorf("Classify(%T %v) = %v, want it unchanged", err, err, c)
		}
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	// Classifying twice does not wrap twice.
	for _, err := range []error{io.EOF, requestError{gocql.ErrCodeServer}} {
		once := Classify(err)
		if Classify(once) != once {
			t.Errorf("Classify wraps an already classified %v again", once)
		}
	}
}

// A refused login while the session is created is permanent, with the
// messages gocql and Cassandra give (gocql formats the handshake's error
// into text while it discovers the protocol version); failing to reach the
// cluster stays transient.
func TestClassifyConnect(t *testing.T) {
	discover := func(err error) error {
		return fmt.Errorf("gocql: unable to create session: %w", fmt.Errorf("unable to discover protocol version: %v", err))
	}
	refused := []error{
		discover(errors.New(`authentication required (using "org.apache.cassandra.auth.PasswordAuthenticator")`)),
		discover(errors.New("Provided username cassandra and/or password are incorrect")),
		fmt.Errorf("handshake: %w", requestError{gocql.ErrCodeCredentials}),
	}
	for _, err := range refused {
		c := classifyConnect(err)
		if !errors.Is(c, ErrAuthentication) || errors.Is(c, sinks.ErrUnavailable) || !Permanent(c) {
			t.Errorf("classifyConnect(%v) = %v, want ErrAuthentication, permanent", err, c)
		}
	}
	for _, err := range []error{
		discover(errors.New("dial tcp 127.0.0.1:9042: connect: connection refused")),
		gocql.ErrNoConnectionsStarted,
	} {
		if c := classifyConnect(err); errors.Is(c, ErrAuthentication) || !errors.Is(c, sinks.ErrUnavailable) {
			t.Errorf("classifyConnect(%v) = %v, want it transient", err, c)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	p := &retryPolicy{gocql.ExponentialBackoffRetryPolicy{NumRetries: 3, Min: 10 * time.Millisecond, Max: 40 * time.Millisecond}}
	if got := p.GetRetryType(requestError{gocql.ErrCodeSyntax}); got != gocql.Rethrow {
		t.Errorf("syntax error: retry type %v, want Rethrow", got)
	}
	if got := p.GetRetryType(context.Canceled); got != gocql.Rethrow {
		t.Errorf("cancelled: retry type %v, want Rethrow", got)
	}
	if got := p.GetRetryType(&gocql.RequestErrWriteTimeout{}); got != gocql.RetryNextHost {
		t.Errorf("write time-out: retry type %v, want RetryNextHost", got)
	}
	for n := 1; n <= 8; n++ {
		d := backoff(p.Min, p.Max, n)
		lo := min(float64(p.Min)*math.Pow(2, float64(n-1))-float64(p.Min)/2, float64(p.Max))
		if d > p.Max || float64(d) < lo {
			t.Errorf("backoff of attempt %d = %v, want in [%v, %v]", n, d, time.Duration(lo), p.Max)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p.Attempt(fakeQuery{ctx: ctx, attempts: 1}) {
		t.Error("Attempt with a cancelled context: true")
	}
	if p.Attempt(fakeQuery{ctx: context.Background(), attempts: 4}) {
		t.Error("Attempt beyond NumRetries: true")
	}
	if !p.Attempt(fakeQuery{ctx: context.Background(), attempts: 1}) {
		t.Error("first retry refused")
	}
}

type fakeQuery struct {
	ctx      context.Context
	attempts int
}

func (q fakeQuery) Attempts() int                     { return q.attempts }
func (q fakeQuery) SetConsistency(gocql.Consistency)  {}
func (q fakeQuery) GetConsistency() gocql.Consistency { return gocql.One }
func (q fakeQuery) Context() context.Context          { return q.ctx }

func TestParseConsistency(t *testing.T) {
	for in, want := range map[string]gocql.Consistency{
		"LOCAL_QUORUM": gocql.LocalQuorum, "local_quorum": gocql.LocalQuorum, "local-quorum": gocql.LocalQuorum,
		" quorum ": gocql.Quorum, "one": gocql.One, "ALL": gocql.All, "each_quorum": gocql.EachQuorum,
		"local_one": gocql.LocalOne, "two": gocql.Two, "three": gocql.Three, "any": gocql.Any,
	} {
		got, err := ParseConsistency(in)
		if err != nil || got != want {
			t.Errorf("ParseConsistency(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "most", "local quorum", "SERIALX"} {
		if _, err := ParseConsistency(in); err == nil {
			t.Errorf("ParseConsistency(%q): no error", in)
		}
	}
}

func TestReplication(t *testing.T) {
	for in, want := range map[string]string{
		"":             "{'class': 'SimpleStrategy', 'replication_factor': 1}",
		"3":            "{'class': 'SimpleStrategy', 'replication_factor': 3}",
		"dc2:2, dc1:3": "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}",
		"eu-west.1:3":  "{'class': 'NetworkTopologyStrategy', 'eu-west.1': 3}",
	} {
		r, err := ParseReplication(in)
		if err != nil || r.CQL() != want {
			t.Errorf("ParseReplication(%q).CQL() = %q, %v; want %q", in, r.CQL(), err, want)
		}
	}
	for _, in := range []string{"-1", "dc1", "dc1:0", "dc1:x", "dc'1:3", "dc1:3,"} {
		if _, err := ParseReplication(in); err == nil {
			t.Errorf("ParseReplication(%q): no error", in)
		}
	}
	if (Replication{}).CQL() != "{'class': 'SimpleStrategy', 'replication_factor': 1}" {
		t.Error("zero Replication is not SimpleStrategy 1")
	}
}

func TestOptionsFill(t *testing.T) {
	o := Options{Hosts: []string{"h"}}
	if err := o.fill(); err != nil {
		t.Fatal(err)
	}
	if o.Keyspace != DefaultKeyspace || o.Consistency != gocql.LocalQuorum || o.Timeout != DefaultTimeout ||
		o.WriteConcurrency != DefaultWriteConcurrency || o.BatchRows != DefaultBatchRows || o.Retries != DefaultRetries {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []Options{
		{},
		{Hosts: []string{"h"}, Keyspace: "ks; DROP"},
		{Hosts: []string{"h"}, Keyspace: "1ks"},
		{Hosts: []string{"h"}, Replication: Replication{DataCenters: map[string]int{"dc": 0}}},
	} {
		if err := bad.fill(); err == nil {
			t.Errorf("fill(%+v): no error", bad)
		}
	}
}

func TestPartitions(t *testing.T) {
	day0 := uint64(20240) * DayMs
	rs := []records.Reading{
		{DeviceID: 1, TimeMs: day0 + 5, ContentCRC: 1, BatteryV: 1},
		{DeviceID: 2, TimeMs: day0 + 5, ContentCRC: 1},
		{DeviceID: 1, TimeMs: day0 + DayMs, ContentCRC: 1},
		{DeviceID: 1, TimeMs: day0 + 6, ContentCRC: 1},
		{DeviceID: 1, TimeMs: day0 + 5, ContentCRC: 1, BatteryV: 2}, // rewrite of the first
	}
	ps := partitions(rs)
	if len(ps) != 3 {
		t.Fatalf("%d partitions, want 3: %+v", len(ps), ps)
	}
	if ps[0].device != 1 || ps[0].day != 20240 || len(ps[0].rows) != 2 || ps[0].rows[0].BatteryV != 2 {
		t.Errorf("partition 0: %+v", ps[0])
	}
	if ps[1].device != 2 || len(ps[1].rows) != 1 || ps[2].device != 1 || ps[2].day != 20241 || len(ps[2].rows) != 1 {
		t.Errorf("partitions 1, 2: %+v %+v", ps[1], ps[2])
	}
}

func TestRowArgs(t *testing.T) {
	r := records.Reading{DeviceID: math.MaxUint64, TimeMs: 1748736000123, ContentCRC: 0xffffffff,
		Type: protocol.TypeEngine, RPM: 2450, CoolantC: -12, FuelPct: 0}
	args := rowArgs(&r)
	if len(args) != 5+len(valueColumns) {
		t.Fatalf("%d args", len(args))
	}
	if args[0] != int64(-1) || args[1] != int64(20240) || args[2] != int64(1748736000123) || args[3] != int64(0xffffffff) || args[4] != int8(3) {
		t.Errorf("key args: %v", args[:5])
	}
	for i, c := range valueColumns {
		v := args[5+i]
		switch c.name {
		case "rpm", "coolant_c", "fuel_pct":
			if v != *c.get(&r) {
				t.Errorf("%s = %v", c.name, v)
			}
		default:
			if v != gocql.UnsetValue {
				t.Errorf("%s of an engine reading = %v, want unset", c.name, v)
			}
		}
	}
}

func TestSpan(t *testing.T) {
	ms := func(v int64) time.Time { return time.UnixMilli(v) }
	pos := func(t uint64, crc uint32) sinks.Position { return sinks.Position{TimeMs: t, ContentCRC: crc} }
	at := func(t uint64, crc uint32) *sinks.Position { p := pos(t, crc); return &p }
	end := pos(MaxTimeMs+1, 0)
	for _, c := range []struct {
		name   string
		q      sinks.Query
		lo, hi sinks.Position
		ok     bool
	}{
		{"open", sinks.Query{}, pos(0, 0), end, true},
		{"bounds", sinks.Query{From: ms(5), To: ms(9)}, pos(5, 0), pos(9, 0), true},
		{"sub-millisecond from rounds up", sinks.Query{From: ms(5).Add(time.Microsecond)}, pos(6, 0), end, true},
		{"sub-millisecond to rounds up", sinks.Query{To: ms(9).Add(time.Microsecond)}, pos(0, 0), pos(10, 0), true},
		{"before the epoch", sinks.Query{From: ms(-100), To: ms(-5)}, pos(0, 0), pos(0, 0), false},
		{"empty", sinks.Query{From: ms(9), To: ms(9)}, pos(9, 0), pos(9, 0), false},
		{"far future from", sinks.Query{From: time.Unix(math.MaxInt64/1000, 0).Add(time.Hour)}, pos(0, 0), pos(0, 0), false},
		{"after, oldest first", sinks.Query{From: ms(5), To: ms(9), After: at(7, 3)}, pos(7, 4), pos(9, 0), true},
		{"after the last CRC of a millisecond", sinks.Query{After: at(7, math.MaxUint32)}, pos(8, 0), end, true},
		{"after, newest first", sinks.Query{From: ms(5), To: ms(9), After: at(7, 3), Newest: true}, pos(5, 0), pos(7, 3), true},
		{"after beyond to, newest first", sinks.Query{From: ms(5), To: ms(9), After: at(20, 0), Newest: true}, pos(5, 0), pos(9, 0), true},
		{"after the first row, newest first", sinks.Query{From: ms(5), After: at(5, 0), Newest: true}, pos(5, 0), pos(5, 0), false},
	} {
		lo, hi, ok := span(c.q)
		if ok != c.ok || (ok && (lo != c.lo || hi != c.hi)) {
			t.Errorf("%s: span = %v, %v, %v; want %v, %v, %v", c.name, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}

func TestTypeColumns(t *testing.T) {
	covered := make([]int, len(valueColumns))
	for typ := protocol.TypeGPS; typ <= protocol.TypeBattery; typ++ {
		lo, hi := typeColumns(typ)
		for i := lo; i < hi; i++ {
			covered[i]++
		}
	}
	for i, n := range covered {
		if n != 1 {
			t.Errorf("column %s belongs to %d types, want 1", valueColumns[i].name, n)
		}
	}
}

// TestCommonPort: the driver's port for discovered nodes comes from the
// contact points only when they all name the same one.
func TestCommonPort(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		port  int
		ok    bool
	}{
		{[]string{"127.0.0.1:19042", "127.0.0.2:19042"}, 19042, true},
		{[]string{"127.0.0.1:9042"}, 9042, true},
		{[]string{"127.0.0.1:19042", "127.0.0.2:9042"}, 0, false},
		{[]string{"127.0.0.1", "127.0.0.2:9042"}, 0, false},
		{[]string{"cassandra"}, 0, false},
		{nil, 0, false},
	} {
		port, ok := commonPort(tc.hosts)
		if port != tc.port || ok != tc.ok {
			t.Errorf("commonPort(%q) = %d, %v; want %d, %v", tc.hosts, port, ok, tc.port, tc.ok)
		}
	}
}
