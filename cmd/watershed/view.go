package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/views"
)

// runView implements `watershed view`: the view API over the device-state
// table of an external Kafka. Any number of view servers may run.
func runView(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("view", "view --brokers B [--addr A] [--keys-file F] [flags]", stderr)
	addr := fs.String("addr", envOr("WATERSHED_VIEW_ADDR", "127.0.0.1:8081"), "address of the view API and its /metrics, /healthz, /readyz (env WATERSHED_VIEW_ADDR)")
	dataDir := fs.String("data-dir", envOr("WATERSHED_DATA_DIR", "data"), "folder for the view's local copy of the table (env WATERSHED_DATA_DIR)")
	keysFile := fs.String("keys-file", envOr("WATERSHED_VIEW_KEYS_FILE", ""), "API keys with their scopes, one per line (env WATERSHED_VIEW_KEYS_FILE)")
	fleetsFile := fs.String("fleets-file", envOr("WATERSHED_FLEETS_FILE", ""), "device-to-fleet map for fleet-scoped keys (env WATERSHED_FLEETS_FILE)")
	viewKey := fs.String("view-key", envOr(views.KeyEnv, ""), "one full-scope API key (env "+views.KeyEnv+")")
	var pf pipelineFlags
	var kf kafkaFlags
	var sf serverFlags
	pf.register(fs)
	kf.register(fs)
	sf.register(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if err := sf.check(); err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	k, err := kf.kafka()
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	keys, err := loadViewKeys(*viewKey, *keysFile, *fleetsFile)
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 2
	}
	log := newLogger(stderr)
	p := processors.New(pf.config())
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	view, err := topology.NewView(p.DeviceState, topology.ViewOptions{Kafka: k, DataDir: filepath.Join(*dataDir, "view"), Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	src := views.NewViewSource(view)
	vsrv, err := views.New(views.Options{Source: src, Keys: keys, Logger: log, Registerer: reg})
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.Handle(views.DevicesPath, vsrv.Handler())
	// /readyz says when this server lags behind the table; the API keeps
	// answering from its local copy meanwhile.
	serve.Ops(mux, reg, src.Current)
	srv, err := serve.Listen(mux, sf.options(*addr, reg, log))
	if err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	log.Info("view API listening", "url", srv.URL(), "table", p.DeviceState.Name())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return view.Run(gctx) })
	g.Go(func() error { return srv.Serve(gctx) })
	if err := g.Wait(); err != nil {
		fmt.Fprintf(stderr, "watershed view: %v\n", err)
		return 1
	}
	return 0
}

// loadViewKeys merges the full-scope key and the key file.
func loadViewKeys(key, keysFile, fleetsFile string) (views.Keys, error) {
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
		return keys, errors.New("no API keys: set --view-key, " + views.KeyEnv + " or --keys-file")
	}
	return keys, nil
}
