// Package demo runs the whole pipeline in one process on the embedded
// default: the in-process Kafka-protocol broker, every processor group, the
// ingest edge, the view API, the local store and, optionally, the device
// simulator. `watershed demo` and the end-to-end tests use it; the
// integration tests run it on a real Kafka cluster and a real store
// (Options.Kafka, Options.Store).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/console"
	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/internal/poll"
	"github.com/watershed-io/watershed/internal/reconcile"
	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/local"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/promhooks"
	"github.com/watershed-io/watershed/topology/tablestore"
	"github.com/watershed-io/watershed/views"
)

// Options configure a demo run.
type Options struct {
	// Devices simulated (0: no simulator; post packages yourself).
	Devices int
	// Rate is the simulator's pace in packages per second.
	Rate float64
	// Duration of the simulation (0: until ctx is cancelled).
	Duration time.Duration
	// IngestAddr and ViewAddr are where the edge and the view API listen.
	IngestAddr, ViewAddr string
	// OpsAddr is where the operators' listener (/metrics, /readyz with
	// detail, /debug/pprof/, and the console under /console/ unless
	// ConsoleAddr is set) listens (default "127.0.0.1:0", a free loopback
	// port).
	OpsAddr string
	// ConsoleAddr, when set, is where the console listens instead of the
	// operators' listener.
	ConsoleAddr string
	// DataDir holds tables, views and the local store (required).
	DataDir string
	// DeviceSecret keys the devices' tokens.
	DeviceSecret string
	// ViewKey is the view API's full-scope key; as a trial on loopback,
	// the demo takes keys of any length (views.Options.AllowShortKeys).
	ViewKey string
	// Partitions of every topic (default 8).
	Partitions int32
	// Seed makes the simulated fleet deterministic.
	Seed int64
	// Faults turns the simulator's fault injection on.
	Faults bool
	// DrainTimeout bounds the wait for the pipeline to drain after the
	// simulation (default 2 minutes).
	DrainTimeout time.Duration
	// Out receives the addresses and the final report.
	Out io.Writer
	// Logger receives the components' logs.
	Logger *slog.Logger
	// Ready, when set, is called with the running demo once every
	// component is up (tests use it to reach the servers).
	Ready func(*Demo)
	// Kafka, when set, is an external cluster to run on instead of the
	// embedded broker.
	Kafka *topology.Kafka
	// Store, when set, receives the readings instead of a local store in
	// DataDir. Run does not close it.
	Store sinks.Store
	// Prefix of every topic and group name (processors.Config.Prefix), so
	// that runs on a shared cluster do not meet; set, it wins over
	// Settings, as Partitions and Fuse do.
	Prefix string
	// Fuse is the pipeline's stage fusion (processors.Config.Fuse).
	Fuse processors.Fusion
	// Registry declares the pipeline and the groups added to it (nil: the
	// pipeline alone).
	Registry *assembly.Registry
	// Settings are the pipeline's and the added groups' settings (zero:
	// their defaults).
	Settings settings.Values
	// Silence, when set, is the silence threshold
	// (processors.Config.Silence), winning over Settings.
	Silence time.Duration
	// MessageSpan, when set with a Duration, is how much message time the
	// simulation covers: the devices' clocks start over two hours back and
	// run MessageSpan/Duration times faster than the wall clock, so that
	// hourly windows close within a short run (0: message time is the wall
	// clock's). With a Duration, one device also pauses for longer than
	// the silence threshold (a device_silent, then a device_back), and the
	// report compares the summaries and the silence alerts with the truth
	// (reconcile.CheckTime).
	MessageSpan time.Duration
	// TableStorage builds the groups' table storage
	// (topology.RunnerOptions.TableStorage; nil: the runner's default).
	TableStorage tablestore.Factory
	// TickEvery is topology.RunnerOptions.TickEvery (0: its default).
	TickEvery time.Duration
}

// Demo is a running demo.
type Demo struct {
	// IngestURL and ViewURL are the servers' base URLs.
	IngestURL, ViewURL string
	// OpsURL is the base URL of the operators' listener.
	OpsURL string
	// ConsoleURL is the console's page.
	ConsoleURL string
	// Kafka reaches the broker: the embedded one, or Options.Kafka.
	Kafka topology.Kafka
	// Pipeline is the declared pipeline with the registry's groups.
	Pipeline *assembly.Assembly
	// Store is the store of readings: a local store, or Options.Store.
	Store sinks.Store
	// Runner runs every processor group.
	Runner *topology.Runner
	// Source is the view API's data source.
	Source *views.ViewSource
	// Registry holds every metric of the process.
	Registry *prometheus.Registry
}

// Run starts everything, runs the simulator when Devices > 0, and with a
// Duration waits until the pipeline has drained and returns the comparison
// of the simulator's truth with the store, the view and the dead-letter
// topic. Without a Duration it runs until ctx is cancelled and returns a
// nil report.
func Run(ctx context.Context, opts Options) (*reconcile.Report, error) {
	if opts.DataDir == "" {
		return nil, errors.New("demo: no data folder")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 2 * time.Minute
	}
	if opts.OpsAddr == "" {
		opts.OpsAddr = "127.0.0.1:0"
	}
	log := opts.Logger
	d := &Demo{Registry: prometheus.NewRegistry()}
	kafkaWhere := "embedded Kafka"
	if opts.Kafka != nil {
		d.Kafka, kafkaWhere = *opts.Kafka, "Kafka"
	} else {
		// Consumed retention keeps the broker's memory flat; the
		// dead-letter topic stays whole for the operators' dlq commands
		// and the reconciliation.
		broker, err := embedded.Start(embedded.Options{Logger: log,
			Retention: embedded.DefaultRetention(opts.Prefix + processors.TopicDeadLetter)})
		if err != nil {
			return nil, err
		}
		defer broker.Close()
		d.Kafka = topology.Kafka{Brokers: broker.Addrs(), ClientID: "watershed-demo",
			FetchMinBytes: embedded.FetchMinBytes, FetchMaxWait: embedded.FetchMaxWait, FlushInterval: embedded.FlushInterval}
	}
	d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("demo: data folder: %w", err)
	}
	if opts.Store != nil {
		d.Store = opts.Store
	} else {
		st, err := local.Open(filepath.Join(opts.DataDir, "sink"), local.Options{})
		if err != nil {
			return nil, err
		}
		defer st.Close()
		d.Store = st
	}

	reg := opts.Registry
	if reg == nil {
		reg = assembly.New()
	}
	cfg := processors.ConfigFrom(opts.Settings)
	if opts.Prefix != "" {
		cfg.Prefix = opts.Prefix
	}
	if opts.Partitions != 0 {
		cfg.Partitions = opts.Partitions
	}
	if opts.Fuse != processors.FuseNone {
		cfg.Fuse = opts.Fuse
	}
	if opts.Silence > 0 {
		cfg.Silence = opts.Silence
	}
	cfg.Logger = log
	var err error
	if d.Pipeline, err = reg.Build(cfg, opts.Settings); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if _, err := d.Pipeline.Topology.EnsureTopics(d.Kafka, topology.TopicOptions{}); err != nil {
		return nil, err
	}
	metrics, err := promhooks.New(d.Registry)
	if err != nil {
		return nil, err
	}
	depth := dlq.NewDepthCollector(d.Kafka, d.Pipeline.DeadLetters.Name())
	defer depth.Close()
	d.Registry.MustRegister(depth)
	d.Runner, err = topology.NewRunner(d.Pipeline.Plan, topology.RunnerOptions{
		Kafka: d.Kafka, DataDir: filepath.Join(opts.DataDir, "state"), Hooks: []topology.Hook{metrics},
		Logger: log, SkipTopicCreation: true,
		TableStorage: opts.TableStorage, Resources: []topology.Provided{topology.Provide(processors.Store, d.Store)},
		TickEvery: opts.TickEvery,
	})
	if err != nil {
		return nil, err
	}
	if err := promhooks.RegisterRunner(d.Registry, d.Runner, log); err != nil {
		return nil, err
	}
	ed, err := edge.New(edge.Options{
		Kafka: d.Kafka, RawTopic: d.Pipeline.Raw.Name(), DeadLetterTopic: d.Pipeline.DeadLetters.Name(),
		Secret: []byte(opts.DeviceSecret), EdgeID: "demo", Registerer: d.Registry, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	defer ed.Close()
	view, err := topology.NewView(d.Pipeline.DeviceState, topology.ViewOptions{Kafka: d.Kafka, DataDir: filepath.Join(opts.DataDir, "view"), Logger: log})
	if err != nil {
		return nil, err
	}
	d.Source = views.NewViewSource(view)
	windows, err := topology.NewWindowView(d.Pipeline.SummaryWindows, topology.ViewOptions{Kafka: d.Kafka, DataDir: filepath.Join(opts.DataDir, "summary-windows"), Logger: log})
	if err != nil {
		return nil, err
	}
	keys, err := views.FullScopeKey(opts.ViewKey)
	if err != nil {
		return nil, err
	}
	vopts := views.Options{Source: d.Source, Keys: keys, Logger: log, Registerer: d.Registry, AllowShortKeys: true, Readings: d.Store}
	if sums, ok := d.Store.(views.SummarySource); ok {
		vopts.Summaries = sums
		vopts.OpenWindows = processors.OpenSummaries{Windows: d.Pipeline.SummaryWindows, Source: windows}
	}
	vsrv, err := views.New(vopts)
	if err != nil {
		return nil, err
	}

	ready := func() error {
		if err := d.Runner.Ready(); err != nil {
			return err
		}
		return d.Source.Current()
	}
	ingestMux := http.NewServeMux()
	ingestMux.Handle("/v1/packages", ed.Handler())
	serve.Health(ingestMux, ed.Ready)
	ingest, err := serve.Listen(ingestMux, serve.Options{Addr: opts.IngestAddr, Logger: log, DeferAdmission: edge.DefersAdmission})
	if err != nil {
		return nil, err
	}
	viewMux := http.NewServeMux()
	viewMux.Handle(views.DevicesPath, vsrv.Handler())
	serve.Health(viewMux, ready)
	viewSrv, err := serve.Listen(viewMux, serve.Options{Addr: opts.ViewAddr, Logger: log})
	if err != nil {
		return nil, err
	}
	con, err := console.New(console.Options{
		Topology: d.Pipeline.Topology.Describe(), Auth: vsrv, Devices: d.Source, Store: d.Store,
		Kafka: &d.Kafka, AlertsTopic: d.Pipeline.Alerts.Name(), Metrics: console.MetricsFromGatherer(d.Registry), Logger: log,
		Replay: true, // a trial on loopback
	})
	if err != nil {
		return nil, err
	}
	opsHandler := serve.OpsHandler(d.Registry, func() error {
		if err := ed.Ready(); err != nil {
			return fmt.Errorf("ingest edge: %w", err)
		}
		return ready()
	})
	var conSrv *serve.Server
	if opts.ConsoleAddr != "" {
		mux := http.NewServeMux()
		mux.Handle(console.Prefix, con.Handler())
		if conSrv, err = serve.Listen(mux, serve.Options{Addr: opts.ConsoleAddr, Logger: log, DeferAdmission: console.DefersAdmission}); err != nil {
			return nil, err
		}
	} else {
		opsHandler = con.Mount(opsHandler)
	}
	opsOpts := serve.OpsOptions(opts.OpsAddr, log)
	opsOpts.DeferAdmission = console.DefersAdmission
	ops, err := serve.Listen(opsHandler, opsOpts)
	if err != nil {
		return nil, err
	}
	d.ConsoleURL = ops.URL() + console.Prefix
	if conSrv != nil {
		d.ConsoleURL = conSrv.URL() + console.Prefix
	}
	d.IngestURL, d.ViewURL, d.OpsURL = ingest.URL(), viewSrv.URL(), ops.URL()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.Runner.Run(gctx) })
	g.Go(func() error { return view.Run(gctx) })
	g.Go(func() error { return windows.Run(gctx) })
	g.Go(func() error { return ingest.Serve(gctx) })
	g.Go(func() error { return viewSrv.Serve(gctx) })
	g.Go(func() error { return ops.Serve(gctx) })
	if conSrv != nil {
		g.Go(func() error { return conSrv.Serve(gctx) })
	}

	if err := waitUntil(gctx, 2*time.Minute, ready); err != nil {
		cancel()
		return nil, errors.Join(err, g.Wait())
	}
	fmt.Fprintf(opts.Out, "watershed demo: %s at %s\n", kafkaWhere, d.Kafka.Brokers[0])
	fmt.Fprintf(opts.Out, "  ingest edge  POST %s/v1/packages (device secret from --device-secret)\n", d.IngestURL)
	fmt.Fprintf(opts.Out, "  view API     GET  %s/v1/devices/{device_id}  (Authorization: Bearer %s)\n", d.ViewURL, shownKey(opts.ViewKey))
	fmt.Fprintf(opts.Out, "  operators    %s/metrics  %s/readyz  %s/debug/pprof/\n", d.OpsURL, d.OpsURL, d.OpsURL)
	fmt.Fprintf(opts.Out, "  console      %s  (log in with the view key)\n", d.ConsoleURL)
	fmt.Fprintf(opts.Out, "  data folder  %s\n", opts.DataDir)
	// What the added groups write, and how to see it.
	prefixFlag := ""
	if cfg.Prefix != "" {
		prefixFlag = "--prefix " + cfg.Prefix + " "
	}
	for _, t := range d.Pipeline.Outputs() {
		fmt.Fprintf(opts.Out, "  output       watershed tail --brokers %s %s--from-beginning %s\n", d.Kafka.Brokers[0], prefixFlag, t)
	}
	if opts.Ready != nil {
		opts.Ready(d)
	}

	var report *reconcile.Report
	if opts.Devices > 0 {
		simOpts := simulator.Options{
			IngestURL: d.IngestURL, Secret: []byte(opts.DeviceSecret), Devices: opts.Devices,
			Rate: opts.Rate, Duration: opts.Duration, Seed: opts.Seed, Faults: faultMix(opts.Faults), Logger: log,
		}
		timed := opts.Duration > 0
		if timed {
			simOpts.MessageClock = messageClock(time.Now(), opts.MessageSpan, opts.Duration)
			simOpts.Pause = pause(opts.Devices, opts.Duration, d.Pipeline.Config().Silence)
		}
		sim, err := simulator.New(simOpts)
		if err != nil {
			cancel()
			return nil, errors.Join(err, g.Wait())
		}
		fmt.Fprintf(opts.Out, "  simulator    %d devices, %.0f packages/s\n", opts.Devices, opts.Rate)
		if err := sim.Run(gctx); err != nil && gctx.Err() == nil {
			cancel()
			return nil, errors.Join(fmt.Errorf("demo: simulator: %w", err), g.Wait())
		}
		if opts.Duration > 0 && gctx.Err() == nil {
			report, err = d.drain(gctx, sim.Truth(), opts.DrainTimeout, timed)
			cancel()
			if werr := g.Wait(); werr != nil && err == nil {
				err = werr
			}
			return report, err
		}
	}
	<-gctx.Done()
	cancel()
	return nil, g.Wait()
}

// DefaultViewKey is the demo's documented view key (README), printed with
// the address of the view API; any other key is a secret and is not.
const DefaultViewKey = "demo-view-key"

// shownKey returns what the demo prints for its view key.
func shownKey(key string) string {
	if key == DefaultViewKey {
		return key
	}
	return "<the key you gave>"
}

func faultMix(on bool) simulator.FaultMix {
	if on {
		return simulator.DefaultFaultMix()
	}
	return simulator.NoFaults()
}

// drain waits until every group has committed everything and the view
// agrees with the truth, or the timeout passes, and returns the last
// comparison.
func (d *Demo) drain(ctx context.Context, truth simulator.Truth, timeout time.Duration, timed bool) (*reconcile.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src := reconcile.Sources{View: d.Source, Store: d.Store, DeadLetters: reconcile.DeadLetterCounter(d.Kafka, d.Pipeline.DeadLetters.Name())}
	err := waitUntil(ctx, timeout, func() error { return d.Drained(ctx) })
	if err != nil {
		return nil, fmt.Errorf("demo: pipeline did not drain: %w", err)
	}
	// The view follows the device-state table a moment behind the group.
	var last reconcile.Report
	err = waitUntil(ctx, timeout, func() error {
		r, err := reconcile.Check(ctx, truth, src)
		if err != nil {
			return err
		}
		if timed {
			if err := d.checkTime(ctx, truth, &r); err != nil {
				return err
			}
		}
		last = r
		if !r.OK {
			return fmt.Errorf("%d mismatches", r.MismatchCount)
		}
		return nil
	})
	if last.Devices == 0 && err != nil {
		return nil, err
	}
	return &last, nil
}

// The truth's bounds on the pipeline's delays in the demo: a package is
// handled within timeSettle of its receipt, a timer fires within
// timeSlack of its due time. Windows and silences closer to the edge than
// that are uncertain, not compared exactly.
const (
	timeSettle = 3 * time.Second
	timeSlack  = 3 * time.Second
)

// checkTime adds the comparison of the summaries of closed windows and of
// the device_silent and device_back alerts with the truth to r.
func (d *Demo) checkTime(ctx context.Context, truth simulator.Truth, r *reconcile.Report) error {
	sums, ok := d.Store.(sinks.SummaryStore)
	if !ok {
		return errors.New("demo: the store keeps no summaries")
	}
	asOf := time.Now()
	alerts, err := reconcile.AlertReader(d.Kafka, d.Pipeline.Alerts.Name())(ctx)
	if err != nil {
		return err
	}
	cfg := d.Pipeline.Config()
	tr, err := reconcile.CheckTime(ctx, truth, reconcile.TimeSources{Summaries: sums, Alerts: alerts, View: d.Source}, reconcile.TimeOptions{
		Partitions: cfg.Partitions,
		Silence:    simulator.SilenceOptions{Threshold: cfg.Silence, AsOf: asOf, Slack: timeSlack},
		Summary:    simulator.SummaryOptions{Grace: processors.SummaryGrace, Settle: timeSettle},
	})
	if err != nil {
		return err
	}
	r.Time = &tr
	r.OK = r.OK && tr.OK
	r.MismatchCount += tr.MismatchCount
	r.Mismatches = append(r.Mismatches, tr.Mismatches...)
	return nil
}

// messageClock is the devices' clock of a run of duration d covering span
// of message time (the wall clock when span is 0): from a quarter past
// the hour over two hours before start, span/d times as fast as the wall
// clock, so that it stays behind it (span up to two hours). The first
// hour it enters closes (its end plus the grace, by the devices' clocks,
// which lag it by up to 15 minutes) when span exceeds about 40 minutes.
func messageClock(start time.Time, span, d time.Duration) func() time.Time {
	if span <= 0 || d <= 0 {
		return time.Now
	}
	from := start.Truncate(time.Hour).Add(-2*time.Hour - 15*time.Minute)
	speed := float64(span) / float64(d)
	return func() time.Time { return from.Add(time.Duration(float64(time.Since(start)) * speed)) }
}

// pause keeps one device silent, from a quarter of the run, for longer
// than the silence threshold and the truth's slack on either side, when
// that ends before the run does: a device_silent and a device_back.
func pause(devices int, d, silence time.Duration) simulator.Pause {
	p := simulator.Pause{Devices: 1, From: d / 4, For: silence + 2*timeSlack + 2*time.Second}
	if devices < 2 || p.From+p.For > d-2*time.Second {
		return simulator.Pause{}
	}
	return p
}

// Drained returns nil when every processor group has committed every
// record of its inputs.
func (d *Demo) Drained(ctx context.Context) error {
	lags, err := d.Runner.Lag(ctx)
	if err != nil {
		return err
	}
	return topology.Drained(lags)
}

// waitUntil polls cond until it returns nil, ctx ends or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() error) error {
	if err := poll.Until(ctx, timeout, 100*time.Millisecond, cond); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}
