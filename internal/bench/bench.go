// Package bench runs a fixed, seeded workload through the whole telemetry
// pipeline (the HTTP ingest edge, every processor group, the device-state
// view and the store) and measures it: sustained messages/s, latency from a
// device's send to the view and to the stored row, each stage's throughput
// and lag, CPU per message and peak memory, with baselines that bound what
// the pipeline can do measured in the same run on the same data. `watershed
// bench` and the test suite run it.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/internal/poll"
	"github.com/watershed-io/watershed/internal/serve"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/sinks/local"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// Options configure a run. The zero value (with a DataDir) is the standard
// workload: 40,000 devices, 10-40 messages per package, no faults, flat
// out for 60 s after a 10 s warmup on the embedded broker.
type Options struct {
	// Brokers, when set, run against this Kafka cluster instead of the
	// embedded broker (topics and groups get a prefix unique to the run).
	Brokers []string
	// BrokerOnDisk keeps the embedded broker's log in DataDir instead of
	// in memory (it still keeps an index entry per record batch in memory).
	BrokerOnDisk bool
	// Devices in the fleet (default 40,000).
	Devices int
	// MessagesPerPackage bounds each package's messages (default 10-40).
	MessagesPerPackage simulator.IntRange
	// Faults is the fault mix of the fleet (zero: none).
	Faults simulator.FaultMix
	// FaultsName names the mix in the report.
	FaultsName string
	// Seed makes the workload deterministic.
	Seed int64
	// Rate is the offered load in messages/s; 0 sends flat out.
	Rate float64
	// FlatOutRate sizes the pre-generated workload of a flat-out run
	// (default 300,000 messages/s over warmup and duration).
	FlatOutRate float64
	// Duration of the measured window (default 60s).
	Duration time.Duration
	// Warmup before the window opens (default 10s; negative: none).
	Warmup time.Duration
	// Workers are the HTTP senders, each with one keep-alive connection
	// (default 256). A device's packages always go through one worker, in
	// order.
	Workers int
	// Partitions of every pipeline topic (default 8).
	Partitions int32
	// FlushInterval is the producers' flush interval (default: on the
	// embedded broker embedded.FlushInterval, else the topology's).
	FlushInterval time.Duration
	// FetchMinBytes and FetchMaxWait set the consumers' fetch batching
	// (topology.Kafka; default: on the embedded broker
	// embedded.FetchMinBytes and FetchMaxWait, else sarama's).
	FetchMinBytes int32
	FetchMaxWait  time.Duration
	// StoreNoSync makes the local store skip its fsync per write.
	StoreNoSync bool
	// Store, when set, is where the sink writes instead of a local store
	// in DataDir (Cassandra, say); the caller opens and closes it.
	Store sinks.Store
	// StoreName names Store in the report (default "local").
	StoreName string
	// TableStorage is the groups' table storage, a tablestore kind
	// ("": tablestore.DefaultKind).
	TableStorage string
	// Fuse is the pipeline's stage fusion (processors.Config.Fuse).
	Fuse processors.Fusion
	// Registry declares the pipeline and the groups added to it (nil: the
	// pipeline alone); they all run.
	Registry *assembly.Registry
	// Settings are the pipeline's and the groups' settings (zero: their
	// defaults). Partitions and Fuse win over theirs, and a run's prefix
	// is put before theirs.
	Settings settings.Values
	// Skip names groups (before the prefix) not to run, such as
	// processors.GroupSummaries, to measure what a group costs.
	Skip []string
	// NoBaselines skips the baselines.
	NoBaselines bool
	// Prefill, when positive, fills the dedupe window and the device
	// states with this much of the fleet's traffic before the run, written
	// straight into the tables (see prefill).
	Prefill time.Duration
	// PrefillScale is the fraction of the workload's devices given that
	// history (0 or more than 1: all of them).
	PrefillScale float64
	// MeasureRecovery restarts the groups after the run, on their local
	// tables and then without them, and reports how long each took to
	// recover.
	MeasureRecovery bool
	// DrainTimeout bounds the wait for every sent package to be seen
	// after the window (default 2m).
	DrainTimeout time.Duration
	// SampleEvery is the period of the lag and memory samples (default 5s).
	SampleEvery time.Duration
	// DataDir holds the tables, the view and the store (required).
	DataDir string
	// CPUProfile, when set, receives a CPU profile of the window.
	CPUProfile io.Writer
	// MemProfile, when set, receives a heap profile taken when the window
	// closes.
	MemProfile io.Writer
	// Logger receives the components' logs (default: discarded).
	Logger *slog.Logger
	// Progress, when set, receives a line per sample while running.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Devices == 0 {
		o.Devices = 40_000
	}
	if o.MessagesPerPackage == (simulator.IntRange{}) {
		o.MessagesPerPackage = simulator.DefaultMessagesPerPackage()
	}
	if o.FaultsName == "" {
		o.FaultsName = "custom"
		if o.Faults == (simulator.FaultMix{}) {
			o.FaultsName = "none"
		}
	}
	if o.FlatOutRate == 0 {
		o.FlatOutRate = 300_000
	}
	if o.Duration == 0 {
		o.Duration = 60 * time.Second
	}
	if o.Warmup == 0 {
		o.Warmup = 10 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Workers == 0 {
		o.Workers = 256
	}
	if o.Partitions == 0 {
		o.Partitions = 8
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 2 * time.Minute
	}
	if o.SampleEvery == 0 {
		o.SampleEvery = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

const deviceSecret = "bench-secret"

// env is a running pipeline.
type env struct {
	kafka    topology.Kafka
	pipeline *assembly.Assembly
	store    sinks.Store
	runner   *topology.Runner
	edge     *edge.Edge
	view     *topology.View[records.DeviceState]
	url      string
	broker   string
}

// Run runs the workload and returns its report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if opts.DataDir == "" {
		return nil, errors.New("bench: no data folder")
	}
	if opts.Rate < 0 {
		return nil, fmt.Errorf("bench: negative rate %v", opts.Rate)
	}
	rep := &Report{Machine: machine(), Workload: workloadReport(&opts)}
	log := opts.Logger

	genRate := opts.Rate
	if genRate == 0 {
		genRate = opts.FlatOutRate
	}
	total := opts.Warmup + opts.Duration
	w, err := generate(simulator.FleetConfig{
		Seed: opts.Seed, Devices: opts.Devices, Secret: []byte(deviceSecret),
		Faults: opts.Faults, MessagesPerPackage: opts.MessagesPerPackage,
	}, int64(genRate*total.Seconds()*1.05), genRate) // 5% spare: the window opens a little after the schedule starts
	if err != nil {
		return nil, err
	}
	debug.FreeOSMemory()
	rep.Workload.Packages = len(w.items)
	rep.Workload.Messages = w.messages
	rep.Workload.BodyBytes = w.bodyBytes
	rep.Workload.GenerateSeconds = w.genTime.Seconds()
	rep.Memory.AfterGenerateBytes = procStatus("VmRSS")
	fmt.Fprintf(opts.Progress, "bench: generated %d packages, %d messages (%d MB) in %.1fs\n",
		len(w.items), w.messages, w.bodyBytes>>20, w.genTime.Seconds())

	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: data folder: %w", err)
	}
	k := topology.Kafka{Brokers: opts.Brokers, ClientID: "watershed-bench", FlushInterval: opts.FlushInterval,
		FetchMinBytes: opts.FetchMinBytes, FetchMaxWait: opts.FetchMaxWait}
	prefix := ""
	if len(opts.Brokers) == 0 {
		bo := embedded.Options{Logger: log, Retention: benchRetention(opts.NoBaselines)}
		rep.Workload.Broker = "embedded"
		if opts.BrokerOnDisk {
			bo.DataDir = filepath.Join(opts.DataDir, "broker")
			rep.Workload.Broker = "embedded, log on disk"
		}
		var broker *embedded.Broker
		labelled(ctx, "broker", func(context.Context) { broker, err = embedded.Start(bo) })
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer broker.Close()
		k.Brokers = broker.Addrs()
		// What a user gets on one machine: the embedded broker's batching
		// in the settings not given.
		k.FetchMinBytes = cmp.Or(k.FetchMinBytes, embedded.FetchMinBytes)
		k.FetchMaxWait = cmp.Or(k.FetchMaxWait, embedded.FetchMaxWait)
		k.FlushInterval = cmp.Or(k.FlushInterval, embedded.FlushInterval)
	} else {
		prefix = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
		rep.Workload.Broker = "kafka " + fmt.Sprint(opts.Brokers)
		// Runs into a real cluster clean up their topics; this runs after
		// everything that uses them has stopped (deferred first).
		defer deleteTopics(k, prefix, log)
	}

	rep.Workload.batching(k)
	start := time.Now()
	tr := newTracker(start, w.devices)
	store, closeStore, err := openStore(opts, opts.DataDir)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	p, err := declare(opts, prefix, opts.Fuse, log)
	if err != nil {
		return nil, err
	}
	if _, err := p.Topology.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if opts.Prefill > 0 {
		fmt.Fprintf(opts.Progress, "bench: prefilling %s of history\n", opts.Prefill)
		avg := (opts.MessagesPerPackage.Min + opts.MessagesPerPackage.Max) / 2
		stats, states, err := prefill(ctx, k, p, filepath.Join(opts.DataDir, "state"), w, opts.Prefill, opts.PrefillScale, avg)
		if err != nil {
			return nil, err
		}
		rep.Prefill = stats
		tr.prefilled(states)
		fmt.Fprintf(opts.Progress, "bench: prefilled %d devices, %d messages in %.1fs\n", stats.Devices, stats.Messages, stats.Seconds)
	}
	ts, err := tablestore.ForKind(cmp.Or(opts.TableStorage, tablestore.DefaultKind), tablestore.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	runner, err := topology.NewRunner(p.Plan, topology.RunnerOptions{
		Groups: runGroups(p.Topology.Groups(), p.Config().Prefix, opts.Skip),
		Kafka:  k, DataDir: filepath.Join(opts.DataDir, "state"), Logger: log, SkipTopicCreation: true,
		TableStorage: ts, Resources: []topology.Provided{topology.Provide[sinks.Store](processors.Store, measuringStore{Store: store, t: tr})},
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var ed *edge.Edge
	labelled(ctx, "edge-producer", func(context.Context) {
		ed, err = edge.New(edge.Options{
			Kafka: k, RawTopic: p.Raw.Name(), DeadLetterTopic: p.DeadLetters.Name(),
			Secret: []byte(deviceSecret), EdgeID: "bench", Logger: log,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer ed.Close()
	view, err := topology.NewView(p.DeviceState, topology.ViewOptions{Kafka: k, DataDir: filepath.Join(opts.DataDir, "view"), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(edge.Path, ed.Handler())
	srv, err := serve.Listen(mux, serve.Options{Addr: "127.0.0.1:0", Logger: log, DeferAdmission: edge.DefersAdmission})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}

	pctx, stopPipeline := context.WithCancel(ctx)
	defer stopPipeline()
	g, gctx := errgroup.WithContext(pctx)
	// Each part's goroutines carry a label, so that a CPU profile splits
	// the process's CPU among them (the groups' own labels are the
	// Runner's).
	for name, run := range map[string]func(context.Context) error{"groups": runner.Run, "view": view.Run, "edge-http": srv.Serve} {
		g.Go(func() (err error) {
			labelled(gctx, name, func(ctx context.Context) { err = run(ctx) })
			return err
		})
	}
	stopAll := func() error {
		stopPipeline()
		err := g.Wait()
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	}
	if err := waitUntil(gctx, 2*time.Minute, func() error {
		if err := runner.Ready(); err != nil {
			return err
		}
		if !view.Recovered() {
			return errors.New("view recovering")
		}
		return ed.Ready()
	}); err != nil {
		return nil, errors.Join(err, stopAll())
	}

	// The device-state table's records, as the view sees them.
	var stateConsumer sarama.Consumer
	labelled(gctx, "tracker", func(ctx context.Context) {
		stateConsumer, err = followTable(ctx, k, p.DeviceState.Name(), opts.Partitions, tr)
	})
	if err != nil {
		return nil, errors.Join(err, stopAll())
	}
	defer stateConsumer.Close()

	m := &measure{opts: &opts, w: w, tr: tr, runner: runner, rep: rep, start: start}
	var runErr error
	labelled(gctx, "loadgen", func(ctx context.Context) { runErr = m.run(ctx, srv.URL()+edge.Path) })
	if runErr == nil {
		runErr = m.drain(gctx)
	}
	if runErr == nil {
		runErr = m.checkView(view, w)
	}
	if err := stopAll(); err != nil && runErr == nil {
		runErr = err
	}
	if err := ed.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return nil, runErr
	}
	rep.TablesDiskBytes = map[string]int64{}
	for _, g := range p.Topology.Groups() {
		if n := dirBytes(filepath.Join(opts.DataDir, "state", "tables", g)); n > 0 {
			rep.TablesDiskBytes[strings.TrimPrefix(g, prefix)] = n
		}
	}
	if opts.MeasureRecovery {
		runnerOpts := topology.RunnerOptions{
			Kafka: k, DataDir: filepath.Join(opts.DataDir, "state"), Logger: log, SkipTopicCreation: true,
			TableStorage: ts,
		}
		warm, err := recoveryTime(ctx, p.Plan, runnerOpts, "")
		if err != nil {
			return nil, err
		}
		cold, err := recoveryTime(ctx, p.Plan, runnerOpts, filepath.Join(opts.DataDir, "state", "tables"))
		if err != nil {
			return nil, err
		}
		rep.Recovery = &Recovery{WarmSeconds: warm.Seconds(), ColdSeconds: cold.Seconds()}
	}
	if !opts.NoBaselines {
		b, err := runBaselines(ctx, k, prefix, opts.Partitions, filepath.Join(opts.DataDir, "baselines"), w, log)
		if err != nil {
			return nil, err
		}
		rep.Baselines = b
	}
	rep.finish()
	return rep, nil
}

// labelled runs f with the CPU profile label component=name on its
// goroutine and on those it starts.
func labelled(ctx context.Context, name string, f func(context.Context)) {
	pprof.Do(ctx, pprof.Labels("component", name), f)
}

// followTable consumes every partition of a table topic and feeds the
// tracker.
func followTable(ctx context.Context, k topology.Kafka, topic string, parts int32, tr *tracker) (sarama.Consumer, error) {
	c, err := sarama.NewConsumer(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		return nil, fmt.Errorf("bench: table consumer: %w", err)
	}
	for part := range parts {
		pc, err := c.ConsumePartition(topic, part, sarama.OffsetOldest)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("bench: consume %s/%d: %w", topic, part, err)
		}
		go func() {
			defer pc.AsyncClose()
			for {
				select {
				case <-ctx.Done():
					return
				case msg, ok := <-pc.Messages():
					if !ok {
						return
					}
					if dev, prog, ok := stateProgress(msg.Value); ok {
						tr.viewUpdate(dev, prog)
					}
				case <-pc.Errors():
				}
			}
		}()
	}
	return c, nil
}

// measure is the sending and measuring part of a run.
type measure struct {
	opts   *Options
	w      *workload
	tr     *tracker
	runner *topology.Runner
	rep    *Report
	start  time.Time

	sentPkgs, sentMsgs, winPkgs, winMsgs atomic.Uint64
	unexpected, retries, failures        atomic.Uint64
	expView, expStore                    atomic.Uint64
	resends                              atomic.Uint64
	maybeDup                             atomic.Uint64
	firstErr                             atomic.Pointer[error]

	winStart, winEnd time.Duration
	cpuStart, cpuEnd time.Duration
	lagStart, lagEnd map[string]groupLag
	samplesMu        sync.Mutex
	lagMax           map[string]int64
	rssSamples       []int64
	liveSamples      []int64
	sendDone         time.Duration
}

type groupLag struct{ committed, lag int64 }

type job struct {
	i  int
	at time.Duration // intended send time; 0: send now
}

// run sends the workload and measures the window.
func (m *measure) run(ctx context.Context, url string) error {
	opts := m.opts
	sctx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: opts.Workers, MaxIdleConnsPerHost: opts.Workers, MaxConnsPerHost: opts.Workers,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()

	chans := make([]chan job, opts.Workers)
	var workers sync.WaitGroup
	for i := range chans {
		chans[i] = make(chan job, 16)
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range chans[i] {
				// Once the window closed, queued packages are dropped;
				// those in flight finish, so that every package counted
				// as sent reached the edge.
				if sctx.Err() == nil {
					m.send(ctx, client, url, j)
				}
			}
		}()
	}
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		defer func() {
			for _, c := range chans {
				close(c)
			}
		}()
		var cum float64
		base := m.tr.since() // the schedule starts now, not when the run began
		for i := range m.w.items {
			it := &m.w.items[i]
			var at time.Duration
			if opts.Rate > 0 {
				at = base + time.Duration(cum/opts.Rate*float64(time.Second))
				if d := at - m.tr.since(); d > 0 {
					select {
					case <-time.After(d):
					case <-sctx.Done():
						return
					}
				}
				at = max(at, 1)
			}
			cum += float64(it.messages)
			select {
			case chans[it.device%uint64(len(chans))] <- job{i: i, at: at}:
			case <-sctx.Done():
				return
			}
		}
	}()

	sampler := time.NewTicker(opts.SampleEvery)
	defer sampler.Stop()
	warm := time.NewTimer(opts.Warmup)
	defer warm.Stop()
	var end <-chan time.Time
	open := false
	closeWindow := func() error {
		m.winEnd = m.tr.since()
		m.tr.win.to.Store(int64(m.winEnd))
		m.cpuEnd = cpuTime()
		m.rep.Machine.LoadEnd = loadAvg()
		if opts.CPUProfile != nil {
			pprof.StopCPUProfile()
		}
		if opts.MemProfile != nil {
			if err := pprof.Lookup("heap").WriteTo(opts.MemProfile, 0); err != nil {
				return fmt.Errorf("bench: heap profile: %w", err)
			}
		}
		m.rep.Memory.WindowEndBytes = procStatus("VmRSS")
		m.rep.Memory.LiveHeapWindowEndBytes = liveHeap()
		lag, err := m.lag(ctx)
		m.lagEnd = lag
		return err
	}
	for {
		select {
		case <-ctx.Done():
			if open && opts.CPUProfile != nil {
				pprof.StopCPUProfile()
			}
			stopSending()
			workers.Wait()
			return ctx.Err()
		case <-warm.C:
			lag, err := m.lag(ctx)
			if err != nil {
				return err
			}
			m.lagStart = lag
			m.rep.Machine.LoadStart = loadAvg()
			m.rep.Memory.WindowStartBytes = procStatus("VmRSS")
			m.rep.Memory.LiveHeapWindowStartBytes = liveHeap()
			if opts.CPUProfile != nil {
				if err := pprof.StartCPUProfile(opts.CPUProfile); err != nil {
					return fmt.Errorf("bench: cpu profile: %w", err)
				}
			}
			m.cpuStart = cpuTime()
			m.winStart = max(m.tr.since(), 1)
			m.tr.win.from.Store(int64(m.winStart))
			open = true
			end = time.After(opts.Duration)
			fmt.Fprintf(opts.Progress, "bench: window open at %.1fs\n", m.winStart.Seconds())
		case <-end:
			err := closeWindow()
			stopSending()
			workers.Wait()
			return err
		case <-dispatched:
			dispatched = nil
			if !open {
				return errors.New("bench: the workload ran out before the warmup ended (raise --flat-out-rate)")
			}
			workers.Wait()
			m.sendDone = m.tr.since()
			fmt.Fprintf(opts.Progress, "bench: workload sent at %.1fs; closing the window\n", m.sendDone.Seconds())
			err := closeWindow()
			return err
		case <-sampler.C:
			lag, err := m.lag(ctx)
			if err != nil {
				return err
			}
			var total int64
			for _, l := range lag {
				total += l.lag
			}
			rss, live := procStatus("VmRSS"), liveHeap()
			m.samplesMu.Lock()
			m.rssSamples = append(m.rssSamples, rss)
			m.liveSamples = append(m.liveSamples, live)
			m.samplesMu.Unlock()
			fmt.Fprintf(opts.Progress, "bench: %5.1fs sent %d msgs, view %d msgs, lag %d records, rss %d MB, live heap %d MB, load %.2f\n",
				m.tr.since().Seconds(), m.sentMsgs.Load(), m.tr.view.allMsgs.Load(), total, rss>>20, live>>20, loadAvg())
		}
	}
}

// send posts one package, again while the edge answers 429 or 503.
func (m *measure) send(ctx context.Context, client *http.Client, url string, j job) {
	it := &m.w.items[j.i]
	at := j.at
	if at == 0 {
		at = m.tr.since()
	}
	m.tr.sending(it, at)
	if m.tr.win.contains(at) {
		m.winPkgs.Add(1)
		m.winMsgs.Add(uint64(it.messages))
	}
	m.sentPkgs.Add(1)
	m.sentMsgs.Add(uint64(it.messages))
	m.expView.Add(it.viewAdds)
	m.expStore.Add(it.storeAdds)
	resent := false
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(it.body))
		if err != nil {
			m.failures.Add(1)
			return
		}
		req.Header.Set("Authorization", "Bearer "+it.token)
		req.Header.Set("Content-Type", "application/octet-stream")
		t0 := m.tr.since()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A device sends again when its connection fails; if the
			// edge took the first copy, the view counts its messages
			// twice and the consistency check says so.
			m.firstErr.CompareAndSwap(nil, &err)
			if attempt < 3 {
				m.resends.Add(1)
				if !resent {
					resent = true
					m.maybeDup.Add(it.viewAdds)
				}
				continue
			}
			m.failures.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if now := m.tr.since(); m.tr.win.contains(t0) {
			m.tr.edge.mu.Lock()
			m.tr.edge.lat = append(m.tr.edge.lat, float32((now-t0).Seconds()*1000))
			m.tr.edge.mu.Unlock()
		}
		if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < 100 {
			m.retries.Add(1)
			if resp.StatusCode == http.StatusServiceUnavailable && !resent {
				// A 503 after a produce timeout may still see the
				// record written: the copy sent again then counts as
				// duplicates in the view (never as stored rows).
				resent = true
				m.maybeDup.Add(it.viewAdds)
			}
			select {
			case <-time.After(20 * time.Millisecond):
				continue
			case <-ctx.Done():
				return
			}
		}
		if resp.StatusCode != it.code {
			m.unexpected.Add(1)
		}
		return
	}
}

// lag returns each group's committed offsets and lag, summed over its
// input partitions, and keeps the largest lag seen.
func (m *measure) lag(ctx context.Context) (map[string]groupLag, error) {
	ls, err := m.runner.Lag(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: lag: %w", err)
	}
	out := map[string]groupLag{}
	for _, l := range ls {
		g := out[l.Group]
		g.committed += max(l.Committed, 0)
		g.lag += l.Lag
		out[l.Group] = g
	}
	m.samplesMu.Lock()
	if m.lagMax == nil {
		m.lagMax = map[string]int64{}
	}
	for name, g := range out {
		m.lagMax[name] = max(m.lagMax[name], g.lag)
	}
	m.samplesMu.Unlock()
	return out, nil
}

// drain waits until every sent package is in the view and the store and
// every group has committed its inputs.
func (m *measure) drain(ctx context.Context) error {
	err := waitUntil(ctx, m.opts.DrainTimeout, func() error {
		if v, s := m.tr.viewOut.Load(), m.tr.storeOut.Load(); v != 0 || s != 0 {
			return fmt.Errorf("%d packages not in the view, %d not in the store", v, s)
		}
		return nil
	})
	drained := m.tr.since()
	m.rep.Consistency.DrainSeconds = (drained - m.winEnd).Seconds()
	if err != nil {
		m.rep.Consistency.Problems = append(m.rep.Consistency.Problems, err.Error())
	}
	err = waitUntil(ctx, m.opts.DrainTimeout, func() error {
		lag, err := m.lag(ctx)
		if err != nil {
			return err
		}
		for g, l := range lag {
			if l.lag != 0 {
				return fmt.Errorf("group %s lags %d records", g, l.lag)
			}
		}
		return nil
	})
	if err != nil {
		m.rep.Consistency.Problems = append(m.rep.Consistency.Problems, err.Error())
	}
	m.collect()
	return ctx.Err()
}

// checkView asks the view for every device and compares its counts with
// what the workload should have made of the packages sent.
func (m *measure) checkView(v *topology.View[records.DeviceState], w *workload) error {
	c := &m.rep.Consistency
	for _, d := range w.devices {
		st, ok, err := v.Get(strconv.FormatUint(d, 10))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if ok {
			c.ViewProgress += st.Messages + st.Duplicates + st.Invalid
			c.ViewMessages += st.Messages
		}
		// What a prefill put there is not the run's.
		if b, ok := m.tr.base[d]; ok {
			c.ViewProgress -= b.Messages + b.Duplicates + b.Invalid
			c.ViewMessages -= b.Messages
		}
	}
	c.PossibleDuplicates = m.maybeDup.Load()
	if c.ViewProgress < c.ExpectedViewProgress || c.ViewProgress > c.ExpectedViewProgress+c.PossibleDuplicates {
		c.Problems = append(c.Problems, fmt.Sprintf("the view counts %d messages (stored, duplicate or invalid); the packages sent carry %d, and packages sent again after a 503 or a failed connection up to %d more", c.ViewProgress, c.ExpectedViewProgress, c.PossibleDuplicates))
	}
	if c.ViewMessages != c.ExpectedStored {
		c.Problems = append(c.Problems, fmt.Sprintf("the view counts %d stored messages; %d were expected", c.ViewMessages, c.ExpectedStored))
	}
	return nil
}

// waitUntil polls cond every 100ms until it returns nil, ctx ends or
// timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() error) error {
	if err := poll.Until(ctx, timeout, 100*time.Millisecond, cond); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// recoveryTime starts the groups again (after removing wipe, when set)
// and returns how long they took to be ready, rebalance included.
// runGroups returns groups without those skip names (before prefix); nil,
// every group, when it skips none.
func runGroups(groups []string, prefix string, skip []string) []string {
	if len(skip) == 0 {
		return nil
	}
	var out []string
	for _, g := range groups {
		if !slices.Contains(skip, strings.TrimPrefix(g, prefix)) {
			out = append(out, g)
		}
	}
	return out
}

func recoveryTime(ctx context.Context, plan *topology.Plan, ro topology.RunnerOptions, wipe string) (time.Duration, error) {
	if wipe != "" {
		if err := os.RemoveAll(wipe); err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
	}
	r, err := topology.NewRunner(plan, ro)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- r.Run(ctx) }()
	werr := waitUntil(ctx, 5*time.Minute, r.Ready)
	took := time.Since(start)
	cancel()
	if err := errors.Join(werr, <-errc); err != nil && !errors.Is(err, context.Canceled) {
		return 0, fmt.Errorf("bench: recovery: %w", err)
	}
	return took, nil
}

// deleteTopics deletes the topics of a run on an external cluster (those
// whose names start with its prefix), logging what it cannot delete.
func deleteTopics(k topology.Kafka, prefix string, log *slog.Logger) {
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		log.Warn("bench: cannot delete the run's topics", "prefix", prefix, "err", err)
		return
	}
	defer admin.Close()
	topics, err := admin.ListTopics()
	if err != nil {
		log.Warn("bench: cannot list the run's topics", "prefix", prefix, "err", err)
		return
	}
	for name := range topics {
		if strings.HasPrefix(name, prefix) {
			if err := admin.DeleteTopic(name); err != nil {
				log.Warn("bench: cannot delete a topic", "topic", name, "err", err)
			}
		}
	}
}

// benchRetention is the embedded broker's consumed retention, which keeps
// memory flat over a run: the dead-letter topic stays whole, and so does the
// raw topic when the baselines will read it again from its start.
func benchRetention(noBaselines bool) *embedded.Retention {
	keep := []string{processors.TopicDeadLetter}
	if !noBaselines {
		keep = append(keep, processors.TopicRaw)
	}
	return embedded.DefaultRetention(keep...)
}

// openStore returns opts.Store, or a local store in dir/sink and its
// closing.
func openStore(opts Options, dir string) (sinks.Store, func(), error) {
	if opts.Store != nil {
		return opts.Store, func() {}, nil
	}
	ls, err := local.Open(filepath.Join(dir, "sink"), local.Options{NoSync: opts.StoreNoSync})
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	return ls, func() { _ = ls.Close() }, nil
}

// declare declares the pipeline with opts' registry and settings, its
// names under prefix, with opts' partitions and the fusion fuse.
func declare(opts Options, prefix string, fuse processors.Fusion, log *slog.Logger) (*assembly.Assembly, error) {
	reg := opts.Registry
	if reg == nil {
		reg = assembly.New()
	}
	cfg := processors.ConfigFrom(opts.Settings)
	cfg.Prefix = prefix + cfg.Prefix
	cfg.Partitions, cfg.Fuse, cfg.Logger = opts.Partitions, fuse, log
	p, err := reg.Build(cfg, opts.Settings)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return p, nil
}
