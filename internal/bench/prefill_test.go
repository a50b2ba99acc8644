package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/edge"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// TestPrefillIsWhereThePipelineContinues prefills half an hour of two
// devices' history, starts the groups on it and sends one package of the
// first device: a copy of its first history message and a new one. The
// view shows the prefilled state before, and after the package the
// prefilled counts plus one stored message and one duplicate: the
// prefilled identity was found (the duplicate dropped) and device state
// continued from the prefilled value. The groups found their local tables
// at the table topics' ends (nothing to recover).
func TestPrefillIsWhereThePipelineContinues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	broker, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	k := topology.Kafka{Brokers: broker.Addrs(), ClientID: "prefill-test"}
	opts := Options{Partitions: 4}
	opts.defaults()
	p, err := declare(opts, "", 0, opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Topology.EnsureTopics(k, topology.TopicOptions{}); err != nil {
		t.Fatal(err)
	}
	const history = 30 * time.Minute
	devices := []uint64{1001, 1002}
	w := &workload{devices: devices, first: time.Now().Add(-time.Minute)}
	stateDir := filepath.Join(t.TempDir(), "state")
	stats, states, err := prefill(ctx, k, p, stateDir, w, history, 1, 25)
	if err != nil {
		t.Fatal(err)
	}
	base, ok := states[devices[0]]
	if !ok || base.Messages != 1800 || stats.Messages != 3600 || base.Duplicates != 0 {
		t.Fatalf("prefilled %+v; device state %v (%d messages)", stats, ok, base.Messages)
	}
	// The index and 3 or 4 buckets of 10 minutes per device.
	if stats.Tables[0].Keys < 2*4 || stats.Tables[0].Keys > 2*5 || stats.Tables[1].Keys != 2 {
		t.Errorf("tables written: %+v", stats.Tables)
	}

	for _, tb := range []string{p.Dedupe.Name(), p.DeviceState.Name()} {
		for part := range opts.Partitions {
			if lag := tableLag(t, k, stateDir, tb, part); lag != 0 {
				t.Errorf("%s/%d: the local table is %d records behind its topic", tb, part, lag)
			}
		}
	}

	r, err := topology.NewRunner(p.Plan, topology.RunnerOptions{Kafka: k, DataDir: stateDir, SkipTopicCreation: true,
		Groups: []string{"decode", "dedupe", "device-state"}})
	if err != nil {
		t.Fatal(err)
	}
	view, err := topology.NewView(p.DeviceState, topology.ViewOptions{Kafka: k, DataDir: filepath.Join(t.TempDir(), "view")})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 2)
	go func() { errc <- r.Run(rctx) }()
	go func() { errc <- view.Run(rctx) }()
	defer func() {
		stop()
		for range 2 {
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
				t.Error(err)
			}
		}
	}()
	if err := waitUntil(ctx, time.Minute, func() error {
		if !view.Recovered() {
			return errors.New("view recovering")
		}
		return r.Ready()
	}); err != nil {
		t.Fatal(err)
	}
	key := strconv.FormatUint(devices[0], 10)
	if st, ok, err := view.Get(key); err != nil || !ok || !sameState(st, base) {
		t.Fatalf("view before the package: %+v, %v, %v; prefilled %+v", st, ok, err, base)
	}

	// Device 1001's first history message (device index 0 starts at the
	// history's first second) and a new one.
	first := w.first.Add(-time.Second).Add(-history).UnixMilli()
	old := historyMessage(devices[0], uint64(first))
	fresh := historyMessage(devices[0], uint64(w.first.UnixMilli()))
	pkg, err := protocol.Encode(protocol.Header{Version: 2, Flags: protocol.FlagSnappy, DeviceID: devices[0], PackageSeq: 99,
		BaseTimeMs: uint64(first), Firmware: 0x0102}, []protocol.Message{old, fresh})
	if err != nil {
		t.Fatal(err)
	}
	prod, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: p.Raw.Name(), Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(pkg),
		Headers: []sarama.RecordHeader{{Key: []byte(edge.HeaderReceivedMs), Value: strconv.AppendInt(nil, time.Now().UnixMilli(), 10)}}}); err != nil {
		t.Fatal(err)
	}
	var st records.DeviceState
	err = waitUntil(ctx, time.Minute, func() error {
		st, _, err = view.Get(key)
		if err != nil {
			return err
		}
		if st.Messages+st.Duplicates < base.Messages+2 {
			return errors.New("package not applied yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != base.Messages+1 || st.Duplicates != 1 || st.LastSeenMs != fresh.TimeMs {
		t.Errorf("after the package: %d messages, %d duplicates, last seen %d; want %d, 1 and %d", st.Messages, st.Duplicates, st.LastSeenMs, base.Messages+1, fresh.TimeMs)
	}
}

// tableLag is how far a prefilled local store of a table partition is
// behind its topic's newest record (0 for a partition with no records).
func tableLag(t *testing.T, k topology.Kafka, stateDir, table string, part int32) int64 {
	t.Helper()
	client, err := sarama.NewClient(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	end, err := client.GetOffset(table, part, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	if end == 0 {
		return 0
	}
	st, err := tablestore.Open(filepath.Join(stateDir, "tables", strings.TrimSuffix(table, "-table"), fmt.Sprintf("%s.%d", table, part)), tablestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	off, err := st.GetOffset(-1)
	if err != nil {
		t.Fatal(err)
	}
	return end - 1 - off
}

func sameState(a, b records.DeviceState) bool {
	x, err1 := records.DeviceStateCodec{}.Encode(a)
	y, err2 := records.DeviceStateCodec{}.Encode(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// TestComparePrefillBrief runs a tiny comparison (the CI-sized --prefill):
// both runs end consistent (the view's counts, less the prefilled ones,
// are what the run sent), the prefilled one reports what it wrote and the
// tables' disk, and the comparison names both starts. Nothing about timing
// is asserted.
func TestComparePrefillBrief(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline twice for a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := ComparePrefill(ctx, Options{
		Devices: 300, Rate: 3000, Duration: 2 * time.Second, Warmup: time.Second,
		Workers: 16, Partitions: 4, Seed: 3, DataDir: t.TempDir(), DrainTimeout: time.Minute, SampleEvery: time.Second,
		NoBaselines: true, Prefill: time.Hour, PrefillScale: 0.5,
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Prefilled || !rep.Runs[1].Prefilled {
		t.Fatalf("runs: %+v", rep.Runs)
	}
	for _, run := range rep.Runs {
		c := run.Report.Consistency
		if len(c.Problems) > 0 || c.PackagesTracked == 0 || c.PackagesInView != c.PackagesTracked {
			t.Errorf("prefilled %v: %d of %d packages in the view; problems %q", run.Prefilled, c.PackagesInView, c.PackagesTracked, c.Problems)
		}
	}
	pf := rep.Runs[1].Report.Prefill
	if pf == nil || pf.Devices == 0 || pf.Messages > uint64(pf.Devices)*3600 || pf.Messages < uint64(pf.Devices)*(3600-25) || len(pf.Tables) != 2 || pf.Tables[0].Bytes == 0 {
		t.Errorf("prefill stats: %+v", pf)
	}
	if rep.Runs[0].Report.Prefill != nil {
		t.Error("the empty start was prefilled")
	}
	if d := rep.Runs[1].Report.TablesDiskBytes; d["dedupe"] <= rep.Runs[0].Report.TablesDiskBytes["dedupe"] {
		t.Errorf("dedupe tables on disk: prefilled %d, empty %d bytes", d["dedupe"], rep.Runs[0].Report.TablesDiskBytes["dedupe"])
	}
	var md bytes.Buffer
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| 1 | prefilled |") || !strings.Contains(md.String(), "prefilled / empty") {
		t.Errorf("markdown lacks the comparison:\n%s", md.String())
	}
}
