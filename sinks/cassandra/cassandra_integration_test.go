//go:build integration

package cassandra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/sinktest"
	"github.com/watershed-io/watershed/testinfra"
)

// testTimeout bounds the set-up calls of a test; DDL is slow on a busy
// 2-core machine.
const testTimeout = 2 * time.Minute

// testOptions returns options for a fresh keyspace of the test on the test
// cluster (consistency ONE: one node). The keyspace is dropped at the end.
func testOptions(t testing.TB) Options {
	t.Helper()
	hosts := testinfra.Cassandra(t)
	ks := testinfra.KeyspaceName(t)
	t.Cleanup(func() {
		admin := testinfra.CassandraSession(t, hosts, "")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := admin.Query("DROP KEYSPACE IF EXISTS " + ks).ExecContext(ctx); err != nil {
			t.Logf("dropping keyspace %s: %v", ks, err)
		}
	})
	user, password := testinfra.CassandraLogin(t)
	return Options{Hosts: hosts, Keyspace: ks, Consistency: gocql.One, Timeout: 20 * time.Second, Username: user, Password: password}
}

func open(t testing.TB, opts Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Keyspace, err)
	}
	return s
}

// TestIntegrationConformance runs the sinks.Store suite, each subtest on a
// fresh keyspace, with both write paths.
func TestIntegrationConformance(t *testing.T) {
	for _, mode := range []struct {
		name string
		mode writeMode
	}{{"Batched", writeBatched}, {"PerRow", writePerRow}} {
		t.Run(mode.name, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinks.Store {
				opts := testOptions(t)
				opts.mode = mode.mode
				return open(t, opts)
			})
		})
	}
}

// TestIntegrationSummaries runs the sinks.SummaryStore suite, each
// subtest on a fresh keyspace.
func TestIntegrationSummaries(t *testing.T) {
	sinktest.RunSummaries(t, func(t *testing.T) sinks.SummaryStore { return open(t, testOptions(t)) })
}

// TestIntegrationMigrationUpgrade: a keyspace at schema version 1 (before
// summaries) gets version 2 from the next writer, keeping its readings,
// and readers refuse it until then.
func TestIntegrationMigrationUpgrade(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t)
	s := open(t, opts)
	if err := s.Write(ctx, sinktest.Sample(5, 0)); err != nil {
		t.Fatal(err)
	}
	// Back to version 1, as a keyspace written before this version is.
	for _, stmt := range []string{"DROP TABLE %s.summaries", "DELETE FROM %s.schema_migrations WHERE version = 2"} {
		if err := s.session.Query(fmt.Sprintf(stmt, s.keyspace)).ExecContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	ro := opts
	ro.SkipMigrations = true
	if r, err := Open(ctx, ro); err == nil {
		r.Close()
		t.Fatal("a reader opened a keyspace at version 1")
	}
	s = open(t, opts)
	defer s.Close()
	if v, err := s.SchemaVersion(ctx); err != nil || v != 2 {
		t.Fatalf("SchemaVersion = %d, %v; want 2", v, err)
	}
	if err := s.WriteSummaries(ctx, []records.Summary{sinktest.SampleSummary(5, 0)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Readings(ctx, sinks.Query{DeviceID: 5})
	if err != nil || len(got) != len(sinktest.Sample(5, 0)) {
		t.Errorf("readings after the upgrade: %d, %v", len(got), err)
	}
}

// TestIntegrationMigrations opens a keyspace twice in turn and a fresh one
// from several starters at once: every open succeeds, each version is
// recorded once as applied, and the stores share the rows.
func TestIntegrationMigrations(t *testing.T) {
	ctx := context.Background()
	latest := Migrations()[len(Migrations())-1].Version
	checkApplied := func(t *testing.T, s *Store) {
		t.Helper()
		v, err := s.SchemaVersion(ctx)
		if err != nil || v != latest {
			t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, latest)
		}
		var n int
		if err := s.session.Query(fmt.Sprintf("SELECT COUNT(*) FROM %s.schema_migrations", s.keyspace)).ScanContext(ctx, &n); err != nil {
			t.Fatal(err)
		}
		if n != len(Migrations()) {
			t.Errorf("schema_migrations has %d rows, want %d", n, len(Migrations()))
		}
	}

	t.Run("Twice", func(t *testing.T) {
		opts := testOptions(t)
		first := open(t, opts)
		defer first.Close()
		if err := first.Write(ctx, sinktest.Sample(5, 0)); err != nil {
			t.Fatal(err)
		}
		second := open(t, opts)
		defer second.Close()
		checkApplied(t, second)
		got, err := second.Readings(ctx, sinks.Query{DeviceID: 5})
		if err != nil || len(got) != len(sinktest.Sample(5, 0)) {
			t.Fatalf("second store reads %d rows, %v; want the first's %d", len(got), err, len(sinktest.Sample(5, 0)))
		}
		ro := opts
		ro.SkipMigrations = true
		reader := open(t, ro)
		defer reader.Close()
		checkApplied(t, reader)
	})

	t.Run("Concurrent", func(t *testing.T) {
		opts := testOptions(t)
		const starters = 4
		stores := make([]*Store, starters)
		errs := make([]error, starters)
		var wg sync.WaitGroup
		for i := range starters {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, testTimeout)
				defer cancel()
				stores[i], errs[i] = Open(cctx, opts)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("starter %d: %v", i, err)
			}
			defer stores[i].Close()
		}
		checkApplied(t, stores[0])
		for i, s := range stores {
			if err := s.Write(ctx, sinktest.Sample(uint64(i), 0)); err != nil {
				t.Fatalf("starter %d writes: %v", i, err)
			}
		}
		for i := range stores {
			got, err := stores[(i+1)%starters].Readings(ctx, sinks.Query{DeviceID: uint64(i)})
			if err != nil || len(got) != len(sinktest.Sample(0, 0)) {
				t.Errorf("device %d: %d rows, %v", i, len(got), err)
			}
		}
	})

	t.Run("SkipMigrationsOnMissingKeyspace", func(t *testing.T) {
		opts := testOptions(t)
		opts.SkipMigrations = true
		cctx, cancel := context.WithTimeout(ctx, testTimeout)
		defer cancel()
		s, err := Open(cctx, opts)
		if err == nil {
			s.Close()
			t.Fatal("Open with SkipMigrations of a missing keyspace: no error")
		}
		if errors.Is(err, sinks.ErrUnavailable) {
			t.Errorf("missing keyspace is reported as transient: %v", err)
		}
		t.Logf("error: %v", err)
	})
}

// cutDialer dials TCP until cut; then it closes every connection it made
// and refuses new ones, as a network partition would.
type cutDialer struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (d *cutDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("test: network cut")}
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDialer) setCut(cut bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = cut
	if cut {
		for _, c := range d.conns {
			c.Close()
		}
		d.conns = nil
	}
}

// TestIntegrationUnavailable: a cluster that cannot be reached gives
// errors that wrap sinks.ErrUnavailable, at Open and at Write.
func TestIntegrationUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("OpenClosedPort", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cctx, cancel := context.WithTimeout(ctx, testTimeout)
		defer cancel()
		s, err := Open(cctx, Options{Hosts: []string{addr}, Timeout: 2 * time.Second})
		if err == nil {
			s.Close()
			t.Fatal("Open on a closed port: no error")
		}
		if !errors.Is(err, sinks.ErrUnavailable) {
			t.Errorf("Open on a closed port: %v, does not wrap sinks.ErrUnavailable", err)
		}
	})
	t.Run("WriteWhileCut", func(t *testing.T) {
		opts := testOptions(t)
		d := &cutDialer{}
		opts.dialer = d
		opts.Timeout = 2 * time.Second
		opts.RetryMin, opts.RetryMax = 10*time.Millisecond, 50*time.Millisecond
		s := open(t, opts)
		defer s.Close()
		if err := s.Write(ctx, sinktest.Sample(3, 0)); err != nil {
			t.Fatal(err)
		}
		d.setCut(true)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := s.Write(wctx, sinktest.Sample(3, 100))
		if err == nil {
			t.Fatal("Write with the network cut: no error")
		}
		if !errors.Is(err, sinks.ErrUnavailable) {
			t.Errorf("Write with the network cut: %v, does not wrap sinks.ErrUnavailable", err)
		}
		t.Logf("write error: %v", err)
		if _, err := s.Readings(wctx, sinks.Query{DeviceID: 3}); !errors.Is(err, sinks.ErrUnavailable) {
			t.Errorf("Readings with the network cut: %v, does not wrap sinks.ErrUnavailable", err)
		}
	})
}

// TestIntegrationPermanent: errors that a retry cannot cure do not wrap
// sinks.ErrUnavailable.
func TestIntegrationPermanent(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t)
	s := open(t, opts)
	defer s.Close()
	if err := s.Write(ctx, sinktest.Sample(4, 0)); err != nil {
		t.Fatal(err)
	}

	t.Run("TimeOutOfRange", func(t *testing.T) {
		r := records.Reading{DeviceID: 4, TimeMs: MaxTimeMs + 1, Type: protocol.TypeBattery, BatteryV: 12}
		err := s.Write(ctx, []records.Reading{r})
		if err == nil || errors.Is(err, sinks.ErrUnavailable) || !errors.Is(err, ErrTimeRange) {
			t.Errorf("Write of a time after MaxTimeMs: %v, want a permanent ErrTimeRange", err)
		}
	})

	t.Run("TableDropped", func(t *testing.T) {
		admin := testinfra.CassandraSession(t, opts.Hosts, "")
		if err := admin.Query(fmt.Sprintf("DROP TABLE %s.readings", s.keyspace)).ExecContext(ctx); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := s.Write(wctx, sinktest.Sample(4, 100))
		if err == nil {
			t.Fatal("Write to a dropped table: no error")
		}
		if errors.Is(err, sinks.ErrUnavailable) || !Permanent(err) {
			t.Errorf("Write to a dropped table: %v, want a permanent error", err)
		}
		var re gocql.RequestError
		if !errors.As(err, &re) {
			t.Errorf("Write to a dropped table: %v, not the server's answer", err)
		}
		t.Logf("write error: %v", err)
	})

	t.Run("Closed", func(t *testing.T) {
		s2 := open(t, opts)
		s2.Close()
		if err := s2.Write(ctx, sinktest.Sample(4, 0)); !errors.Is(err, ErrClosed) || errors.Is(err, sinks.ErrUnavailable) {
			t.Errorf("Write on a closed store: %v, want permanent ErrClosed", err)
		}
		if err := s2.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// BenchmarkWrite compares the two write paths on the sink's workload: one
// Write per package (rows of one device, usually one day), from one writer
// and from 8 concurrent writers (a sink process owning 8 partitions), and
// a Write of 400 rows of 10 devices. Run it with
//
//	go test -tags integration -run '^$' -bench BenchmarkWrite -benchtime 3s ./sinks/cassandra
//
// against `scripts/infra/infra.sh start cassandra`.
func BenchmarkWrite(b *testing.B) {
	for _, mode := range []struct {
		name string
		mode writeMode
	}{{"Batched", writeBatched}, {"PerRow", writePerRow}} {
		for _, load := range []struct {
			name            string
			devices, perDev int
			writers         int
		}{
			{"package40/writers1", 1, 40, 1},
			{"package40/writers8", 1, 40, 8},
			{"mixed10x40/writers1", 10, 40, 1},
		} {
			b.Run(mode.name+"/"+load.name, func(b *testing.B) {
				opts := testOptions(b)
				opts.mode = mode.mode
				s := open(b, opts)
				defer s.Close()
				ctx := context.Background()
				var seq sync.Mutex
				next := uint64(0)
				batch := func() []records.Reading {
					seq.Lock()
					n := next
					next++
					seq.Unlock()
					rs := make([]records.Reading, 0, load.devices*load.perDev)
					for d := range load.devices {
						for i := range load.perDev {
							rs = append(rs, records.Reading{DeviceID: n%64*16 + uint64(d), TimeMs: 1748736000000 + n*1000 + uint64(i)*20,
								ContentCRC: uint32(i), Type: protocol.TypeGPS, LatDeg: 52.52, LonDeg: 13.405, SpeedKmh: 80, HeadingDeg: 90, Hdop: 0.9, Satellites: 9})
						}
					}
					return rs
				}
				rows := load.devices * load.perDev
				b.ResetTimer()
				var wg sync.WaitGroup
				work := make(chan struct{})
				errs := make(chan error, load.writers)
				for range load.writers {
					wg.Go(func() {
						for range work {
							if err := s.Write(ctx, batch()); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				for b.Loop() {
					work <- struct{}{}
				}
				close(work)
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
