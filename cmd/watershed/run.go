package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/local"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/promhooks"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// runRun implements `watershed run`: any subset of the pipeline's processor
// groups against an external Kafka. Many processes running the same group
// share its partitions.
func runRun(ctx context.Context, reg *assembly.Registry, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "run --brokers B [--groups decode,dedupe,...] [--fuse decode,alerts] [flags]", stderr)
	groups := fs.String("groups", envOr("WATERSHED_GROUPS", ""), "processor groups to run, comma-separated (default all; env WATERSHED_GROUPS)")
	dataDir := fs.String("data-dir", envOr("WATERSHED_DATA_DIR", "data"), "folder for the local copies of tables (env WATERSHED_DATA_DIR)")
	opsAddr := registerOpsAddr(fs, defaultRunOpsAddr)
	storeKind := fs.String("store", envOr("WATERSHED_STORE", "local"), "where the sink group writes readings: local (a leveldb store in <data-dir>/sink) or cassandra (--cassandra-* flags) (env WATERSHED_STORE)")
	hotStandby := fs.Bool("hot-standby", false, "keep a copy of table partitions this process does not own, for fast failover")
	recoverAhead := fs.Bool("recover-ahead", false, "recover newly assigned table partitions before the rebalance completes")
	sinkAudit := fs.String("sink-audit", envOr("WATERSHED_SINK_AUDIT", ""), "append a line per record the sink group is handed and per acknowledged store write to this file (for tests that count write calls; env WATERSHED_SINK_AUDIT)")
	tableKind := fs.String("table-storage", envOr("WATERSHED_TABLE_STORAGE", tablestore.DefaultKind), tableStorageUsage+" (env WATERSHED_TABLE_STORAGE)")
	tickEvery := registerTickEvery(fs)
	var sf settingsFlags
	var tf topicFlags
	var kf kafkaFlags
	var cf cassandraFlags
	sf.register(fs, reg)
	tf.register(fs)
	kf.register(fs)
	cf.register(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if err := checkTickEvery(*tickEvery); err != nil {
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return 2
	}
	log := newLogger(stderr)
	k, err := kf.kafka(log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return 2
	}
	ts, err := tableStorage(*tableKind, log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return 2
	}
	// The store is opened once the groups are known, and only for the
	// sink; it reaches the sink through the runner's resources.
	var audit *sinks.Audit
	if *sinkAudit != "" {
		f, err := os.OpenFile(*sinkAudit, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "watershed run: sink audit: %v\n", err)
			return 2
		}
		defer f.Close()
		audit = sinks.NewAudit(f)
	}
	p, err := sf.build(func(cfg *processors.Config) {
		cfg.Logger, cfg.SinkAudit = log, audit
	})
	if err != nil {
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return 2
	}
	names := splitList(*groups)
	selected, err := p.Topology.Select(names)
	if err != nil {
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return 2
	}
	metricsReg := prometheus.NewRegistry()
	metricsReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	storeFailures := storeFailuresMetric()
	metricsReg.MustRegister(storeFailures)
	// The operators' listener comes first, so that a process waiting for
	// its store is seen alive and not ready.
	var running atomic.Pointer[topology.Runner]
	ready := func() error {
		if r := running.Load(); r != nil {
			return r.Ready()
		}
		return errStoreNotOpen
	}
	ops, err := listenOps(*opsAddr, metricsReg, ready, log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	if ops != nil {
		g.Go(func() error { return ops.Serve(gctx) })
	}
	// fail stops the operators' listener and reports err.
	fail := func(code int, err error) int {
		cancel()
		_ = g.Wait()
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return code
	}
	// The groups' resources: the sink's store when it runs here.
	var resources []topology.Provided
	for _, proc := range selected {
		if proc.Group() == p.Config().Prefix+processors.GroupSink {
			st, err := openWaiting(ctx, func(ctx context.Context) (sinks.Store, error) {
				return openStore(ctx, *storeKind, *dataDir, &cf, log)
			}, defaultStoreWait, storeFailures, log)
			if err != nil {
				if ctx.Err() != nil {
					// Stopped while waiting for the store: a clean stop.
					_ = g.Wait()
					log.Info("stopped")
					return 0
				}
				return fail(2, err)
			}
			defer st.Close()
			resources = append(resources, topology.Provide(processors.Store, st))
		}
	}
	metrics, err := promhooks.New(metricsReg)
	if err != nil {
		return fail(1, err)
	}
	// Every process reports the dead-letter topic's depth; Prometheus
	// deduplicates by the series' labels on aggregation.
	depth := dlq.NewDepthCollector(k, p.DeadLetters.Name())
	defer depth.Close()
	metricsReg.MustRegister(depth)
	runner, err := topology.NewRunner(p.Plan, topology.RunnerOptions{
		Kafka: k, Groups: names, DataDir: filepath.Join(*dataDir, "state"), Hooks: []topology.Hook{metrics},
		Logger: log, HotStandby: *hotStandby, RecoverAhead: *recoverAhead,
		TableStorage: ts, Topics: tf.options(), Resources: resources, TickEvery: *tickEvery,
	})
	if err != nil {
		return fail(2, err)
	}
	if err := promhooks.RegisterRunner(metricsReg, runner, log); err != nil {
		return fail(2, err)
	}
	running.Store(runner)
	log.Info("running", "groups", runner.Groups(), "brokers", k.Brokers)
	g.Go(func() error { return runner.Run(gctx) })
	if err := g.Wait(); err != nil {
		fmt.Fprintf(stderr, "watershed run: %v\n", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// openStore opens the store that the sink group writes to.
func openStore(ctx context.Context, kind, dataDir string, cf *cassandraFlags, log *slog.Logger) (sinks.Store, error) {
	switch kind {
	case "cassandra":
		return cf.open(ctx, log, false)
	case "local":
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("data folder: %w", err)
		}
		return local.Open(filepath.Join(dataDir, "sink"), local.Options{})
	default:
		return nil, fmt.Errorf("unknown store %q (local, cassandra)", kind)
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
