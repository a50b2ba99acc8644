package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/local"
	"github.com/watershed-io/watershed/views"
)

// sinkSubdir is where the local store lives under a data directory: the
// demo keeps its store of readings in <data-dir>/sink.
const sinkSubdir = "sink"

// defaultDataDir is the data directory when neither --data-dir nor the
// environment names one: the same as `watershed run`'s.
const defaultDataDir = "data"

// readingsConfig is what the readings command's flags select.
type readingsConfig struct {
	store     string
	dataDir   string
	query     sinks.Query
	cassandra cassandraFlags
}

// readingsStore opens one kind of store for reading.
type readingsStore struct {
	help string
	open func(ctx context.Context, c readingsConfig) (sinks.Store, error)
}

// readingsStores lists the stores `watershed readings --store` can read.
// A backend adds its case here (and its own flags in runReadings, read
// into readingsConfig).
func readingsStores() map[string]readingsStore {
	return map[string]readingsStore{
		"local":     {"the embedded leveldb store in <data-dir>/" + sinkSubdir, openLocalReadings},
		"cassandra": {"the Cassandra keyspace of --cassandra-hosts and --cassandra-keyspace (read-only: the schema must exist)", openCassandraReadings},
	}
}

// openCassandraReadings opens the Cassandra store of c's flags without
// creating or migrating its schema.
func openCassandraReadings(ctx context.Context, c readingsConfig) (sinks.Store, error) {
	return c.cassandra.open(ctx, slog.New(slog.DiscardHandler), true)
}

// openLocalReadings opens the local store in <data-dir>/sink read-only, so
// that a missing store is an error rather than a new empty one.
func openLocalReadings(_ context.Context, c readingsConfig) (sinks.Store, error) {
	dir := filepath.Join(c.dataDir, sinkSubdir)
	s, err := local.Open(dir, local.Options{ReadOnly: true})
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("no local store in %s (is --data-dir the demo's?): %w", dir, err)
		case errors.Is(err, syscall.EWOULDBLOCK):
			return nil, fmt.Errorf("%w (another process, such as a running demo, holds the store: stop it first)", err)
		}
		return nil, err
	}
	return s, nil
}

// runReadings implements `watershed readings --device ID [--from T] [--to T]
// [--limit N] [--data-dir DIR] [--store local]`: it prints the stored
// readings of a device, ordered by message time and content CRC, one JSON
// object a line. Bad flags exit 2, a store error 1.
func runReadings(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("readings", flag.ContinueOnError)
	fs.SetOutput(stderr)
	device := fs.String("device", "", "device id, decimal (required)")
	from := fs.String("from", "", "first message time, inclusive: RFC 3339 or Unix milliseconds")
	to := fs.String("to", "", "end of message time, exclusive: RFC 3339 or Unix milliseconds")
	limit := fs.Int("limit", 0, "print at most this many readings (0: all)")
	dataDir := fs.String("data-dir", envOr("WATERSHED_DATA_DIR", defaultDataDir), "data directory; the local store is in DIR/"+sinkSubdir+" (env WATERSHED_DATA_DIR)")
	stores := readingsStores()
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range stores {
			if !yield(n) {
				return
			}
		}
	})
	var storeHelp strings.Builder
	storeHelp.WriteString("where the readings are:")
	for _, n := range names {
		fmt.Fprintf(&storeHelp, "\n%s: %s", n, stores[n].help)
	}
	store := fs.String("store", "local", storeHelp.String())
	var cf cassandraFlags
	cf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: watershed readings --device ID [--from T] [--to T] [--limit N] [--data-dir DIR]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Prints the stored readings of a device, ordered by message time, as JSON lines")
		fmt.Fprintln(stderr, "in normal units. The demo keeps its local store in <data-dir>/"+sinkSubdir+"; stop the")
		fmt.Fprintln(stderr, "demo first, since a running one holds the store.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "watershed readings: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	c := readingsConfig{store: *store, dataDir: *dataDir, cassandra: cf}
	if *device == "" {
		return usageErr("--device is required")
	}
	id, err := strconv.ParseUint(*device, 10, 64)
	if err != nil {
		return usageErr("--device %q: not a decimal device id from 0 to 2^64-1", *device)
	}
	c.query.DeviceID = id
	if c.query.From, err = parseReadingsTime(*from); err != nil {
		return usageErr("--from: %v", err)
	}
	if c.query.To, err = parseReadingsTime(*to); err != nil {
		return usageErr("--to: %v", err)
	}
	if *limit < 0 {
		return usageErr("--limit %d: negative", *limit)
	}
	c.query.Limit = *limit
	backend, ok := stores[c.store]
	if ok && c.store == "cassandra" {
		if _, err := cf.options(newLogger(stderr)); err != nil {
			return usageErr("%v", err)
		}
	}
	if !ok {
		return usageErr("--store %q: unknown (stores: %s)", c.store, strings.Join(names, ", "))
	}

	s, err := backend.open(ctx, c)
	if err != nil {
		fmt.Fprintf(stderr, "watershed readings: %v\n", err)
		return 1
	}
	rs, err := s.Readings(ctx, c.query)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(stderr, "watershed readings: %v\n", err)
		return 1
	}
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	for i := range rs {
		if err := enc.Encode(views.NewReadingJSON(&rs[i])); err != nil {
			fmt.Fprintf(stderr, "watershed readings: %v\n", err)
			return 1
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "watershed readings: write output: %v\n", err)
		return 1
	}
	return 0
}

// parseReadingsTime parses an RFC 3339 time or Unix milliseconds (digits
// only); "" is the zero time, an open bound.
func parseReadingsTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if strings.Trim(s, "0123456789") == "" {
		ms, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: Unix milliseconds out of range: %w", s, err)
		}
		return readingsTime(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: neither RFC 3339 nor Unix milliseconds", s)
	}
	return t, nil
}

// readingsTime returns Unix millisecond ms as a UTC time, for every uint64.
func readingsTime(ms uint64) time.Time {
	return time.Unix(int64(ms/1000), int64(ms%1000)*int64(time.Millisecond)).UTC()
}
