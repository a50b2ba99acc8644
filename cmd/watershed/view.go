package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/console"
	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/views"
)

// runView implements `watershed view`: the view API over the device-state
// table of an external Kafka. Any number of view servers may run.
func runView(ctx context.Context, groups *assembly.Registry, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("view", "view --brokers B [--addr A] [--keys-file F] [flags]", stderr)
	addr := fs.String("addr", envOr("WATERSHED_VIEW_ADDR", "127.0.0.1:8081"), "address of the view API and its /healthz, /readyz (env WATERSHED_VIEW_ADDR)")
	opsAddr := registerOpsAddr(fs, defaultViewOpsAddr)
	dataDir := fs.String("data-dir", envOr("WATERSHED_DATA_DIR", "data"), "folder for the view's local copy of the table (env WATERSHED_DATA_DIR)")
	keysFile := fs.String("keys-file", envOr("WATERSHED_VIEW_KEYS_FILE", ""), "API keys (or their SHA-256, sha256:HEX) with their scopes, one per line; reloaded when it changes or on SIGHUP (env WATERSHED_VIEW_KEYS_FILE)")
	fleetsFile := fs.String("fleets-file", envOr("WATERSHED_FLEETS_FILE", ""), "device-to-fleet map for fleet-scoped keys; reloaded with the keys (env WATERSHED_FLEETS_FILE)")
	viewKey := newSecretFlag(fs, "view-key", views.KeyEnv, "view key", fmt.Sprintf("one full-scope API key (or its SHA-256, sha256:HEX), at least %d characters", views.MinKeyLength), "")
	authRate := fs.Float64("auth-failure-rate", views.DefaultAuthFailureRate, "failed authentications a second a client address may make, sustained; past them it is answered 429; negative: no limit")
	authBurst := fs.Int("auth-failure-burst", views.DefaultAuthFailureBurst, "failed authentications a client address may make at once")
	historyStore := fs.String("history-store", envOr("WATERSHED_HISTORY_STORE", ""), "answer /v1/devices/{id}/readings and /summaries from this store, read-only: local (<data-dir>/"+sinkSubdir+", not while a writer holds it) or cassandra (--cassandra-* flags); empty: those paths answer 404 (env WATERSHED_HISTORY_STORE)")
	var pf settingsFlags
	var kf kafkaFlags
	var sf serverFlags
	var cf cassandraFlags
	var conf consoleFlags
	conf.register(fs)
	pf.register(fs, groups)
	kf.register(fs)
	sf.register(fs)
	cf.register(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if err := sf.check(); err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	metrics, err := conf.source()
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	log := newLogger(stderr)
	k, err := kf.kafka(log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	fullKey, err := viewKey.resolve(log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	load := func() (views.Keys, error) { return loadViewKeys(fullKey, *keysFile, *fleetsFile) }
	keys, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	// The history store first: a bad one is found before Kafka is asked.
	var history sinks.Store
	if *historyStore != "" {
		if _, ok := readingsStores()[*historyStore]; !ok {
			fmt.Fprintf(stderr, "watershed view: --history-store %s: unknown store (local, cassandra)\n", *historyStore)
			return 2
		}
		history, err = openHistoryStore(ctx, *historyStore, readingsConfig{dataDir: *dataDir, cassandra: cf}, log)
		if err != nil {
			fmt.Fprintf(stderr, "watershed view: --history-store %s: %v\n", *historyStore, err)
			return 1
		}
		defer history.Close()
	}
	p, err := pf.build(nil)
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	view, err := topology.NewView(p.DeviceState, topology.ViewOptions{Kafka: k, DataDir: filepath.Join(*dataDir, "view"), Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	// The summaries endpoint's open windows, from the summaries group's
	// windows changelog.
	windows, err := topology.NewWindowView(p.SummaryWindows, topology.ViewOptions{Kafka: k, DataDir: filepath.Join(*dataDir, "summary-windows"), Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	src := views.NewViewSource(view)
	vopts := views.Options{Source: src, Keys: keys, Logger: log, Registerer: reg,
		AuthFailureRate: *authRate, AuthFailureBurst: *authBurst}
	if history != nil {
		vopts.Readings = history
		if sums, ok := history.(views.SummarySource); ok {
			vopts.Summaries = sums
			vopts.OpenWindows = processors.OpenSummaries{Windows: p.SummaryWindows, Source: windows}
		}
	}
	vsrv, err := views.New(vopts)
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.Handle(views.DevicesPath, vsrv.Handler())
	// /readyz says when this server lags behind the table; the API keeps
	// answering from its local copy meanwhile.
	serve.Health(mux, src.Current)
	srv, err := serve.Listen(mux, sf.options(*addr, reg, log))
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	con, err := console.New(console.Options{Topology: p.Topology.Describe(), Auth: vsrv, Devices: src, Store: history,
		Kafka: &k, AlertsTopic: p.Alerts.Name(), Metrics: metrics, Replay: conf.replay, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	var ops, conSrv *serve.Server
	if *opsAddr != "" {
		opsHandler := serve.OpsHandler(reg, src.Current)
		if conf.addr == "" {
			opsHandler = con.Mount(opsHandler)
		}
		opts := serve.OpsOptions(*opsAddr, log)
		opts.DeferAdmission = console.DefersAdmission
		if ops, err = serve.Listen(opsHandler, opts); err != nil {
			fmt.Fprintf(stderr, "watershed view: %v\n", err)
			return 1
		}
		log.Info("operators' listener", "url", ops.URL(), "metrics", ops.URL()+"/metrics")
	}
	if conf.addr != "" {
		cmux := http.NewServeMux()
		cmux.Handle(console.Prefix, con.Handler())
		opts := sf.options(conf.addr, nil, log)
		opts.DeferAdmission = console.DefersAdmission
		if conSrv, err = serve.Listen(cmux, opts); err != nil {
			fmt.Fprintf(stderr, "watershed view: %v\n", err)
			return 1
		}
	}
	switch {
	case conSrv != nil:
		log.Info("console listening", "url", conSrv.URL()+console.Prefix, "metrics", consoleMetricsSource(metrics))
	case ops != nil:
		log.Info("console listening", "url", ops.URL()+console.Prefix, "metrics", consoleMetricsSource(metrics))
	}
	log.Info("view API listening", "url", srv.URL(), "table", p.DeviceState.Name())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return view.Run(gctx) })
	g.Go(func() error { return windows.Run(gctx) })
	g.Go(func() error { return srv.Serve(gctx) })
	if ops != nil {
		g.Go(func() error { return ops.Serve(gctx) })
	}
	if conSrv != nil {
		g.Go(func() error { return conSrv.Serve(gctx) })
	}
	// The files are watched; SIGHUP reloads at once (and, without a keys
	// file, is harmless rather than the end of the process). The
	// full-scope key is fixed for the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error {
		return vsrv.WatchKeys(gctx, views.WatchOptions{Files: viewKeyFiles(*keysFile, *fleetsFile), Load: load, Reload: hup})
	})
	if err := g.Wait(); err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	return 0
}

// viewKeyFiles returns the files the keys come from.
func viewKeyFiles(keysFile, fleetsFile string) []string {
	var files []string
	for _, f := range []string{keysFile, fleetsFile} {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

// loadViewKeys merges the full-scope key and the key file, and refuses
// keys shorter than views.MinKeyLength.
func loadViewKeys(key, keysFile, fleetsFile string) (views.Keys, error) {
	keys, err := mergeViewKeys(key, keysFile, fleetsFile)
	if err != nil {
		return keys, err
	}
	return keys, keys.CheckLength()
}

// mergeViewKeys merges the full-scope key and the key file.
func mergeViewKeys(key, keysFile, fleetsFile string) (views.Keys, error) {
	var keys views.Keys
	var err error
	if keysFile != "" {
		if keys, err = views.LoadKeys(keysFile, fleetsFile); err != nil {
			return keys, err
		}
	}
	if key != "" {
		full, err := views.FullScopeKey(key)
		if err != nil {
			return keys, err
		}
		if keysFile == "" {
			return full, nil
		}
		return keys.Merge(full)
	}
	if keysFile == "" {
		return keys, errors.New("no API keys: set " + views.KeyEnv + ", " + views.KeyEnv + "_FILE, --keys-file, --view-key-file or --view-key")
	}
	return keys, nil
}

// openHistoryStore opens the store of readings and summaries that the view
// answers history from, read-only, as `watershed readings` opens it.
func openHistoryStore(ctx context.Context, kind string, c readingsConfig, log *slog.Logger) (sinks.Store, error) {
	backend, ok := readingsStores()[kind]
	if !ok {
		return nil, errors.New("unknown store (local, cassandra)")
	}
	if kind == "cassandra" {
		if _, err := c.cassandra.options(log); err != nil {
			return nil, err
		}
		// Cassandra may be down while the view starts: the view serves
		// the devices' state all the same, and history answers 503 until
		// the store is reached.
		return &lazyStore{open: func(ctx context.Context) (sinks.Store, error) { return backend.open(ctx, c) }}, nil
	}
	return backend.open(ctx, c)
}
