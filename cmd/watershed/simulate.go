package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/watershed-io/watershed/simulator"
)

// runSimulate is `watershed simulate`: it plays a fleet of devices against
// the ingest edge, with faults, and prints the ground truth's summary as
// JSON on the last line of stdout when it stops (after --duration, or when
// interrupted).
func runSimulate(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ingest := fs.String("ingest", simulateEnv("WATERSHED_INGEST_URL", "http://127.0.0.1:8080"), "ingest edge base URL (env WATERSHED_INGEST_URL)")
	devices := fs.Int("devices", 100, "number of simulated devices")
	rate := fs.Float64("rate", 50, "packages per second across the fleet (0: as fast as possible)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	packages := fs.Int("packages", 0, "stop after this many packages (0: no limit)")
	seed := fs.Int64("seed", 1, "seed of the generated fleet and packages")
	secretFlag := newSecretFlag(fs, "device-secret", "WATERSHED_DEVICE_SECRET", "device secret", "the edge's device secret", demoDeviceSecret)
	tokenVersion := fs.Int("token-version", 1, "device token version: 1 (never expires) or 2 (device, expiry and key generation 0, signed with the device's derived key)")
	tokenTTL := fs.Duration("token-ttl", 24*time.Hour, "how long version 2 tokens are valid")
	faults := fs.String("faults", "on", "inject faults: on or off")
	concurrency := fs.Int("concurrency", 16, "packages in flight at most")
	verbose := fs.Bool("v", false, "log every retry")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: watershed simulate [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Plays version 1 and 2 devices against the ingest edge, injects faults, and prints")
		fmt.Fprintln(stderr, "the ground truth of what the pipeline should store as JSON on the last line.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "watershed simulate: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var mix simulator.FaultMix
	switch *faults {
	case "on":
		mix = simulator.DefaultFaultMix()
	case "off":
		mix = simulator.NoFaults()
	default:
		fmt.Fprintf(stderr, "watershed simulate: --faults must be on or off, not %q\n", *faults)
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	secret, err := secretFlag.resolve(log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed simulate: %v\n", err)
		return 2
	}
	sim, err := simulator.New(simulator.Options{
		IngestURL:    *ingest,
		Secret:       []byte(secret),
		TokenVersion: *tokenVersion,
		TokenTTL:     *tokenTTL,
		Devices:      *devices,
		Rate:         *rate,
		Duration:     *duration,
		Packages:     *packages,
		Seed:         *seed,
		Faults:       mix,
		Concurrency:  *concurrency,
		Logger:       log,
		// Only the summary is printed: keep the truth's memory bounded.
		StoredWindow: 2 * time.Hour,
	})
	if err != nil {
		fmt.Fprintf(stderr, "watershed simulate: %v\n", err)
		return 2
	}
	runErr := sim.Run(ctx)
	line, err := json.Marshal(sim.Summary())
	if err != nil {
		fmt.Fprintf(stderr, "watershed simulate: summary: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", line)
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		fmt.Fprintf(stderr, "watershed simulate: %v\n", runErr)
		return 1
	}
	return 0
}

// simulateEnv returns the environment variable name, or def when it is unset or
// empty.
func simulateEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
