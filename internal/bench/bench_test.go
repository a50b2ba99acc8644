package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/simulator"
)

// TestRunBrief runs the benchmark for a few seconds at a modest rate with
// faults, so that it cannot rot, and checks that the report is complete
// and consistent. Nothing about timing is asserted.
func TestRunBrief(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline for a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		Devices: 300, Rate: 3000, Duration: 3 * time.Second, Warmup: time.Second,
		Workers: 16, Partitions: 4, Faults: simulator.DefaultFaultMix(), FaultsName: "default",
		Seed: 7, DataDir: t.TempDir(), DrainTimeout: time.Minute, SampleEvery: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Consistency
	if len(c.Problems) > 0 {
		t.Errorf("problems: %q", c.Problems)
	}
	if rep.Sending.Packages == 0 || rep.Sending.Messages == 0 {
		t.Fatalf("nothing sent: %+v", rep.Sending)
	}
	// Packages sent again after a 503 may count twice, as duplicates.
	if c.ViewProgress < c.ExpectedViewProgress || c.ViewProgress > c.ExpectedViewProgress+c.PossibleDuplicates || c.MessagesInView != c.ExpectedViewProgress {
		t.Errorf("view counted %d (tracker %d) of %d messages sent (up to %d resent)", c.ViewProgress, c.MessagesInView, c.ExpectedViewProgress, c.PossibleDuplicates)
	}
	if c.StoredRows != c.ExpectedStored || c.ViewMessages != c.ExpectedStored {
		t.Errorf("stored %d rows, view %d stored messages, want %d", c.StoredRows, c.ViewMessages, c.ExpectedStored)
	}
	if c.PackagesInView != c.PackagesTracked || c.PackagesTracked == 0 {
		t.Errorf("%d of %d tracked packages reached the view", c.PackagesInView, c.PackagesTracked)
	}
	if rep.ViewSamples == 0 || rep.StoreSamples == 0 {
		t.Errorf("no latency samples: view %d, store %d", rep.ViewSamples, rep.StoreSamples)
	}
	for _, p := range [][4]float64{
		{rep.P50SendToViewMs, rep.P95SendToViewMs, rep.P99SendToViewMs, rep.MaxSendToViewMs},
		{rep.P50SendToStoreMs, rep.P95SendToStoreMs, rep.P99SendToStoreMs, rep.MaxSendToStoreMs},
	} {
		if !(p[0] <= p[1] && p[1] <= p[2] && p[2] <= p[3]) {
			t.Errorf("percentiles out of order: %v", p)
		}
	}
	groups := map[string]bool{}
	for _, s := range rep.Stages {
		groups[s.Group] = true
	}
	for _, g := range []string{"decode", "dedupe", "device-state", "alerts", "sink"} {
		if !groups[g] {
			t.Errorf("no figures of stage %s: %+v", g, rep.Stages)
		}
	}
	if rep.Baselines == nil || rep.Baselines.SaramaConsumer.Records == 0 || rep.Baselines.GokaNoop.Records == 0 || rep.Baselines.DecodeFloor.Records == 0 || rep.Baselines.GokaPeer.Records == 0 {
		t.Errorf("baselines incomplete: %+v", rep.Baselines)
	}
	if len(rep.Ratios) < 5 {
		t.Errorf("ratios incomplete: %v", rep.Ratios)
	}

	// On the embedded broker the run uses, and says it uses, its batching.
	if wl := rep.Workload; wl.FetchMinBytes != embedded.FetchMinBytes || wl.FetchMaxWait != embedded.FetchMaxWait.String() || wl.FlushInterval != embedded.FlushInterval.String() {
		t.Errorf("batching in the report: fetch min %d, max wait %s, flush %s", wl.FetchMinBytes, wl.FetchMaxWait, wl.FlushInterval)
	}
	var md, js bytes.Buffer
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"messages/s end to end", "send to view p50", "| decode |", "decoder floor", "plain goka pipeline", "No problems.", "flush 20ms, fetch min 65536 bytes / max wait 10ms"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown report lacks %q:\n%s", want, md.String())
		}
	}
	if err := rep.JSON(&js); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"messages_per_second", "p99_send_to_view_ms", "peak_rss_bytes", "cpu_seconds_per_10k_messages", "stages", "baselines"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	if v, _ := m["messages_per_second"].(float64); v <= 0 {
		t.Errorf("messages_per_second %v", m["messages_per_second"])
	}
	if v, _ := m["peak_rss_bytes"].(float64); v <= 0 {
		t.Errorf("peak_rss_bytes %v", m["peak_rss_bytes"])
	}
	checkNumbers(t, "report", reflect.ValueOf(*rep))
}

// checkNumbers fails on any negative or NaN number in v.
func checkNumbers(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			t.Errorf("%s = %v", path, f)
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		if v.Int() < 0 {
			t.Errorf("%s = %d", path, v.Int())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				checkNumbers(t, path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			checkNumbers(t, path, v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			checkNumbers(t, path+"["+k.String()+"]", v.MapIndex(k))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			checkNumbers(t, path, v.Elem())
		}
	}
}

func TestPercentiles(t *testing.T) {
	p50, p95, p99, mx := percentiles([]float32{5, 1, 4, 2, 3})
	if p50 != 3 || p95 != 5 || p99 != 5 || mx != 5 {
		t.Errorf("percentiles = %v %v %v %v", p50, p95, p99, mx)
	}
	if a, b, c, d := percentiles(nil); a != 0 || b != 0 || c != 0 || d != 0 {
		t.Error("percentiles of nothing are not 0")
	}
}

func TestStateProgress(t *testing.T) {
	if _, _, ok := stateProgress(nil); ok {
		t.Error("empty value accepted")
	}
	b, err := records.DeviceStateCodec{}.Encode(records.DeviceState{DeviceID: 1 << 63, Messages: 300, Duplicates: 2, Invalid: 1, PackagesRejected: 9, LastSeenMs: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	dev, prog, ok := stateProgress(b)
	if !ok || dev != 1<<63 || prog != 303 {
		t.Errorf("stateProgress = %d %d %v", dev, prog, ok)
	}
}

// TestCatchUpBrief fills a small raw topic and drains it unfused and fused,
// checking that every group drained what it should and that the store and
// the device-state table agree with the workload. Nothing about timing is
// asserted.
func TestCatchUpBrief(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every group of the pipeline twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := CatchUp(ctx, Options{
		Devices: 300, Partitions: 4, Faults: simulator.DefaultFaultMix(), FaultsName: "default",
		Seed: 7, DataDir: t.TempDir(),
	}, CatchUpOptions{Messages: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Packages == 0 || rep.Messages == 0 {
		t.Fatalf("empty raw topic: %+v", rep)
	}
	var report strings.Builder
	if err := rep.Markdown(&report); err != nil {
		t.Fatal(err)
	}
	if rep.FleetRate != 40_000 || !strings.Contains(report.String(), "sent at 40000 messages/s") {
		t.Errorf("fleet rate %v not reported as the default 40000", rep.FleetRate)
	}
	want := map[string][]string{
		"none":          {"decode", "dedupe", "device-state", "alerts", "summaries", "sink", "sink-retry"},
		"decode,alerts": {"dedupe", "device-state", "summaries", "sink", "sink-retry"},
	}
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(rep.Runs))
	}
	for _, run := range rep.Runs {
		if len(run.Problems) > 0 {
			t.Errorf("fuse %s: problems %q", run.Fuse, run.Problems)
		}
		var names []string
		var sum float64
		for _, g := range run.Groups {
			names = append(names, g.Group)
			sum += g.CPUSecondsPer10kMessages
			if g.CPUSeconds <= 0 {
				t.Errorf("fuse %s, group %s: CPU %v", run.Fuse, g.Group, g.CPUSeconds)
			}
		}
		if !reflect.DeepEqual(names, want[run.Fuse]) {
			t.Errorf("fuse %s: groups %v, want %v", run.Fuse, names, want[run.Fuse])
		}
		if math.Abs(sum-run.CPUSecondsPer10kMessages) > 1e-9 || run.CPUSecondsPer10kMessages <= 0 {
			t.Errorf("fuse %s: total %v, groups sum to %v", run.Fuse, run.CPUSecondsPer10kMessages, sum)
		}
		// The first group reads every raw record; dedupe reads its input
		// and its loop's records, so at least as many.
		first := run.Groups[0]
		if first.Records < rep.Packages || run.Fuse == "none" && first.Records != rep.Packages {
			t.Errorf("fuse %s: %s drained %d records, the raw topic holds %d", run.Fuse, first.Group, first.Records, rep.Packages)
		}
	}
	var md bytes.Buffer
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if len(rep.Peers) != 1 || rep.Peers[0].Records != rep.Packages || rep.Peers[0].CPUSecondsPer10kMessages <= 0 {
		t.Errorf("goka peer: %+v, want one drain of %d packages", rep.Peers, rep.Packages)
	}
	for _, want := range []string{"| 1 | none | decode |", "**total**", "plain goka peer", "no problems"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	checkNumbers(t, "report", reflect.ValueOf(*rep))
}

// A catch-up whose fleet sends at no positive rate is refused before
// anything is generated.
func TestCatchUpRefusesABadFleetRate(t *testing.T) {
	for _, rate := range []float64{-1, math.NaN(), math.Inf(1)} {
		_, err := CatchUp(context.Background(), Options{DataDir: t.TempDir()}, CatchUpOptions{FleetRate: rate})
		if err == nil || !strings.Contains(err.Error(), "fleet rate") {
			t.Errorf("fleet rate %v: error %v, want the rate refused", rate, err)
		}
	}
}
