package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/internal/bench"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// runBench implements `watershed bench`: a fixed, seeded workload through
// the whole pipeline (HTTP edge and every stage), embedded by default, and
// a report in markdown (and with --json, the JSON report as the last line).
func runBench(ctx context.Context, reg *assembly.Registry, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", "bench [--rate N] [--duration D] [--json] [flags]", stderr)
	var o bench.Options
	brokers := fs.String("brokers", "", "run against this Kafka cluster, comma-separated (default: the embedded broker)")
	fs.BoolVar(&o.BrokerOnDisk, "broker-on-disk", false, "keep the embedded broker's log in the data folder instead of in memory")
	fs.IntVar(&o.Devices, "devices", 40_000, "devices in the fleet")
	mpp := fs.String("messages-per-package", "10-40", "messages per package, MIN-MAX")
	faults := fs.String("faults", "none", "fault mix: none or default (the simulator's)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the workload")
	fs.Float64Var(&o.Rate, "rate", 0, "offered load in messages/s (0: flat out)")
	fs.Float64Var(&o.FlatOutRate, "flat-out-rate", 300_000, "messages/s to pre-generate for a flat-out run")
	fs.DurationVar(&o.Duration, "duration", 60e9, "measured window")
	fs.DurationVar(&o.Warmup, "warmup", 10e9, "warmup before the window")
	fs.IntVar(&o.Workers, "workers", 256, "HTTP sender workers (keep-alive connections)")
	fs.DurationVar(&o.FlushInterval, "flush-interval", 0, "producers' flush interval (default: on the embedded broker its one-machine batching, 20ms; else the topology's, 10ms)")
	fetchMin := fs.Int("fetch-min-bytes", 0, "consumers' fetch minimum in bytes (default: on the embedded broker 65536; else sarama's, 1)")
	fs.DurationVar(&o.FetchMaxWait, "fetch-max-wait", 0, "consumers' longest fetch wait (default: on the embedded broker 10ms; else sarama's, 500ms)")
	fs.BoolVar(&o.StoreNoSync, "store-nosync", false, "local store without an fsync per write")
	store := fs.String("store", "local", "where the sink writes: local (a leveldb store in the data folder) or cassandra (--cassandra-* flags)")
	var cf cassandraFlags
	cf.register(fs)
	fs.StringVar(&o.TableStorage, "table-storage", tablestore.DefaultKind, tableStorageUsage)
	fs.BoolVar(&o.MeasureRecovery, "measure-recovery", false, "restart the groups after the run and time their recovery, with and without their local tables")
	var sf settingsFlags
	sf.register(fs, reg)
	skip := fs.String("skip-groups", "", "groups not to run, comma-separated (summaries: the pipeline's throughput without the hourly summaries)")
	noBaselines := fs.Bool("no-baselines", false, "skip the baselines (with --catch-up: the plain goka peer)")
	dataDir := fs.String("data-dir", "", "folder for tables, view and store (default: a temporary folder, removed after)")
	jsonOut := fs.Bool("json", false, "print the JSON report as the last line")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the window to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile at the window's end to this file")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	catchUp := fs.Bool("catch-up", false, "fill the raw topic first, then time each group draining it from empty state")
	var co bench.CatchUpOptions
	fs.Int64Var(&co.Messages, "catch-up-messages", 3_000_000, "messages in the raw topic of a catch-up run")
	fs.Float64Var(&co.FleetRate, "catch-up-fleet-rate", 40_000, "messages/s of the fleet whose traffic a catch-up run's raw topic holds: with --devices, how much message time a device's messages span (40,000 devices at 40,000/s: a message a second each)")
	variants := fs.String("catch-up-fuse", "none,all", "the fusions a catch-up run measures, comma-separated (each none, all, decode or alerts)")
	fs.IntVar(&co.Rounds, "rounds", 1, "catch-up rounds (the variants alternate within each); with --prefill, pairs of an empty and a prefilled start")
	fs.DurationVar(&o.Prefill, "prefill", 0, "fill the dedupe window and device states with this much of the fleet's traffic before the run (written into the tables), and compare with an empty start")
	fs.Float64Var(&o.PrefillScale, "prefill-scale", 1, "with --prefill: the fraction of the fleet's devices given that history (a small one for CI)")
	profileGroups := fs.String("catch-up-profile", "", "with --cpuprofile and --catch-up: profile only these groups' drains, comma-separated (default: all)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "watershed bench: %v\n", err)
		return 1
	}
	if _, err := fmt.Sscanf(*mpp, "%d-%d", &o.MessagesPerPackage.Min, &o.MessagesPerPackage.Max); err != nil {
		fmt.Fprintf(stderr, "watershed bench: --messages-per-package %q: want MIN-MAX\n", *mpp)
		return 2
	}
	switch *faults {
	case "none":
		o.Faults = simulator.NoFaults()
	case "default":
		o.Faults = simulator.DefaultFaultMix()
	default:
		fmt.Fprintf(stderr, "watershed bench: --faults %q: want none or default\n", *faults)
		return 2
	}
	o.FaultsName = *faults
	if *skip != "" {
		o.Skip = strings.Split(*skip, ",")
	}
	if _, err := tableStorage(o.TableStorage, nil); err != nil {
		fmt.Fprintf(stderr, "watershed bench: %v\n", err)
		return 2
	}
	values, cfg, err := sf.values()
	if err != nil {
		fmt.Fprintf(stderr, "watershed bench: %v\n", err)
		return 2
	}
	o.Registry, o.Settings = reg, values
	o.Partitions, o.Fuse = cfg.Partitions, cfg.Fuse
	o.FetchMinBytes = int32(*fetchMin)
	o.NoBaselines = *noBaselines
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.Brokers = append(o.Brokers, b)
		}
	}
	o.DataDir = *dataDir
	if o.DataDir == "" {
		d, err := os.MkdirTemp("", "watershed-bench-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(d)
		o.DataDir = d
	}
	if !*quiet {
		o.Progress = stderr
	}
	o.Logger = newLogger(io.Discard)
	if os.Getenv("WATERSHED_LOG_LEVEL") != "" {
		o.Logger = newLogger(stderr)
	}
	for _, p := range []struct {
		path string
		dst  *io.Writer
	}{{*cpuProfile, &o.CPUProfile}, {*memProfile, &o.MemProfile}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		*p.dst = f
	}
	switch *store {
	case "local":
	case "cassandra":
		cs, err := cf.open(ctx, o.Logger, false)
		if err != nil {
			return fail(err)
		}
		defer cs.Close()
		o.Store, o.StoreName = cs, "cassandra "+cf.hosts
	default:
		fmt.Fprintf(stderr, "watershed bench: --store %q: want local or cassandra\n", *store)
		return 2
	}
	if *catchUp {
		if co.FleetRate <= 0 || math.IsInf(co.FleetRate, 0) || math.IsNaN(co.FleetRate) {
			fmt.Fprintf(stderr, "watershed bench: --catch-up-fleet-rate %v: want a positive rate\n", co.FleetRate)
			return 2
		}
		for _, v := range strings.Split(*variants, ",") {
			f, err := processors.ParseFusion(v)
			if err != nil {
				fmt.Fprintf(stderr, "watershed bench: --catch-up-fuse: %v\n", err)
				return 2
			}
			co.Variants = append(co.Variants, f)
		}
		co.NoPeer = *noBaselines
		for _, g := range strings.Split(*profileGroups, ",") {
			if g = strings.TrimSpace(g); g != "" {
				co.ProfileGroups = append(co.ProfileGroups, g)
			}
		}
		rep, err := bench.CatchUp(ctx, o, co)
		if err != nil {
			return fail(err)
		}
		return printReport(stdout, stderr, rep, *jsonOut)
	}
	if o.Prefill > 0 {
		rep, err := bench.ComparePrefill(ctx, o, co.Rounds)
		if err != nil {
			return fail(err)
		}
		return printReport(stdout, stderr, rep, *jsonOut)
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return fail(err)
	}
	if err := rep.Markdown(stdout); err != nil {
		return fail(err)
	}
	if *jsonOut {
		if err := rep.JSON(stdout); err != nil {
			return fail(err)
		}
	}
	return 0
}

// printReport writes a report's markdown and, with asJSON, the report as
// a JSON line.
func printReport(stdout, stderr io.Writer, rep interface{ Markdown(io.Writer) error }, asJSON bool) int {
	err := rep.Markdown(stdout)
	if err == nil && asJSON {
		err = json.NewEncoder(stdout).Encode(rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "watershed bench: %v\n", err)
		return 1
	}
	return 0
}
