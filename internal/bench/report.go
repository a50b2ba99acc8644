package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// Report is what a run measured. Rates are per second of the measured
// window; latencies are of the packages sent within it.
type Report struct {
	Machine  Machine        `json:"machine"`
	Workload WorkloadReport `json:"workload"`

	// WindowSeconds is the measured window's length.
	WindowSeconds float64 `json:"window_seconds"`
	// MessagesPerSecond counts the messages of packages that reached the
	// view within the window (end to end), per second.
	MessagesPerSecond float64 `json:"messages_per_second"`
	// PackagesPerSecond is the same for packages.
	PackagesPerSecond float64 `json:"packages_per_second"`
	// StoredMessagesPerSecond counts the messages of packages whose rows
	// the store acknowledged within the window, per second.
	StoredMessagesPerSecond float64 `json:"stored_messages_per_second"`
	// SentMessagesPerSecond is what the devices sent within the window.
	SentMessagesPerSecond float64 `json:"sent_messages_per_second"`

	// Latencies from the device's send (its intended send time at an
	// offered rate) to the view's answer and to the stored row.
	P50SendToViewMs  float64 `json:"p50_send_to_view_ms"`
	P95SendToViewMs  float64 `json:"p95_send_to_view_ms"`
	P99SendToViewMs  float64 `json:"p99_send_to_view_ms"`
	MaxSendToViewMs  float64 `json:"max_send_to_view_ms"`
	P50SendToStoreMs float64 `json:"p50_send_to_store_ms"`
	P95SendToStoreMs float64 `json:"p95_send_to_store_ms"`
	P99SendToStoreMs float64 `json:"p99_send_to_store_ms"`
	MaxSendToStoreMs float64 `json:"max_send_to_store_ms"`
	// P50EdgeAnswerMs and P99EdgeAnswerMs are the edge's answer times
	// (request to response, Kafka's acknowledgement included).
	P50EdgeAnswerMs float64 `json:"p50_edge_answer_ms"`
	P99EdgeAnswerMs float64 `json:"p99_edge_answer_ms"`
	// ViewSamples and StoreSamples are the packages the percentiles are of.
	ViewSamples  int `json:"view_samples"`
	StoreSamples int `json:"store_samples"`

	// CPUSecondsPer10kMessages is the whole process's CPU time (the load
	// generator, the edge, the embedded broker and every stage) in the
	// window per 10,000 messages that reached the view.
	CPUSecondsPer10kMessages float64 `json:"cpu_seconds_per_10k_messages"`
	// CPUSeconds is the process's CPU time in the window.
	CPUSeconds float64 `json:"cpu_seconds"`
	// PeakRSSBytes is the process's VmHWM at the end of the run (it
	// includes the pre-generated workload: see Memory).
	PeakRSSBytes int64  `json:"peak_rss_bytes"`
	Memory       Memory `json:"memory"`

	// Stages are each processor group's figures in the window.
	Stages []Stage `json:"stages"`
	// LagGrowing is true when some group's lag at the end of the window
	// exceeds its lag at the start by more than two seconds of its
	// throughput and 1,000 records (offsets are committed every second,
	// so a second's worth of lag is normal).
	LagGrowing bool `json:"lag_growing"`

	Sending     Sending     `json:"sending"`
	Consistency Consistency `json:"consistency"`
	Baselines   *Baselines  `json:"baselines,omitempty"`
	Recovery    *Recovery   `json:"recovery,omitempty"`
	// Prefill is what was written into the tables before the run.
	Prefill *PrefillStats `json:"prefill,omitempty"`
	// TablesDiskBytes are the groups' local table folders after the run.
	TablesDiskBytes map[string]int64 `json:"tables_disk_bytes,omitempty"`
	// Ratios are the pipeline's messages/s over each baseline's.
	Ratios map[string]float64 `json:"ratios,omitempty"`

	viewLat, storeLat, edgeLat []float32
}

// Recovery is how long the groups took to be ready again after the run,
// the consumer group's rebalance included.
type Recovery struct {
	// WarmSeconds: on their local tables.
	WarmSeconds float64 `json:"warm_seconds"`
	// ColdSeconds: with the local tables removed, rebuilt from the table
	// topics.
	ColdSeconds float64 `json:"cold_seconds"`
}

// WorkloadReport describes the workload and the setup.
type WorkloadReport struct {
	Broker             string  `json:"broker"`
	Devices            int     `json:"devices"`
	MessagesPerPackage string  `json:"messages_per_package"`
	Faults             string  `json:"faults"`
	Seed               int64   `json:"seed"`
	RateOffered        float64 `json:"rate_offered"`
	DurationSeconds    float64 `json:"duration_seconds"`
	WarmupSeconds      float64 `json:"warmup_seconds"`
	Workers            int     `json:"workers"`
	Partitions         int32   `json:"partitions"`
	FlushInterval      string  `json:"flush_interval"`
	Store              string  `json:"store"`
	StoreSync          bool    `json:"store_sync"`
	TableStorage       string  `json:"table_storage"`
	Fuse               string  `json:"fuse"`
	// Skipped are the groups not run (Options.Skip).
	Skipped         []string `json:"skipped_groups,omitempty"`
	FetchMinBytes   int32    `json:"fetch_min_bytes"`
	FetchMaxWait    string   `json:"fetch_max_wait"`
	Packages        int      `json:"packages_generated"`
	Messages        uint64   `json:"messages_generated"`
	BodyBytes       int64    `json:"body_bytes_generated"`
	GenerateSeconds float64  `json:"generate_seconds"`
}

// Memory follows the process's resident memory.
type Memory struct {
	AfterGenerateBytes int64 `json:"after_generate_bytes"`
	WindowStartBytes   int64 `json:"window_start_bytes"`
	WindowEndBytes     int64 `json:"window_end_bytes"`
	// SamplesBytes are VmRSS samples through the run.
	SamplesBytes []int64 `json:"samples_bytes"`
	// LiveHeap* are the Go heap the last collection found live (see
	// liveHeap) when the window opened and closed: the pre-generated
	// workload is in both, so their difference is what the pipeline came
	// to hold during the window (tables' state and caches included).
	LiveHeapWindowStartBytes int64 `json:"live_heap_window_start_bytes"`
	LiveHeapWindowEndBytes   int64 `json:"live_heap_window_end_bytes"`
	// LiveHeapSamplesBytes are live-heap samples through the run.
	LiveHeapSamplesBytes []int64 `json:"live_heap_samples_bytes"`
}

// Stage is one processor group's throughput and lag.
type Stage struct {
	Group string `json:"group"`
	// RecordsPerSecond are the input records (all inputs, the loop
	// included) the group committed per second of the window.
	RecordsPerSecond float64 `json:"records_per_second"`
	LagStart         int64   `json:"lag_start"`
	LagEnd           int64   `json:"lag_end"`
	LagMax           int64   `json:"lag_max"`
}

// Sending is what the load generator did.
type Sending struct {
	Packages   uint64 `json:"packages"`
	Messages   uint64 `json:"messages"`
	Unexpected uint64 `json:"unexpected_answers"`
	Retries    uint64 `json:"retries"`
	// Resends are packages sent again after a failed connection.
	Resends  uint64 `json:"resends"`
	Failures uint64 `json:"failures"`
	// FirstError is the first failed connection's error, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Consistency compares what was counted with what was sent.
type Consistency struct {
	// ExpectedViewProgress is the sum over sent packages of what they add
	// to the device-state counts Messages+Duplicates+Invalid; ViewProgress
	// is what the view answered after the drain.
	ExpectedViewProgress uint64 `json:"expected_view_progress"`
	ViewProgress         uint64 `json:"view_progress"`
	// PossibleDuplicates bounds what packages sent again (after a 503 or
	// a failed connection, when the edge may have taken the first copy)
	// may add to ViewProgress as duplicates.
	PossibleDuplicates uint64 `json:"possible_duplicates"`
	// ExpectedStored are the rows the sent packages should store;
	// StoredRows the rows the store acknowledged; ViewMessages the view's
	// Messages summed over devices.
	ExpectedStored uint64 `json:"expected_stored"`
	StoredRows     uint64 `json:"stored_rows"`
	ViewMessages   uint64 `json:"view_messages"`
	// PackagesTracked were sent with something to show; PackagesInView and
	// PackagesStored were seen.
	PackagesTracked uint64 `json:"packages_tracked"`
	PackagesInView  uint64 `json:"packages_in_view"`
	PackagesStored  uint64 `json:"packages_stored"`
	// MessagesInView are the messages of the packages seen in the view.
	MessagesInView uint64 `json:"messages_in_view"`
	// DrainSeconds is how long after the window every package was seen.
	DrainSeconds float64 `json:"drain_seconds"`
	// Problems lists every disagreement; empty when consistent.
	Problems []string `json:"problems"`
}

func workloadReport(o *Options) WorkloadReport {
	ts := cmp.Or(o.TableStorage, tablestore.DefaultKind)
	store := o.StoreName
	if store == "" {
		store = "local"
	}
	return WorkloadReport{
		Store: store, Devices: o.Devices, MessagesPerPackage: fmt.Sprintf("%d-%d", o.MessagesPerPackage.Min, o.MessagesPerPackage.Max),
		Faults: o.FaultsName, Seed: o.Seed, RateOffered: o.Rate, DurationSeconds: o.Duration.Seconds(),
		WarmupSeconds: o.Warmup.Seconds(), Workers: o.Workers, Partitions: o.Partitions,
		StoreSync: !o.StoreNoSync, TableStorage: ts, Fuse: o.Fuse.String(), Skipped: o.Skip,
	}
}

// batching records the fetch and flush settings the clients of a run
// use, k's (on the embedded broker, with its batching filled in).
func (wl *WorkloadReport) batching(k topology.Kafka) {
	wl.FlushInterval, wl.FetchMaxWait = "topology default", "sarama default"
	if k.FlushInterval > 0 {
		wl.FlushInterval = k.FlushInterval.String()
	}
	if k.FetchMaxWait > 0 {
		wl.FetchMaxWait = k.FetchMaxWait.String()
	}
	wl.FetchMinBytes = max(k.FetchMinBytes, 1) // sarama's default is 1
}

// collect takes the figures of the measure into the report.
func (m *measure) collect() {
	r := m.rep
	win := m.winEnd - m.winStart
	r.WindowSeconds = win.Seconds()
	secs := max(win.Seconds(), 1e-9)
	tr := m.tr
	r.MessagesPerSecond = float64(tr.view.msgs.Load()) / secs
	r.PackagesPerSecond = float64(tr.view.pkgs.Load()) / secs
	r.StoredMessagesPerSecond = float64(tr.store.msgs.Load()) / secs
	r.SentMessagesPerSecond = float64(m.winMsgs.Load()) / secs
	tr.view.mu.Lock()
	r.viewLat = slices.Clone(tr.view.lat)
	tr.view.mu.Unlock()
	tr.edge.mu.Lock()
	r.edgeLat = slices.Clone(tr.edge.lat)
	tr.edge.mu.Unlock()
	tr.store.mu.Lock()
	r.storeLat = slices.Clone(tr.store.lat)
	tr.store.mu.Unlock()
	r.CPUSeconds = (m.cpuEnd - m.cpuStart).Seconds()
	if n := tr.view.msgs.Load(); n > 0 {
		r.CPUSecondsPer10kMessages = r.CPUSeconds / float64(n) * 10_000
	}
	m.samplesMu.Lock()
	r.Memory.SamplesBytes = slices.Clone(m.rssSamples)
	r.Memory.LiveHeapSamplesBytes = slices.Clone(m.liveSamples)
	for g, l := range m.lagStart {
		end := m.lagEnd[g]
		st := Stage{Group: g, RecordsPerSecond: float64(end.committed-l.committed) / secs,
			LagStart: l.lag, LagEnd: end.lag, LagMax: m.lagMax[g]}
		if st.LagEnd-st.LagStart > 2*int64(st.RecordsPerSecond)+1000 {
			r.LagGrowing = true
		}
		r.Stages = append(r.Stages, st)
	}
	m.samplesMu.Unlock()
	sort.Slice(r.Stages, func(i, j int) bool { return r.Stages[i].Group < r.Stages[j].Group })
	r.Sending = Sending{Packages: m.sentPkgs.Load(), Messages: m.sentMsgs.Load(),
		Unexpected: m.unexpected.Load(), Retries: m.retries.Load(), Resends: m.resends.Load(), Failures: m.failures.Load()}
	if e := m.firstErr.Load(); e != nil {
		r.Sending.FirstError = (*e).Error()
	}
	c := &r.Consistency
	c.ExpectedViewProgress, c.ExpectedStored = m.expView.Load(), m.expStore.Load()
	c.PackagesInView, c.PackagesStored = tr.view.allPkgs.Load(), tr.store.allPkgs.Load()
	c.MessagesInView = tr.view.allMsgs.Load()
	c.PackagesTracked = c.PackagesInView + uint64(max(tr.viewOut.Load(), 0))
	for _, d := range tr.devices {
		d.mu.Lock()
		c.StoredRows += d.store.seen
		d.mu.Unlock()
	}
	if c.StoredRows != c.ExpectedStored {
		c.Problems = append(c.Problems, fmt.Sprintf("the store acknowledged %d rows; %d were expected", c.StoredRows, c.ExpectedStored))
	}
	if r.Sending.Unexpected > 0 || r.Sending.Failures > 0 {
		c.Problems = append(c.Problems, fmt.Sprintf("%d unexpected answers and %d failed requests (first error: %s)", r.Sending.Unexpected, r.Sending.Failures, r.Sending.FirstError))
	}
}

// finish computes the percentiles, the peak memory and the ratios.
func (r *Report) finish() {
	r.ViewSamples, r.StoreSamples = len(r.viewLat), len(r.storeLat)
	r.P50SendToViewMs, r.P95SendToViewMs, r.P99SendToViewMs, r.MaxSendToViewMs = percentiles(r.viewLat)
	r.P50SendToStoreMs, r.P95SendToStoreMs, r.P99SendToStoreMs, r.MaxSendToStoreMs = percentiles(r.storeLat)
	r.P50EdgeAnswerMs, _, r.P99EdgeAnswerMs, _ = percentiles(r.edgeLat)
	r.PeakRSSBytes = procStatus("VmHWM")
	if b := r.Baselines; b != nil {
		r.Ratios = map[string]float64{}
		ratio := func(name string, v float64) {
			if v > 0 {
				r.Ratios[name] = r.MessagesPerSecond / v
			}
		}
		ratio("pipeline_to_sarama_consumer", b.SaramaConsumer.MessagesPerSecond)
		ratio("pipeline_to_goka_noop", b.GokaNoop.MessagesPerSecond)
		ratio("pipeline_to_decode_floor", b.DecodeFloor.MessagesPerSecond)
		ratio("pipeline_to_goka_peer", b.GokaPeer.MessagesPerSecond)
		if b.GokaPeer.CPUSecondsPer10kMessages > 0 {
			r.Ratios["cpu_per_message_to_goka_peer"] = r.CPUSecondsPer10kMessages / b.GokaPeer.CPUSecondsPer10kMessages
		}
		if b.DecodeFloor.CPUSecondsPer10kMessages > 0 {
			r.Ratios["cpu_per_message_to_decode_floor"] = r.CPUSecondsPer10kMessages / b.DecodeFloor.CPUSecondsPer10kMessages
		}
	}
}

// percentiles returns p50, p95, p99 and the maximum of ms (0s when empty).
func percentiles(ms []float32) (p50, p95, p99, maxv float64) {
	if len(ms) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return round3(float64(s[min(max(i, 0), len(s)-1)]))
	}
	return at(0.50), at(0.95), at(0.99), round3(float64(s[len(s)-1]))
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// JSON writes the report as one line of JSON.
func (r *Report) JSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	return nil
}

// Markdown writes the report for people.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	wl := &r.Workload
	fmt.Fprintf(&b, "# watershed bench\n\n")
	fmt.Fprintf(&b, "- machine: %d CPUs, %s, %s %s; load average %.2f at the window's start, %.2f at its end\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.OS, r.Machine.LoadStart, r.Machine.LoadEnd)
	rate := "flat out"
	if wl.RateOffered > 0 {
		rate = fmt.Sprintf("%.0f messages/s offered", wl.RateOffered)
	}
	fmt.Fprintf(&b, "- workload: %s broker, %d devices, %s messages a package, faults %s, seed %d, %s, %d HTTP workers, %d partitions, flush %s, fetch min %d bytes / max wait %s, %s store (sync %v), table storage %s, fused %s\n",
		wl.Broker, wl.Devices, wl.MessagesPerPackage, wl.Faults, wl.Seed, rate, wl.Workers, wl.Partitions, wl.FlushInterval, wl.FetchMinBytes, wl.FetchMaxWait, wl.Store, wl.StoreSync, wl.TableStorage, wl.Fuse)
	fmt.Fprintf(&b, "- window: %.1f s after %.0f s of warmup; %d packages (%d messages, %d MB) pre-generated in %.1f s\n\n",
		r.WindowSeconds, wl.WarmupSeconds, wl.Packages, wl.Messages, wl.BodyBytes>>20, wl.GenerateSeconds)
	if len(wl.Skipped) > 0 {
		fmt.Fprintf(&b, "- groups not run: %s\n\n", strings.Join(wl.Skipped, ", "))
	}

	fmt.Fprintf(&b, "| figure | value |\n|---|---|\n")
	row := func(name, format string, v ...any) {
		fmt.Fprintf(&b, "| %s | "+format+" |\n", append([]any{name}, v...)...)
	}
	row("messages/s end to end (in the view)", "%.0f", r.MessagesPerSecond)
	row("packages/s end to end", "%.0f", r.PackagesPerSecond)
	row("messages/s stored", "%.0f", r.StoredMessagesPerSecond)
	row("messages/s sent", "%.0f", r.SentMessagesPerSecond)
	row("send to view p50 / p95 / p99 / max (ms)", "%.1f / %.1f / %.1f / %.1f (%d packages)", r.P50SendToViewMs, r.P95SendToViewMs, r.P99SendToViewMs, r.MaxSendToViewMs, r.ViewSamples)
	row("send to store p50 / p95 / p99 / max (ms)", "%.1f / %.1f / %.1f / %.1f (%d packages)", r.P50SendToStoreMs, r.P95SendToStoreMs, r.P99SendToStoreMs, r.MaxSendToStoreMs, r.StoreSamples)
	row("edge answer p50 / p99 (ms)", "%.1f / %.1f", r.P50EdgeAnswerMs, r.P99EdgeAnswerMs)
	row("CPU s per 10,000 messages (whole process)", "%.3f (%.1f CPU s in the window)", r.CPUSecondsPer10kMessages, r.CPUSeconds)
	row("peak RSS (VmHWM)", "%d MB", r.PeakRSSBytes>>20)
	row("RSS after generating / window start / window end", "%d / %d / %d MB", r.Memory.AfterGenerateBytes>>20, r.Memory.WindowStartBytes>>20, r.Memory.WindowEndBytes>>20)
	row("Go live heap window start / end (workload included)", "%d / %d MB", r.Memory.LiveHeapWindowStartBytes>>20, r.Memory.LiveHeapWindowEndBytes>>20)
	if pf := r.Prefill; pf != nil {
		row("prefilled before the run", "%.0f h of history of %d devices (%.3g of the fleet): %d messages in %d packages, in %.1f s", pf.HistorySeconds/3600, pf.Devices, pf.Scale, pf.Messages, pf.Packages, pf.Seconds)
		for _, t := range pf.Tables {
			row("prefilled "+t.Table, "%d keys, %d MB of values", t.Keys, t.Bytes>>20)
		}
	}
	if len(r.TablesDiskBytes) > 0 {
		var parts []string
		for _, g := range slices.Sorted(maps.Keys(r.TablesDiskBytes)) {
			parts = append(parts, fmt.Sprintf("%s %d MB", g, r.TablesDiskBytes[g]>>20))
		}
		row("local tables on disk after the run", "%s", strings.Join(parts, ", "))
	}
	row("lag growing", "%v", r.LagGrowing)
	row("drain after the window", "%.1f s", r.Consistency.DrainSeconds)

	fmt.Fprintf(&b, "\n| stage | input records/s | lag at start | lag at end | max lag |\n|---|---|---|---|---|\n")
	for _, s := range r.Stages {
		fmt.Fprintf(&b, "| %s | %.0f | %d | %d | %d |\n", s.Group, s.RecordsPerSecond, s.LagStart, s.LagEnd, s.LagMax)
	}
	if bl := r.Baselines; bl != nil {
		fmt.Fprintf(&b, "\n| baseline (same data) | records/s | messages/s | CPU s per 10k messages | pipeline as a fraction |\n|---|---|---|---|---|\n")
		for _, x := range []struct {
			name, key string
			v         Baseline
		}{
			{"sarama consumer group, raw topic, consume only", "pipeline_to_sarama_consumer", bl.SaramaConsumer},
			{"goka processor doing nothing, raw topic", "pipeline_to_goka_noop", bl.GokaNoop},
			{"decoder floor (snappy + CRCs + frames, one core)", "pipeline_to_decode_floor", bl.DecodeFloor},
			{"plain goka pipeline, one record per message (decode, device-state table), draining the raw topic", "pipeline_to_goka_peer", bl.GokaPeer},
		} {
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.4f | %.3f |\n", x.name, x.v.RecordsPerSecond, x.v.MessagesPerSecond, x.v.CPUSecondsPer10kMessages, r.Ratios[x.key])
		}
	}
	if rc := r.Recovery; rc != nil {
		fmt.Fprintf(&b, "\nRestart after the run: ready in %.1f s on the local tables, %.1f s rebuilding them from the table topics (rebalance included).\n", rc.WarmSeconds, rc.ColdSeconds)
	}
	c := &r.Consistency
	fmt.Fprintf(&b, "\nConsistency: sent %d packages (%d messages); %d of %d tracked packages reached the view and %d the store; the view counts %d of %d expected (stored+duplicate+invalid) and %d stored messages; the store acknowledged %d of %d expected rows; %d retries after 429/503, %d resends after failed connections.\n",
		r.Sending.Packages, r.Sending.Messages, c.PackagesInView, c.PackagesTracked, c.PackagesStored, c.ViewProgress, c.ExpectedViewProgress, c.ViewMessages, c.StoredRows, c.ExpectedStored, r.Sending.Retries, r.Sending.Resends)
	if len(c.Problems) == 0 {
		fmt.Fprintf(&b, "No problems.\n")
	}
	for _, p := range c.Problems {
		fmt.Fprintf(&b, "- problem: %s\n", p)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	return nil
}
