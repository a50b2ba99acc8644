// Package cassandra stores readings in Apache Cassandra: it implements
// sinks.Store on github.com/apache/cassandra-gocql-driver/v2.
//
// # Schema
//
// Open creates the keyspace (Options.Keyspace, default "watershed") if it
// does not exist, and applies the versioned schema (Migrations) recorded
// in its schema_migrations table; concurrent starters are safe (see
// migrate). Readings live in one table:
//
//	readings: PRIMARY KEY ((device_id, day), time_ms, content_crc)
//	          type tinyint, and one double per normal-unit field
//
// device_id is the device id as a bigint in two's complement (DeviceKey:
// ids from 2^63 up are negative); day is the UTC day of the message time,
// time_ms / 86,400,000 (Day); time_ms is the message time in Unix
// milliseconds and content_crc the content CRC (a bigint, so that it
// orders as the unsigned number it is). A partition holds one device's
// day, ordered by time, then CRC: the order of sinks.Store.Readings. Only
// the columns of a reading's type are written (the others are left unset,
// so neither zeros nor tombstones are stored); Readings returns zero for
// the others. A table of the days each device has readings on,
// devices_days ((device_id), day), is written with the rows, so that a
// query without From (or with a wide range) visits only days that exist
// instead of scanning every possible day.
//
// # Writes
//
// Every write is an INSERT of the row's whole identity, marked idempotent:
// writing a reading twice leaves one row, and the driver may retry it.
// Write groups the readings by partition (device, day) and writes each
// group as unlogged batches of at most Options.BatchRows rows, each batch
// within one partition (so it is applied atomically on one replica set
// and costs no batch log), to the partition's replicas (token-aware host
// selection), with at most Options.WriteConcurrency requests in flight
// per store. BenchmarkWrite measures this against one INSERT per row; see
// docs/cassandra.md for the figures behind the choice. The driver retries
// failed requests with capped exponential backoff (Options.Retries,
// RetryMin, RetryMax), except errors that a retry cannot cure.
//
// # Errors
//
// Errors that say the cluster cannot take the write now wrap
// sinks.ErrUnavailable, an outage for the sink whatever Ping answers:
// unavailable replicas (a node of a replicated keyspace down), time-outs,
// overload, no hosts reachable, connection errors, and a done context
// (which also wraps the context's error). A write the cluster answered and
// failed (a server error, a replica's write failure) wraps
// sinks.ErrWriteFailed (see Classify). Permanent
// errors do not: an invalid query, a syntax error, missing rights or bad
// credentials, a value that does not marshal, a message time after
// MaxTimeMs, a closed store (see Permanent).
package cassandra

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
)

// Defaults of Options.
const (
	DefaultKeyspace         = "watershed"
	DefaultConsistency      = gocql.LocalQuorum
	DefaultTimeout          = 10 * time.Second
	DefaultWriteConcurrency = 64
	DefaultBatchRows        = 32
	DefaultRetries          = 3
	DefaultRetryMin         = 100 * time.Millisecond
	DefaultRetryMax         = 2 * time.Second
)

// Options configure a Store.
type Options struct {
	// Hosts are the contact points, "host" or "host:port" (required).
	Hosts []string
	// Keyspace holds the tables (default "watershed"). It is created if
	// missing; names are case-insensitive, letters, digits and '_'.
	Keyspace string
	// Replication of a keyspace that Open creates (default SimpleStrategy,
	// factor 1). An existing keyspace is left as it is.
	Replication Replication
	// Consistency of reads and writes (default LOCAL_QUORUM); see
	// ParseConsistency.
	Consistency gocql.Consistency
	// Username and Password, when Username is set, log in with
	// gocql.PasswordAuthenticator.
	Username, Password string
	// TLS, when set, encrypts the connections with this configuration.
	TLS *tls.Config
	// Timeout bounds each request and each connection attempt (default
	// 10 s).
	Timeout time.Duration
	// WriteConcurrency bounds the write requests in flight from the store
	// (default 64).
	WriteConcurrency int
	// BatchRows is the most rows in one unlogged batch (default 32, which
	// keeps batches of the widest rows under Cassandra's 5 KiB batch size
	// warning).
	BatchRows int
	// Retries is how many times the driver retries a failed request
	// (default 3; negative: none), pausing RetryMin * 2^n, capped at
	// RetryMax (defaults 100 ms and 2 s).
	Retries            int
	RetryMin, RetryMax time.Duration
	// SkipMigrations opens an existing keyspace without creating or
	// migrating anything: Open fails if its schema is not the newest.
	// Readers (watershed readings) use it.
	SkipMigrations bool
	// Logger receives the store's and the driver's logs (default: none).
	Logger *slog.Logger

	// mode chooses the write path (tests and benchmarks compare them).
	mode writeMode
	// dialer, when set, makes the driver's connections (tests cut them).
	dialer gocql.Dialer
}

// writeMode is how Write sends rows.
type writeMode int

const (
	// writeBatched sends unlogged batches of one partition each.
	writeBatched writeMode = iota
	// writePerRow sends one INSERT per row.
	writePerRow
)

// Store is a store of readings and summaries in a Cassandra keyspace. It
// implements sinks.Store and sinks.SummaryStore and is safe for concurrent
// use.
type Store struct {
	opts     Options
	keyspace string
	session  *gocql.Session
	log      *slog.Logger
	// sem bounds the write requests in flight.
	sem chan struct{}

	insertRow, insertDay, selectDays, selectRows string

	mu     sync.RWMutex // guards closed; Close waits for calls holding it shared
	closed bool
}

var (
	_ sinks.Store        = (*Store)(nil)
	_ sinks.SummaryStore = (*Store)(nil)
)

// Open connects to the cluster, creates or migrates the schema (unless
// opts.SkipMigrations) and returns the store. Errors that may pass (no
// host reachable, time-outs) wrap sinks.ErrUnavailable; a refused login
// wraps ErrAuthentication.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	s := &Store{opts: opts, keyspace: strings.ToLower(opts.Keyspace), log: opts.Logger,
		sem: make(chan struct{}, opts.WriteConcurrency)}
	s.prepareStatements()
	session, err := createSession(ctx, s.cluster())
	if err != nil {
		return nil, fmt.Errorf("cassandra: connect to %v: %w", opts.Hosts, classifyConnect(err))
	}
	s.session = session
	if opts.SkipMigrations {
		err = s.checkSchema(ctx)
	} else {
		err = s.migrate(ctx)
	}
	if err != nil {
		session.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, ctx.Err())
		}
		return nil, fmt.Errorf("cassandra: schema of keyspace %s: %w", s.keyspace, Classify(err))
	}
	return s, nil
}

// fill checks o and sets its defaults.
func (o *Options) fill() error {
	if len(o.Hosts) == 0 {
		return errors.New("cassandra: no hosts")
	}
	if o.Keyspace == "" {
		o.Keyspace = DefaultKeyspace
	}
	if !keyspaceName.MatchString(o.Keyspace) {
		return fmt.Errorf("cassandra: keyspace %q: want a letter, then up to 47 letters, digits or '_'", o.Keyspace)
	}
	if err := o.Replication.validate(); err != nil {
		return err
	}
	if o.Consistency == 0 {
		// 0 is ANY, which is no consistency for reads: take it as unset.
		o.Consistency = DefaultConsistency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.WriteConcurrency <= 0 {
		o.WriteConcurrency = DefaultWriteConcurrency
	}
	if o.BatchRows <= 0 {
		o.BatchRows = DefaultBatchRows
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// cluster returns the driver's configuration for s.opts.
func (s *Store) cluster() *gocql.ClusterConfig {
	o := &s.opts
	c := gocql.NewCluster(o.Hosts...)
	if port, ok := commonPort(o.Hosts); ok {
		// The driver connects to the nodes it discovers on c.Port whatever
		// the contact points' ports, so contact points on another port would
		// reach only themselves.
		c.Port = port
	}
	c.Consistency = o.Consistency
	c.SerialConsistency = gocql.LocalSerial
	c.Timeout = o.Timeout
	c.ConnectTimeout = o.Timeout
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	c.RetryPolicy = &retryPolicy{gocql.ExponentialBackoffRetryPolicy{NumRetries: o.Retries, Min: o.RetryMin, Max: o.RetryMax}}
	c.Logger = slogLogger{o.Logger}
	if o.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: o.Username, Password: o.Password}
	}
	if o.TLS != nil {
		c.SslOpts = &gocql.SslOptions{Config: o.TLS.Clone(), EnableHostVerification: !o.TLS.InsecureSkipVerify}
	}
	if o.dialer != nil {
		c.Dialer = o.dialer
	}
	return c
}

// createSession creates the driver's session, giving up when ctx ends
// (the driver's own connect has no context; a session that arrives late
// is closed).
func createSession(ctx context.Context, c *gocql.ClusterConfig) (*gocql.Session, error) {
	type result struct {
		s   *gocql.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.CreateSession()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// checkSchema fails unless the keyspace's schema is the newest.
func (s *Store) checkSchema(ctx context.Context) error {
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	ms := Migrations()
	if want := ms[len(ms)-1].Version; v != want {
		return fmt.Errorf("schema version %d, want %d (a writer, such as `watershed run --store cassandra`, creates it)", v, want)
	}
	return nil
}

// valueColumns are the reading's float fields as columns.
var valueColumns = [...]struct {
	name string
	get  func(*records.Reading) *float64
}{
	{"lat_deg", func(r *records.Reading) *float64 { return &r.LatDeg }},
	{"lon_deg", func(r *records.Reading) *float64 { return &r.LonDeg }},
	{"speed_kmh", func(r *records.Reading) *float64 { return &r.SpeedKmh }},
	{"heading_deg", func(r *records.Reading) *float64 { return &r.HeadingDeg }},
	{"hdop", func(r *records.Reading) *float64 { return &r.Hdop }},
	{"satellites", func(r *records.Reading) *float64 { return &r.Satellites }},
	{"x_g", func(r *records.Reading) *float64 { return &r.XG }},
	{"y_g", func(r *records.Reading) *float64 { return &r.YG }},
	{"z_g", func(r *records.Reading) *float64 { return &r.ZG }},
	{"rpm", func(r *records.Reading) *float64 { return &r.RPM }},
	{"coolant_c", func(r *records.Reading) *float64 { return &r.CoolantC }},
	{"fuel_pct", func(r *records.Reading) *float64 { return &r.FuelPct }},
	{"event_code", func(r *records.Reading) *float64 { return &r.EventCode }},
	{"severity", func(r *records.Reading) *float64 { return &r.Severity }},
	{"battery_v", func(r *records.Reading) *float64 { return &r.BatteryV }},
}

// TypeColumns returns the indexes in valueColumns of the columns of a
// message type: [lo, hi). Unknown types have every column.
func typeColumns(t protocol.MsgType) (lo, hi int) {
	switch t {
	case protocol.TypeGPS:
		return 0, 6
	case protocol.TypeAccel:
		return 6, 9
	case protocol.TypeEngine:
		return 9, 12
	case protocol.TypeEvent:
		return 12, 14
	case protocol.TypeBattery:
		return 14, 15
	}
	return 0, len(valueColumns)
}

// prepareStatements builds the CQL of the store's statements.
func (s *Store) prepareStatements() {
	cols := make([]string, len(valueColumns))
	for i, c := range valueColumns {
		cols[i] = c.name
	}
	all := strings.Join(cols, ", ")
	s.insertRow = fmt.Sprintf("INSERT INTO %s.readings (device_id, day, time_ms, content_crc, type, %s) VALUES (?, ?, ?, ?, ?%s)",
		s.keyspace, all, strings.Repeat(", ?", len(cols)))
	s.insertDay = fmt.Sprintf("INSERT INTO %s.devices_days (device_id, day) VALUES (?, ?)", s.keyspace)
	s.selectDays = fmt.Sprintf("SELECT day FROM %s.devices_days WHERE device_id = ? AND day >= ? AND day <= ?", s.keyspace)
	s.selectRows = fmt.Sprintf("SELECT time_ms, content_crc, type, %s FROM %s.readings WHERE device_id = ? AND day = ? AND (time_ms, content_crc) >= (?, ?) AND (time_ms, content_crc) < (?, ?)",
		all, s.keyspace)
}

// rowArgs returns the bound values of r's INSERT: the columns of other
// types are unset.
func rowArgs(r *records.Reading) []any {
	args := make([]any, 5+len(valueColumns))
	args[0], args[1], args[2], args[3], args[4] = DeviceKey(r.DeviceID), Day(r.TimeMs), int64(r.TimeMs), int64(r.ContentCRC), int8(r.Type)
	lo, hi := typeColumns(r.Type)
	for i, c := range valueColumns {
		if i >= lo && i < hi {
			args[5+i] = *c.get(r)
		} else {
			args[5+i] = gocql.UnsetValue
		}
	}
	return args
}

// partition is the rows of one (device, day).
type partition struct {
	device uint64
	day    int64
	rows   []*records.Reading
}

// partitions groups readings by (device, day), in order of first
// appearance. A reading that appears twice is written once (the last).
func partitions(readings []records.Reading) []partition {
	type key struct {
		device uint64
		day    int64
	}
	type ident struct {
		time uint64
		crc  uint32
	}
	idx := map[key]int{}
	seen := map[key]map[ident]int{}
	var out []partition
	for i := range readings {
		r := &readings[i]
		k := key{r.DeviceID, Day(r.TimeMs)}
		p, ok := idx[k]
		if !ok {
			p = len(out)
			idx[k] = p
			seen[k] = map[ident]int{}
			out = append(out, partition{device: k.device, day: k.day})
		}
		id := ident{r.TimeMs, r.ContentCRC}
		if j, dup := seen[k][id]; dup {
			out[p].rows[j] = r
			continue
		}
		seen[k][id] = len(out[p].rows)
		out[p].rows = append(out[p].rows, r)
	}
	return out
}

// ctxErr returns an error wrapping ctx's error and sinks.ErrUnavailable if
// ctx is done.
func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cassandra: %s: %w: %w", op, sinks.ErrUnavailable, err)
	}
	return nil
}

// acquire holds s.mu shared for one call; the caller must call
// s.mu.RUnlock.
func (s *Store) acquire(op string) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("cassandra: %s: %w", op, ErrClosed)
	}
	return nil
}

// Write stores readings: it returns nil once every row and its day's entry
// in devices_days is written at the store's consistency. After an error
// some rows may be written; writing them again is safe.
func (s *Store) Write(ctx context.Context, readings []records.Reading) error {
	if err := ctxErr(ctx, "write"); err != nil {
		return err
	}
	for i := range readings {
		if readings[i].TimeMs > MaxTimeMs {
			return fmt.Errorf("cassandra: write: reading %d of device %d at %d ms: %w", i, readings[i].DeviceID, readings[i].TimeMs, ErrTimeRange)
		}
	}
	if len(readings) == 0 {
		return nil
	}
	if err := s.acquire("write"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.fanOut(ctx, func(gctx context.Context, send func(func() error)) {
		for _, p := range partitions(readings) {
			if gctx.Err() != nil {
				break
			}
			send(func() error {
				return s.session.Query(s.insertDay, DeviceKey(p.device), p.day).Idempotent(true).ExecContext(gctx)
			})
			switch s.opts.mode {
			case writePerRow:
				for _, r := range p.rows {
					if gctx.Err() != nil {
						break
					}
					send(func() error {
						return s.session.Query(s.insertRow, rowArgs(r)...).Idempotent(true).ExecContext(gctx)
					})
				}
			default:
				for chunk := range slices.Chunk(p.rows, s.opts.BatchRows) {
					if gctx.Err() != nil {
						break
					}
					send(func() error {
						b := s.session.Batch(gocql.UnloggedBatch)
						for _, r := range chunk {
							b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: s.insertRow, Args: rowArgs(r), Idempotent: true})
						}
						return b.ExecContext(gctx)
					})
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("cassandra: write %d readings: %w", len(readings), Classify(err))
	}
	return nil
}

// fanOut runs the requests that queue sends, at most
// Options.WriteConcurrency in flight per store, and returns the first
// error, with ctx's error wrapped in when ctx is done. queue stops
// sending when its context is done.
func (s *Store) fanOut(ctx context.Context, queue func(gctx context.Context, send func(func() error))) error {
	g, gctx := errgroup.WithContext(ctx)
	queue(gctx, func(f func() error) {
		select {
		case s.sem <- struct{}{}:
		case <-gctx.Done():
			return
		}
		g.Go(func() error {
			defer func() { <-s.sem }()
			return f()
		})
	})
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", err, cerr)
		}
	}
	return err
}

// span returns q's positions [lo, hi) within the times the table holds,
// and false if no row can match.
func span(q sinks.Query) (lo, hi sinks.Position, ok bool) {
	lo, h, ok := q.Span()
	hi = sinks.Position{TimeMs: MaxTimeMs + 1}
	if h != nil && h.Less(hi) {
		hi = *h
	}
	return lo, hi, ok && lo.Less(hi)
}

// Readings returns the device's rows in [q.From, q.To) after q.After,
// ordered by message time and content CRC (newest first when q.Newest),
// at most q.Limit of them if it is positive. It reads the device's days in
// the range from devices_days, then each day's partition in order (in
// reverse when q.Newest) until the limit is reached. A negative Limit is
// an error.
func (s *Store) Readings(ctx context.Context, q sinks.Query) ([]records.Reading, error) {
	if err := ctxErr(ctx, "readings"); err != nil {
		return nil, err
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("cassandra: readings: negative limit %d", q.Limit)
	}
	lo, hi, ok := span(q)
	if !ok {
		return nil, nil
	}
	if err := s.acquire("readings"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	fail := func(err error) ([]records.Reading, error) {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", err, cerr)
		}
		return nil, fmt.Errorf("cassandra: readings of device %d: %w", q.DeviceID, Classify(err))
	}
	dev := DeviceKey(q.DeviceID)
	// hi is exclusive: (t, 0) ends on the day of t-1.
	lastDay := Day(hi.TimeMs)
	if hi.ContentCRC == 0 {
		lastDay = Day(hi.TimeMs - 1)
	}
	days, err := s.days(ctx, dev, Day(lo.TimeMs), lastDay)
	if err != nil {
		return fail(err)
	}
	stmt := s.selectRows
	if q.Newest {
		slices.Reverse(days)
		stmt += " ORDER BY time_ms DESC, content_crc DESC"
	}
	var out []records.Reading
	for _, day := range days {
		dlo, dhi := lo, hi
		if start := (sinks.Position{TimeMs: uint64(day) * DayMs}); dlo.Less(start) {
			dlo = start
		}
		if end := (sinks.Position{TimeMs: uint64(day+1) * DayMs}); end.Less(dhi) {
			dhi = end
		}
		hiTime, hiCRC := int64(dhi.TimeMs), int64(dhi.ContentCRC)
		if dhi.TimeMs > MaxTimeMs {
			// Past the last bigint: the same bound, as a CRC past the last.
			hiTime, hiCRC = MaxTimeMs, math.MaxUint32+1
		}
		args := []any{dev, day, int64(dlo.TimeMs), int64(dlo.ContentCRC), hiTime, hiCRC}
		query := stmt
		if q.Limit > 0 {
			query += " LIMIT ?"
			args = append(args, q.Limit-len(out))
		}
		iter := s.session.Query(query, args...).Idempotent(true).PageSize(5000).IterContext(ctx)
		var (
			timeMs, crc int64
			typ         int8
			vals        [len(valueColumns)]*float64
		)
		dest := []any{&timeMs, &crc, &typ}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		for iter.Scan(dest...) {
			r := records.Reading{DeviceID: q.DeviceID, TimeMs: uint64(timeMs), ContentCRC: uint32(crc), Type: protocol.MsgType(typ)}
			lo, hi := typeColumns(r.Type)
			for i := lo; i < hi; i++ {
				if vals[i] != nil {
					*valueColumns[i].get(&r) = *vals[i]
				}
			}
			out = append(out, r)
		}
		if err := iter.Close(); err != nil {
			return fail(err)
		}
		if q.Limit > 0 && len(out) >= q.Limit {
			break
		}
	}
	return out, nil
}

// days returns the device's days in [first, last] that hold rows,
// ascending.
func (s *Store) days(ctx context.Context, dev, first, last int64) ([]int64, error) {
	iter := s.session.Query(s.selectDays, dev, first, last).Idempotent(true).PageSize(5000).IterContext(ctx)
	var days []int64
	var d int64
	for iter.Scan(&d) {
		days = append(days, d)
	}
	if err := iter.Close(); err != nil {
		return nil, err
	}
	return days, nil
}

// Close waits for the calls in progress, then closes the session. Calls
// after Close fail with ErrClosed; closing twice is not an error.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.session.Close()
	return nil
}

// Ping reports whether the cluster answers a trivial query. It implements
// sinks.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.acquire("ping"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.session.Query("SELECT release_version FROM system.local").Idempotent(true).ExecContext(ctx); err != nil {
		return fmt.Errorf("cassandra: ping: %w", Classify(err))
	}
	return nil
}
