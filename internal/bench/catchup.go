package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/simulator"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// CatchUpOptions configure a catch-up run: the raw topic is filled first,
// as the edge would have written the fleet's packages, then each processor
// group starts from empty state on its own and is timed draining its
// inputs, in the topology's order (so every group reads a full topic).
type CatchUpOptions struct {
	// Messages is how many messages the fleet sends into the raw topic
	// (default 3,000,000).
	Messages int64
	// FleetRate is the fleet's rate in messages/s, which spaces the
	// packages' message times (default 40,000: 40,000 devices at one
	// message a second).
	FleetRate float64
	// Variants are the stage fusions to measure (default: none, then all).
	Variants []processors.Fusion
	// Rounds repeats the variants, alternating (default 1).
	Rounds int
	// NoPeer skips the plain goka pipeline's drain after each round's
	// variants.
	NoPeer bool
	// ProfileGroups, when set, limits Options.CPUProfile to these groups'
	// drains (default: every drain of the first run).
	ProfileGroups []string
}

// CatchUpReport is what a catch-up run measured.
type CatchUpReport struct {
	Machine  Machine        `json:"machine"`
	Workload WorkloadReport `json:"workload"`
	// Packages and Messages are what the raw topic holds (the packages
	// the edge accepts, and their messages).
	Packages uint64 `json:"raw_packages"`
	Messages uint64 `json:"raw_messages"`
	// FleetRate is the rate, messages/s, the fleet's clock sent them at.
	FleetRate float64      `json:"fleet_rate"`
	Runs      []CatchUpRun `json:"runs"`
	// Peers are the plain goka pipeline's drains of the same raw topic,
	// one a round (see gokaPeer).
	Peers []Baseline `json:"goka_peers,omitempty"`
}

// CatchUpRun is one drain of the raw topic by one variant's groups.
type CatchUpRun struct {
	Round  int    `json:"round"`
	Fuse   string `json:"fuse"`
	Broker string `json:"broker"`
	// FillSeconds is how long filling the raw topic took (not measured
	// as the pipeline's).
	FillSeconds float64        `json:"fill_seconds"`
	Groups      []CatchUpGroup `json:"groups"`
	// CPUSecondsPer10kMessages sums the groups'.
	CPUSecondsPer10kMessages float64 `json:"cpu_seconds_per_10k_messages"`
	CPUSeconds               float64 `json:"cpu_seconds"`
	DrainSeconds             float64 `json:"drain_seconds"`
	LoadStart                float64 `json:"load_avg_start"`
	LoadEnd                  float64 `json:"load_avg_end"`
	// Problems lists what the drained tables and store disagree on with
	// the workload (none expected).
	Problems []string `json:"problems,omitempty"`
}

// CatchUpGroup is one group's drain.
type CatchUpGroup struct {
	Group string `json:"group"`
	// Records is what it consumed (its input and loop topics' records).
	Records uint64 `json:"records"`
	// ReadySeconds is the time from start to ready (the consumer group's
	// join included); DrainSeconds from ready to every input committed.
	ReadySeconds float64 `json:"ready_seconds"`
	DrainSeconds float64 `json:"drain_seconds"`
	// SettleSeconds is the time after the drain until the process was
	// nearly idle (background compactions done).
	SettleSeconds float64 `json:"settle_seconds"`
	// CPUSeconds is the process's CPU from the group's start until it
	// settled after its drain (the embedded broker's included when it is
	// the embedded one).
	CPUSeconds               float64 `json:"cpu_seconds"`
	CPUSecondsPer10kMessages float64 `json:"cpu_seconds_per_10k_messages"`
	MessagesPerSecond        float64 `json:"messages_per_second"`
}

// countingStore counts the rows its store acknowledged.
type countingStore struct {
	sinks.Store
	rows *atomic.Uint64
}

func (c countingStore) Write(ctx context.Context, rs []records.Reading) error {
	if err := c.Store.Write(ctx, rs); err != nil {
		return err
	}
	c.rows.Add(uint64(len(rs)))
	return nil
}

// CatchUp fills the raw topic with the workload of opts (Devices,
// MessagesPerPackage, Faults, Seed) and times each variant's groups
// draining it from empty state. opts.Brokers, Partitions, FlushInterval,
// FetchMinBytes, FetchMaxWait, TableStorage, StoreNoSync, DataDir,
// CPUProfile (of the first run's drains) and Progress apply; the rest is the live
// run's.
func CatchUp(ctx context.Context, opts Options, co CatchUpOptions) (*CatchUpReport, error) {
	opts.defaults()
	if opts.DataDir == "" {
		return nil, errors.New("bench: no data folder")
	}
	if co.Messages == 0 {
		co.Messages = 3_000_000
	}
	if co.FleetRate == 0 {
		co.FleetRate = 40_000
	}
	if co.FleetRate < 0 || math.IsNaN(co.FleetRate) || math.IsInf(co.FleetRate, 0) {
		return nil, fmt.Errorf("bench: catch-up fleet rate %v: want a positive rate", co.FleetRate)
	}
	if len(co.Variants) == 0 {
		co.Variants = []processors.Fusion{processors.FuseNone, processors.FuseAll}
	}
	co.Rounds = max(co.Rounds, 1)
	rep := &CatchUpReport{Machine: machine(), Workload: workloadReport(&opts)}
	w, err := generate(simulator.FleetConfig{
		Seed: opts.Seed, Devices: opts.Devices, Secret: []byte(deviceSecret),
		Faults: opts.Faults, MessagesPerPackage: opts.MessagesPerPackage,
	}, co.Messages, co.FleetRate)
	if err != nil {
		return nil, err
	}
	debug.FreeOSMemory()
	rep.Workload.Packages, rep.Workload.Messages = len(w.items), w.messages
	rep.Workload.BodyBytes, rep.Workload.GenerateSeconds = w.bodyBytes, w.genTime.Seconds()
	rep.Workload.RateOffered, rep.Workload.DurationSeconds, rep.Workload.WarmupSeconds, rep.Workload.Workers = 0, 0, 0, 0
	rep.Packages, rep.Messages, rep.FleetRate = w.accepted, w.rawMessages, co.FleetRate
	fmt.Fprintf(opts.Progress, "bench: generated %d packages, %d messages (%d MB) in %.1fs\n",
		len(w.items), w.messages, w.bodyBytes>>20, w.genTime.Seconds())
	for round := 1; round <= co.Rounds; round++ {
		for _, f := range co.Variants {
			// The CPU profile is of the first run's drains.
			run, err := catchUpOnce(ctx, &opts, &co, w, f, round, len(rep.Runs) == 0)
			if err != nil {
				return nil, err
			}
			rep.Runs = append(rep.Runs, *run)
		}
		if !co.NoPeer {
			var b Baseline
			if err := catchUpPeer(ctx, &opts, w, round, &b); err != nil {
				return nil, err
			}
			fmt.Fprintf(opts.Progress, "bench: round %d: plain goka peer %.4f CPU s per 10k messages\n", round, b.CPUSecondsPer10kMessages)
			rep.Peers = append(rep.Peers, b)
		}
	}
	return rep, nil
}

func catchUpOnce(ctx context.Context, opts *Options, co *CatchUpOptions, w *workload, fuse processors.Fusion, round int, profile bool) (*CatchUpRun, error) {
	log := opts.Logger
	run := &CatchUpRun{Round: round, Fuse: fuse.String()}
	dir := filepath.Join(opts.DataDir, fmt.Sprintf("catchup-%d-%s", round, strings.ReplaceAll(fuse.String(), ",", "+")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: data folder: %w", err)
	}
	defer os.RemoveAll(dir)
	k := topology.Kafka{Brokers: opts.Brokers, ClientID: "watershed-bench", FlushInterval: opts.FlushInterval,
		FetchMinBytes: opts.FetchMinBytes, FetchMaxWait: opts.FetchMaxWait}
	prefix := ""
	if len(opts.Brokers) == 0 {
		run.Broker = "embedded"
		// No retention: a group that has not started yet must still find
		// its whole input.
		broker, err := embedded.Start(embedded.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer broker.Close()
		k.Brokers = broker.Addrs()
	} else {
		run.Broker = "kafka " + strings.Join(opts.Brokers, ",")
		prefix = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
		defer deleteTopics(k, prefix, log)
	}
	var rows atomic.Uint64
	store, closeStore, err := openStore(*opts, dir)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	p, err := declare(*opts, prefix, fuse, log)
	if err != nil {
		return nil, err
	}
	if _, err := p.Topology.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	fillStart := time.Now()
	if err := fillRaw(ctx, k, p.Raw.Name(), w); err != nil {
		return nil, err
	}
	run.FillSeconds = time.Since(fillStart).Seconds()
	fmt.Fprintf(opts.Progress, "bench: round %d, fuse %s: raw topic filled in %.1fs\n", round, run.Fuse, run.FillSeconds)

	tso := tablestore.Options{Logger: log}
	ts, err := tablestore.ForKind(cmp.Or(opts.TableStorage, tablestore.DefaultKind), tso)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ro := topology.RunnerOptions{Kafka: k, DataDir: filepath.Join(dir, "state"), Logger: log, SkipTopicCreation: true, TableStorage: ts,
		Resources: []topology.Provided{topology.Provide[sinks.Store](processors.Store, countingStore{Store: store, rows: &rows})}}
	run.LoadStart = loadAvg()
	// The profile spans the drains from the first group to profile to
	// the last (one profile, one file).
	groups := p.Topology.Groups()
	first, last := -1, -1
	for i, g := range groups {
		if profile && opts.CPUProfile != nil && (len(co.ProfileGroups) == 0 || slices.Contains(co.ProfileGroups, strings.TrimPrefix(g, prefix))) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	profiling := false
	defer func() {
		if profiling {
			pprof.StopCPUProfile()
		}
	}()
	msgs := float64(w.rawMessages)
	for i, g := range groups {
		if i == first {
			if err := pprof.StartCPUProfile(opts.CPUProfile); err != nil {
				return nil, fmt.Errorf("bench: cpu profile: %w", err)
			}
			profiling = true
		}
		cg, err := drainGroup(ctx, p.Plan, ro, g)
		if err != nil {
			return nil, err
		}
		if i == last {
			pprof.StopCPUProfile()
			profiling = false
		}
		cg.Group = strings.TrimPrefix(g, prefix)
		if msgs > 0 {
			cg.CPUSecondsPer10kMessages = cg.CPUSeconds / msgs * 10_000
			cg.MessagesPerSecond = msgs / max(cg.DrainSeconds, 1e-9)
		}
		run.Groups = append(run.Groups, *cg)
		run.CPUSeconds += cg.CPUSeconds
		run.CPUSecondsPer10kMessages += cg.CPUSecondsPer10kMessages
		run.DrainSeconds += cg.DrainSeconds
		fmt.Fprintf(opts.Progress, "bench: %s: %d records drained in %.1fs (ready after %.1fs), %.4f CPU s per 10k messages\n",
			g, cg.Records, cg.DrainSeconds, cg.ReadySeconds, cg.CPUSecondsPer10kMessages)
	}
	run.LoadEnd = loadAvg()
	if got := rows.Load(); got != w.storeAdds {
		run.Problems = append(run.Problems, fmt.Sprintf("the store holds %d rows; %d were expected", got, w.storeAdds))
	}
	progress, err := viewProgress(ctx, k, p.Pipeline, filepath.Join(dir, "view"), w)
	if err != nil {
		return nil, err
	}
	if progress != w.viewAdds {
		run.Problems = append(run.Problems, fmt.Sprintf("the device-state table counts %d messages (stored, duplicate or invalid); the raw topic carries %d", progress, w.viewAdds))
	}
	return run, nil
}

// catchUpPeer fills a raw topic with the workload and drains it with the
// plain goka pipeline (gokaPeer).
func catchUpPeer(ctx context.Context, opts *Options, w *workload, round int, out *Baseline) error {
	dir := filepath.Join(opts.DataDir, fmt.Sprintf("catchup-%d-peer", round))
	defer os.RemoveAll(dir)
	k := topology.Kafka{Brokers: opts.Brokers, ClientID: "watershed-bench"}
	prefix := ""
	if len(opts.Brokers) == 0 {
		broker, err := embedded.Start(embedded.Options{Logger: opts.Logger})
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer broker.Close()
		k.Brokers = broker.Addrs()
	} else {
		prefix = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "."
		defer deleteTopics(k, prefix, opts.Logger)
	}
	p := processors.New(processors.Config{Prefix: prefix, Partitions: opts.Partitions})
	if _, err := p.Topology.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := fillRaw(ctx, k, p.Raw.Name(), w); err != nil {
		return err
	}
	perRecord := 0.0
	if w.accepted > 0 {
		perRecord = float64(w.rawMessages) / float64(w.accepted)
	}
	return gokaPeer(ctx, k, p.Raw.Name(), prefix, opts.Partitions, dir, w.accepted, perRecord, out)
}

// fillRaw writes the workload's accepted packages into the raw topic as
// the edge would (key, headers, timestamp) and waits for every
// acknowledgement.
func fillRaw(ctx context.Context, k topology.Kafka, topic string, w *workload) error {
	cfg := kafkaclient.ProducerConfig(k)
	cfg.Producer.Flush.Frequency = 50 * time.Millisecond
	cfg.Producer.Flush.Bytes = 1 << 20
	prod, err := sarama.NewAsyncProducer(k.Brokers, cfg)
	if err != nil {
		return fmt.Errorf("bench: fill producer: %w", err)
	}
	var sent uint64
	g, gctx := errgroup.WithContext(ctx)
	acked := make(chan uint64, 1)
	g.Go(func() error {
		var n uint64
		err := drainProducer(prod, "fill", func(*sarama.ProducerMessage) { n++ })
		acked <- n
		return err
	})
	edgeID := []byte("bench")
	received := time.Now()
produce:
	for i := range w.items {
		it := &w.items[i]
		if it.code != 202 {
			continue // the edge writes no raw record for it
		}
		ms := received.Add(time.Duration(i) * time.Microsecond).UnixMilli()
		msg := &sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder(strconv.FormatUint(it.device, 10)), Value: sarama.ByteEncoder(it.body),
			Headers: []sarama.RecordHeader{
				{Key: []byte(edge.HeaderReceivedMs), Value: strconv.AppendInt(nil, ms, 10)},
				{Key: []byte(edge.HeaderEdgeID), Value: edgeID},
			},
			Timestamp: time.UnixMilli(ms),
		}
		select {
		case prod.Input() <- msg:
			sent++
		case <-gctx.Done():
			break produce
		}
	}
	prod.AsyncClose()
	err = g.Wait()
	if n := <-acked; err == nil && n != sent {
		err = fmt.Errorf("bench: fill: %d of %d records acknowledged", n, sent)
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// drainProducer reads prod's successes (handing each to ok) and errors
// until both close, and returns the first error, as "bench: what: ...".
func drainProducer(prod sarama.AsyncProducer, what string, ok func(*sarama.ProducerMessage)) error {
	var firstErr error
	succ, errs := prod.Successes(), prod.Errors()
	for succ != nil || errs != nil {
		select {
		case m, open := <-succ:
			if !open {
				succ = nil
				continue
			}
			ok(m)
		case e, open := <-errs:
			if !open {
				errs = nil
				continue
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("bench: %s: %w", what, e.Err)
			}
		}
	}
	return firstErr
}

// drainGroup runs one group alone from empty state until every record of
// its inputs is committed.
func drainGroup(ctx context.Context, plan *topology.Plan, ro topology.RunnerOptions, group string) (*CatchUpGroup, error) {
	ro.Groups = []string{group}
	r, err := topology.NewRunner(plan, ro)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	cpu0, t0 := cpuTime(), time.Now()
	// The group's label marks its goroutines in the CPU profile, leveldb's
	// compactions of its tables included.
	go pprof.Do(ctx, pprof.Labels("group", group), func(ctx context.Context) { errc <- r.Run(ctx) })
	stop := func(err error) error {
		cancel()
		if rerr := <-errc; rerr != nil && !errors.Is(rerr, context.Canceled) {
			err = errors.Join(err, rerr)
		}
		return err
	}
	if err := waitUntil(ctx, 5*time.Minute, r.Ready); err != nil {
		return nil, stop(err)
	}
	ready := time.Now()
	cg := &CatchUpGroup{Group: group, ReadySeconds: ready.Sub(t0).Seconds()}
	err = waitUntil(ctx, 30*time.Minute, func() error {
		ls, err := r.Lag(ctx)
		if err != nil {
			return err
		}
		var n uint64
		for _, l := range ls {
			if l.Lag != 0 {
				return fmt.Errorf("group %s lags %d records on %s/%d", group, l.Lag, l.Topic, l.Partition)
			}
			n += uint64(l.End)
		}
		cg.Records = n
		return nil
	})
	cg.DrainSeconds = time.Since(ready).Seconds()
	if err == nil {
		// Work left in the background (leveldb compacting what the group
		// wrote) is the group's cost too: the CPU counts until the process
		// is nearly idle.
		settle := time.Now()
		err = settled(ctx, 30*time.Second)
		cg.SettleSeconds = time.Since(settle).Seconds()
	}
	cg.CPUSeconds = (cpuTime() - cpu0).Seconds()
	if err := stop(err); err != nil {
		return nil, err
	}
	return cg, nil
}

// settled waits until the process used under 5% of a core over half a
// second, or until timeout.
func settled(ctx context.Context, timeout time.Duration) error {
	const step = 500 * time.Millisecond
	deadline := time.Now().Add(timeout)
	last := cpuTime()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
		now := cpuTime()
		if now-last < step/20 {
			return nil
		}
		last = now
	}
	return nil
}

// viewProgress reads the device-state table through a view and sums each
// device's messages (stored, duplicate and invalid).
func viewProgress(ctx context.Context, k topology.Kafka, p *processors.Pipeline, dir string, w *workload) (uint64, error) {
	v, err := topology.NewView(p.DeviceState, topology.ViewOptions{Kafka: k, DataDir: dir})
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- v.Run(ctx) }()
	defer func() { cancel(); <-errc }()
	if err := waitUntil(ctx, 5*time.Minute, func() error {
		if !v.Recovered() {
			return errors.New("view recovering")
		}
		return nil
	}); err != nil {
		return 0, err
	}
	var sum uint64
	for _, d := range w.devices {
		st, ok, err := v.Get(strconv.FormatUint(d, 10))
		if err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
		if ok {
			sum += st.Messages + st.Duplicates + st.Invalid
		}
	}
	return sum, nil
}

// Markdown writes the report as markdown.
func (r *CatchUpReport) Markdown(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "## watershed bench --catch-up\n\n")
	fmt.Fprintf(&b, "- machine: %d CPUs, %s, %s, %s\n", m.CPUs, m.CPUModel, m.GoVersion, m.OS)
	broker := ""
	if len(r.Runs) > 0 {
		broker = r.Runs[0].Broker
	}
	fmt.Fprintf(&b, "- broker: %s; %d partitions; table storage %s; store %s, sync %v\n", broker, r.Workload.Partitions, r.Workload.TableStorage, r.Workload.Store, r.Workload.StoreSync)
	fmt.Fprintf(&b, "- raw topic: %d packages, %d messages of %d devices (%s messages a package, faults %s, seed %d), sent at %g messages/s\n\n",
		r.Packages, r.Messages, r.Workload.Devices, r.Workload.MessagesPerPackage, r.Workload.Faults, r.Workload.Seed, r.FleetRate)
	fmt.Fprintf(&b, "Each group starts from empty state on its own, in the topology's order, and drains its inputs; CPU is the process's from the group's start until it is nearly idle after its drain (settle: leveldb's background compactions).\n\n")
	fmt.Fprintf(&b, "| round | fuse | group | records | ready s | drain s | settle s | msgs/s | CPU s | CPU s / 10k msgs |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, run := range r.Runs {
		for _, g := range run.Groups {
			fmt.Fprintf(&b, "| %d | %s | %s | %d | %.1f | %.1f | %.1f | %.0f | %.2f | %.4f |\n", run.Round, run.Fuse, g.Group, g.Records,
				g.ReadySeconds, g.DrainSeconds, g.SettleSeconds, g.MessagesPerSecond, g.CPUSeconds, g.CPUSecondsPer10kMessages)
		}
		fmt.Fprintf(&b, "| %d | %s | **total** | | | %.1f | | | %.2f | **%.4f** |\n", run.Round, run.Fuse, run.DrainSeconds, run.CPUSeconds, run.CPUSecondsPer10kMessages)
	}
	for i, peer := range r.Peers {
		ratio := 0.0
		for _, run := range r.Runs {
			if run.Round == i+1 && run.Fuse == "none" && run.CPUSecondsPer10kMessages > 0 {
				ratio = peer.CPUSecondsPer10kMessages / run.CPUSecondsPer10kMessages
			}
		}
		fmt.Fprintf(&b, "| %d | plain goka peer (one record per message; decode and device state only) | | %d | | %.1f | | %.0f | %.2f | %.4f (%.2f x unfused) |\n",
			i+1, peer.Records, peer.Seconds, peer.MessagesPerSecond, peer.CPUSecondsPer10kMessages*float64(r.Messages)/10_000, peer.CPUSecondsPer10kMessages, ratio)
	}
	b.WriteString("\n")
	for _, run := range r.Runs {
		fmt.Fprintf(&b, "- round %d, fuse %s: load average %.2f → %.2f; raw topic filled in %.1fs", run.Round, run.Fuse, run.LoadStart, run.LoadEnd, run.FillSeconds)
		if len(run.Problems) == 0 {
			b.WriteString("; no problems (store rows and device-state counts as expected)\n")
		} else {
			fmt.Fprintf(&b, "; PROBLEMS: %s\n", strings.Join(run.Problems, "; "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
