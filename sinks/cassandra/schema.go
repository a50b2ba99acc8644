package cassandra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// Migration is one version of the schema: CQL statements applied in order.
// Every statement must be idempotent (IF NOT EXISTS, ADD IF NOT EXISTS,
// ...), since a starter that takes over from one that died may run them
// again. "{ks}" stands for the keyspace.
type Migration struct {
	Version     int
	Description string
	Statements  []string
}

// Migrations returns the schema, oldest version first. Append new
// versions; never change an applied one.
func Migrations() []Migration {
	return []Migration{
		{1, "readings by device and UTC day; the days of each device", []string{
			`CREATE TABLE IF NOT EXISTS {ks}.readings (
			device_id bigint,
			day bigint,
			time_ms bigint,
			content_crc bigint,
			type tinyint,
			lat_deg double,
			lon_deg double,
			speed_kmh double,
			heading_deg double,
			hdop double,
			satellites double,
			x_g double,
			y_g double,
			z_g double,
			rpm double,
			coolant_c double,
			fuel_pct double,
			event_code double,
			severity double,
			battery_v double,
			PRIMARY KEY ((device_id, day), time_ms, content_crc)
		) WITH CLUSTERING ORDER BY (time_ms ASC, content_crc ASC)
		  AND comment = 'watershed: one row per reading, partitioned by device and UTC day'`,
			`CREATE TABLE IF NOT EXISTS {ks}.devices_days (
			device_id bigint,
			day bigint,
			PRIMARY KEY ((device_id), day)
		) WITH CLUSTERING ORDER BY (day ASC)
		  AND comment = 'watershed: the days that hold readings of each device'`,
		}},
		{2, "hourly summaries by device", []string{
			`CREATE TABLE IF NOT EXISTS {ks}.summaries (
			device_id bigint,
			window_start bigint,
			window_end bigint,
			messages bigint,
			gps_fixes bigint,
			distance_m double,
			max_speed_kmh double,
			avg_speed_kmh double,
			harsh frozen<map<int, bigint>>,
			first_ms bigint,
			last_ms bigint,
			PRIMARY KEY ((device_id), window_start)
		) WITH CLUSTERING ORDER BY (window_start ASC)
		  AND comment = 'watershed: one row per device and closed summary window'`,
		}},
	}
}

// migrationLease is how long a starter may hold a migration's claim before
// another starter takes it over (the holder is presumed dead).
const migrationLease = 2 * time.Minute

// migrationPoll is the pause between two looks at a migration that another
// starter is applying.
const migrationPoll = 250 * time.Millisecond

// migrate creates the keyspace and the migrations table if they do not
// exist, then applies every migration not yet recorded as applied.
//
// Concurrent starters are safe: a starter claims a version with a
// lightweight transaction (INSERT ... IF NOT EXISTS on its row of
// schema_migrations); the others wait for the row to say "applied". A
// claim older than migrationLease is taken over (UPDATE ... IF owner =
// the old owner), and since every statement is idempotent, running a
// migration twice is harmless.
func (s *Store) migrate(ctx context.Context) error {
	ks := s.keyspace
	boot := []string{
		fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", ks, s.opts.Replication.CQL()),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.schema_migrations (
			version int PRIMARY KEY,
			description text,
			state text,
			owner text,
			claimed_at timestamp,
			applied_at timestamp
		) WITH comment = 'watershed: applied schema versions'`, ks),
	}
	for _, stmt := range boot {
		if err := s.ddl(ctx, stmt); err != nil {
			return err
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("migration owner id: %w", err)
	}
	owner := hex.EncodeToString(b[:])
	for _, m := range Migrations() {
		if err := s.apply(ctx, m, owner); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.Version, m.Description, err)
		}
	}
	return nil
}

// apply applies m unless it is applied, or waits while another starter
// applies it.
func (s *Store) apply(ctx context.Context, m Migration, owner string) error {
	ks := s.keyspace
	for {
		var state, holder string
		var claimed time.Time
		err := s.session.Query(fmt.Sprintf("SELECT state, owner, claimed_at FROM %s.schema_migrations WHERE version = ?", ks), m.Version).
			Consistency(gocql.LocalSerial).Idempotent(true).ScanContext(ctx, &state, &holder, &claimed)
		switch {
		case errors.Is(err, gocql.ErrNotFound):
			applied, err := s.session.Query(fmt.Sprintf(
				"INSERT INTO %s.schema_migrations (version, description, state, owner, claimed_at) VALUES (?, ?, 'running', ?, ?) IF NOT EXISTS", ks),
				m.Version, m.Description, owner, time.Now()).MapScanCASContext(ctx, map[string]any{})
			if err != nil {
				return fmt.Errorf("claim: %w", err)
			}
			if applied {
				return s.run(ctx, m, owner)
			}
			continue // another starter claimed it first: look again
		case err != nil:
			return fmt.Errorf("read state: %w", err)
		case state == "applied":
			return nil
		case time.Since(claimed) > migrationLease:
			applied, err := s.session.Query(fmt.Sprintf(
				"UPDATE %s.schema_migrations SET owner = ?, claimed_at = ? WHERE version = ? IF owner = ? AND state = 'running'", ks),
				owner, time.Now(), m.Version, holder).MapScanCASContext(ctx, map[string]any{})
			if err != nil {
				return fmt.Errorf("take over the claim of %s: %w", holder, err)
			}
			if applied {
				s.log.Warn("cassandra: taking over a stale schema migration", "version", m.Version, "previous_owner", holder, "claimed_at", claimed)
				return s.run(ctx, m, owner)
			}
			continue
		}
		s.log.Debug("cassandra: waiting for another starter's schema migration", "version", m.Version, "owner", holder)
		t := time.NewTimer(migrationPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// run executes m's statements and records it as applied, if owner still
// holds the claim.
func (s *Store) run(ctx context.Context, m Migration, owner string) error {
	for _, stmt := range m.Statements {
		if err := s.ddl(ctx, strings.ReplaceAll(stmt, "{ks}", s.keyspace)); err != nil {
			return err
		}
	}
	applied, err := s.session.Query(fmt.Sprintf(
		"UPDATE %s.schema_migrations SET state = 'applied', applied_at = ? WHERE version = ? IF owner = ?", s.keyspace),
		time.Now(), m.Version, owner).MapScanCASContext(ctx, map[string]any{})
	if err != nil {
		return fmt.Errorf("record as applied: %w", err)
	}
	if !applied {
		// Another starter took over a claim it thought stale and will
		// record it; the statements ran here, and they are idempotent.
		s.log.Warn("cassandra: schema migration claim was taken over while applying it", "version", m.Version)
	}
	s.log.Info("cassandra: applied schema migration", "keyspace", s.keyspace, "version", m.Version, "description", m.Description)
	return nil
}

// ddl runs one schema statement and waits until the cluster agrees on the
// schema.
func (s *Store) ddl(ctx context.Context, stmt string) error {
	if err := s.session.Query(stmt).Idempotent(true).ExecContext(ctx); err != nil {
		return fmt.Errorf("%s: %w", firstLine(stmt), err)
	}
	if err := s.session.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("schema agreement after %s: %w", firstLine(stmt), err)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "("))
}

// SchemaVersion returns the newest applied schema version of the keyspace
// (0: none).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	iter := s.session.Query(fmt.Sprintf("SELECT version, state FROM %s.schema_migrations", s.keyspace)).
		Idempotent(true).IterContext(ctx)
	var v, newest int
	var state string
	for iter.Scan(&v, &state) {
		if state == "applied" {
			newest = max(newest, v)
		}
	}
	if err := iter.Close(); err != nil {
		return 0, Classify(fmt.Errorf("cassandra: schema version: %w", err))
	}
	return newest, nil
}
