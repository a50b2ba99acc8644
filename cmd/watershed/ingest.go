package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/processors"
)

// Defaults of --device-rate and --device-burst: far above a recorder's
// normal pace of a package every few seconds, far below what one device
// could take from the others.
const (
	defaultDeviceRate  = 2
	defaultDeviceBurst = 20
)

// runIngest implements `watershed ingest`: the ingest edge, POST
// /v1/packages, with /healthz and /readyz on the same address and the
// operators' listener (/metrics, /debug/pprof/) on --ops-addr.
// It is stateless; run as many replicas as the load needs. It stops
// gracefully when ctx is cancelled: no new connections, in-flight requests
// answered, the producer flushed and closed.
func runIngest(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
	fs := newFlagSet("ingest", "ingest --brokers B --device-secret S [flags]\n\n"+
		"Every flag can also be set by the environment variable named in its\n"+
		"description; a flag on the command line wins. Give the secrets by the\n"+
		"environment or a file: command lines are visible to other users of the machine.", stderr)
	var kf kafkaFlags
	kf.register(fs)
	var sf serverFlags
	sf.register(fs)
	var ef edgeFlags
	ef.register(fs)
	hostname, _ := os.Hostname()
	prefix := envOr("WATERSHED_PREFIX", "")
	addr := fs.String("addr", "127.0.0.1:8080", "address to serve the edge and /healthz, /readyz on (env WATERSHED_INGEST_ADDR)")
	opsAddr := registerOpsAddr(fs, defaultIngestOpsAddr)
	secretFlag := newSecretFlag(fs, "device-secret", "WATERSHED_DEVICE_SECRET", "device secret", "secret that keys the devices' tokens; required", "")
	previousFlag := newSecretFlag(fs, "previous-device-secret", "WATERSHED_PREVIOUS_DEVICE_SECRET", "previous device secret", "previous device secret, still accepted while devices move to the new one", "")
	rawTopic := fs.String("raw-topic", prefix+processors.TopicRaw, "topic accepted packages are written to (env WATERSHED_RAW_TOPIC; the default follows WATERSHED_PREFIX)")
	dlqTopic := fs.String("dlq-topic", prefix+processors.TopicDeadLetter, "dead-letter topic for authenticated packages that fail package checks 3-4 (env WATERSHED_DLQ_TOPIC; the default follows WATERSHED_PREFIX)")
	edgeID := fs.String("edge-id", hostname, "id of this replica, written on every record (env WATERSHED_EDGE_ID; default the host name)")
	maxInflight := fs.Int64("max-inflight-bytes", edge.DefaultMaxInFlightBytes, fmt.Sprintf("request-body bytes held at once before answering 429, at least %d (env WATERSHED_MAX_INFLIGHT_BYTES)", edge.MinInFlightBytes))
	produceTimeout := fs.Duration("produce-timeout", edge.DefaultProduceTimeout, "how long to wait for Kafka's acknowledgement before answering 503 (env WATERSHED_PRODUCE_TIMEOUT)")
	deviceRate := fs.Float64("device-rate", defaultDeviceRate, "packages per second each device may send, sustained; more are answered 429 with Retry-After; 0 turns the limit off (env WATERSHED_DEVICE_RATE)")
	deviceBurst := fs.Int("device-burst", defaultDeviceBurst, "packages a device may send at once after a quiet spell (env WATERSHED_DEVICE_BURST)")
	// The environment sets the flags first, so the command line wins; a
	// malformed value is reported like a malformed flag.
	for _, ev := range []struct{ flag, env string }{
		{"addr", "WATERSHED_INGEST_ADDR"},
		{"raw-topic", "WATERSHED_RAW_TOPIC"},
		{"dlq-topic", "WATERSHED_DLQ_TOPIC"},
		{"edge-id", "WATERSHED_EDGE_ID"},
		{"max-inflight-bytes", "WATERSHED_MAX_INFLIGHT_BYTES"},
		{"produce-timeout", "WATERSHED_PRODUCE_TIMEOUT"},
		{"device-rate", "WATERSHED_DEVICE_RATE"},
		{"device-burst", "WATERSHED_DEVICE_BURST"},
	} {
		if v, ok := os.LookupEnv(ev.env); ok {
			if err := fs.Set(ev.flag, v); err != nil {
				fmt.Fprintf(stderr, "watershed ingest: %s=%q: %v\n", ev.env, v, err)
				return 2
			}
		}
	}
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	log := newLogger(stderr)
	secret, err := secretFlag.resolve(log)
	if err == nil && secret == "" {
		err = errNoSecret(secretFlag)
	}
	if err != nil {
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 2
	}
	previous, err := previousFlag.resolve(log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 2
	}
	if err := ef.checkSecrets(secret, previous); err != nil {
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 2
	}
	if *maxInflight < edge.MinInFlightBytes {
		fmt.Fprintf(stderr, "watershed ingest: --max-inflight-bytes %d is under the minimum %d\n", *maxInflight, edge.MinInFlightBytes)
		return 2
	}
	if *produceTimeout <= 0 {
		fmt.Fprintln(stderr, "watershed ingest: --produce-timeout must be positive")
		return 2
	}
	if *deviceRate < 0 || (*deviceRate > 0 && *deviceBurst < 1) {
		fmt.Fprintln(stderr, "watershed ingest: --device-rate must be at least 0, and --device-burst at least 1 with a rate")
		return 2
	}
	if err := sf.check(); err != nil {
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 2
	}
	k, err := kf.kafka(log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 2
	}
	if len(secret) < minSecretLen {
		log.Warn("--insecure-short-secret: the device secret is short; tokens are only as strong as the secret")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := edge.Options{
		Kafka:            k,
		RawTopic:         *rawTopic,
		DeadLetterTopic:  *dlqTopic,
		Secret:           []byte(secret),
		EdgeID:           *edgeID,
		MaxInFlightBytes: *maxInflight,
		ProduceTimeout:   *produceTimeout,
		DeviceRate:       *deviceRate,
		DeviceBurst:      *deviceBurst,
		Registerer:       reg,
		Logger:           log,
	}
	if previous != "" {
		opts.PreviousSecret = []byte(previous)
	}
	so := sf.options(*addr, reg, log)
	if err := ef.apply(&opts, &so); err != nil {
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 2
	}
	e, err := edgeWaiting(ctx, opts, defaultStoreWait, log)
	if err != nil {
		if ctx.Err() != nil {
			return 0 // stopped while waiting for the brokers: nothing to finish
		}
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 1
	}
	defer reloadOnHangup(e.ReloadRevocations)()
	mux := http.NewServeMux()
	mux.Handle(edge.Path, e.Handler())
	serve.Health(mux, e.Ready)
	srv, err := serve.Listen(mux, so)
	if err != nil {
		_ = e.Close()
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 1
	}
	ops, err := listenOps(*opsAddr, reg, e.Ready, log)
	if err != nil {
		_ = e.Close()
		fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
		return 1
	}
	log.Info("ingest edge listening", "addr", srv.Addr(), "url", srv.URL()+edge.Path,
		"brokers", k.Brokers, "raw_topic", *rawTopic, "dlq_topic", *dlqTopic, "edge_id", *edgeID)
	// Serve returns once ctx is cancelled and the in-flight requests were
	// answered; then the producer is flushed and closed.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx) })
	if ops != nil {
		g.Go(func() error { return ops.Serve(gctx) })
	}
	serveErr := g.Wait()
	closeErr := e.Close()
	code := 0
	for _, err := range []error{serveErr, closeErr} {
		if err != nil {
			fmt.Fprintf(stderr, "watershed ingest: %v\n", err)
			code = 1
		}
	}
	log.Info("ingest edge stopped")
	return code
}
