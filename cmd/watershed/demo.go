package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/internal/demo"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// demoDeviceSecret is the demo's documented device secret (README); the
// simulator's default too.
const demoDeviceSecret = "demo-secret"

// runDemo implements `watershed demo`: the whole pipeline in one process on
// the embedded default, with the device simulator.
func runDemo(ctx context.Context, reg *assembly.Registry, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", "demo [--devices N] [--rate R] [--duration D] [flags]", stderr)
	devices := fs.Int("devices", 100, "simulated devices (0: no simulator)")
	rate := fs.Float64("rate", 50, "simulated packages per second across the fleet")
	duration := fs.Duration("duration", 0, "simulate this long, drain, print the reconciliation as the last line and exit (0: run until interrupted)")
	ingestAddr := fs.String("ingest-addr", "127.0.0.1:8080", "address of the ingest edge")
	viewAddr := fs.String("view-addr", "127.0.0.1:8081", "address of the view API")
	opsAddr := fs.String("ops-addr", defaultDemoOpsAddr, "address of the operators' listener: /metrics, /readyz with the reason when not ready, /debug/pprof/, and the console under /console/ unless --console-addr")
	consoleAddr := fs.String("console-addr", "", "address of a listener of the console's own (default: the console is on --ops-addr)")
	dataDir := fs.String("data-dir", "", "folder for tables, views and the local store (default: a fresh temporary folder, kept after the run)")
	secretFlag := newSecretFlag(fs, "device-secret", "WATERSHED_DEVICE_SECRET", "device secret", "secret that keys the devices' tokens", demoDeviceSecret)
	viewKeyFlag := newSecretFlag(fs, "view-key", "WATERSHED_VIEW_KEY", "view key", "full-scope key of the view API", demo.DefaultViewKey)
	seed := fs.Int64("seed", 1, "seed of the simulated fleet")
	faults := fs.Bool("faults", true, "inject every fault the pipeline must handle")
	var sf settingsFlags
	sf.register(fs, reg)
	tableKind := fs.String("table-storage", tablestore.DefaultKind, tableStorageUsage)
	tickEvery := registerTickEvery(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if err := checkTickEvery(*tickEvery); err != nil {
		fmt.Fprintf(stderr, "watershed demo: %v\n", err)
		return 2
	}
	if *devices < 0 || *rate <= 0 || *duration < 0 {
		fmt.Fprintln(stderr, "watershed demo: --devices must be >= 0, --rate > 0, --duration >= 0")
		return 2
	}
	values, _, err := sf.values()
	if err != nil {
		fmt.Fprintf(stderr, "watershed demo: %v\n", err)
		return 2
	}
	log := newLogger(stderr)
	secret, err := secretFlag.resolve(nil) // a trial on loopback: no warning
	if err != nil {
		fmt.Fprintf(stderr, "watershed demo: %v\n", err)
		return 2
	}
	viewKey, err := viewKeyFlag.resolve(nil)
	if err != nil {
		fmt.Fprintf(stderr, "watershed demo: %v\n", err)
		return 2
	}
	ts, err := tableStorage(*tableKind, log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed demo: %v\n", err)
		return 2
	}
	if *dataDir == "" {
		dir, err := os.MkdirTemp("", "watershed-demo-")
		if err != nil {
			fmt.Fprintf(stderr, "watershed demo: %v\n", err)
			return 1
		}
		*dataDir = dir
	}
	report, err := demo.Run(ctx, demo.Options{
		Devices: *devices, Rate: *rate, Duration: *duration,
		IngestAddr: *ingestAddr, ViewAddr: *viewAddr, OpsAddr: *opsAddr, ConsoleAddr: *consoleAddr, DataDir: *dataDir,
		DeviceSecret: secret, ViewKey: viewKey, Registry: reg, Settings: values,
		Seed: *seed, Faults: *faults, Out: stdout, Logger: log, TableStorage: ts, TickEvery: *tickEvery,
		DrainTimeout: 2*time.Minute + *duration,
		Silence:      demoSilence(fs, *duration), MessageSpan: demoMessageSpan(*duration),
	})
	if err != nil {
		fmt.Fprintf(stderr, "watershed demo: %v\n", err)
		return 1
	}
	if report == nil {
		return 0
	}
	line, err := json.Marshal(report)
	if err != nil {
		fmt.Fprintf(stderr, "watershed demo: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(line))
	if !report.OK {
		return 1
	}
	return 0
}

// A --duration run reconciles the summaries of closed windows and the
// silence alerts: its devices' clocks cover demoSpan of message time, and
// its silence threshold is demoSilenceThreshold unless --silence (or its
// environment variable) says otherwise.
const (
	demoSpan             = 90 * time.Minute
	demoSilenceThreshold = 20 * time.Second
)

// demoSilence returns the silence threshold of a --duration run: 0 (the
// settings') when none or when --silence is given.
func demoSilence(fs *flag.FlagSet, duration time.Duration) time.Duration {
	if duration <= 0 {
		return 0
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "silence" })
	if _, ok := os.LookupEnv(settings.EnvName("silence")); given || ok {
		return 0
	}
	return demoSilenceThreshold
}

// demoMessageSpan is the message time a --duration run covers.
func demoMessageSpan(duration time.Duration) time.Duration {
	if duration <= 0 {
		return 0
	}
	return demoSpan
}
