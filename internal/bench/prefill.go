package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/util"
	"golang.org/x/sync/errgroup"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/topology/tablestore"
)

// A prefill writes, before the run, what the dedupe and device-state
// stages would hold had the fleet sent History of traffic before the
// workload's first message: each device one message a second, in packages
// of the workload's average size, every message valid and new. The values
// come from processors.History, which runs the stages' own code on the
// decoded packages; they go straight into the tables' topics and the
// groups' local stores (with the stored table offset at the topic's end,
// so the groups start without recovering them, and compacted, as a day of
// writes would have left them), not through the pipeline.
//
// The history's packages carry raw offsets from historyOffsetBase on, far
// beyond any the run's raw topic reaches, so no package of the run is
// taken for a replay of a history package (the stages compare identities'
// offsets for equality only).
const historyOffsetBase = int64(1) << 40

// PrefillStats describes what a prefill wrote.
type PrefillStats struct {
	// HistorySeconds is the length of each device's history.
	HistorySeconds float64 `json:"history_seconds"`
	// Devices got a history (Scale of the workload's devices).
	Devices int     `json:"devices"`
	Scale   float64 `json:"scale"`
	// Messages are the history's messages over all devices, Packages its
	// packages.
	Messages uint64 `json:"messages"`
	Packages uint64 `json:"packages"`
	// Tables are the values written per table.
	Tables  []PrefillTable `json:"tables"`
	Seconds float64        `json:"seconds"`
}

// PrefillTable is what a prefill wrote into one table.
type PrefillTable struct {
	Table string `json:"table"`
	Keys  uint64 `json:"keys"`
	Bytes uint64 `json:"value_bytes"`
}

// prefillTarget is one table the prefill writes: its topic, its group's
// local stores, and what went in.
type prefillTarget struct {
	topic string
	dir   string // the group's table folder
	parts int32

	mu     sync.Mutex
	stores map[int32]*tablestore.Storage
	last   map[int32]int64 // newest acknowledged offset per partition
	stats  PrefillTable
}

func (t *prefillTarget) store(part int32) (*tablestore.Storage, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.stores[part]; st != nil {
		return st, nil
	}
	st, err := tablestore.Open(filepath.Join(t.dir, fmt.Sprintf("%s.%d", t.topic, part)), tablestore.Options{CacheBytes: -1})
	if err != nil {
		return nil, fmt.Errorf("bench: prefill: %w", err)
	}
	t.stores[part] = st
	return st, nil
}

// prefill fills p's dedupe and device-state tables with history of the
// first scale of devices; stateDir is the runner's DataDir. It returns
// what it wrote and each device's state (for the run's counts).
func prefill(ctx context.Context, k topology.Kafka, p *assembly.Assembly, stateDir string, w *workload, history time.Duration, scale float64, perPackage int) (*PrefillStats, map[uint64]records.DeviceState, error) {
	start := time.Now()
	if scale <= 0 || scale > 1 {
		scale = 1
	}
	devices := w.devices[:int(math.Ceil(scale*float64(len(w.devices))))]
	stats := &PrefillStats{HistorySeconds: history.Seconds(), Devices: len(devices), Scale: scale}
	target := func(name string, parts int32) *prefillTarget {
		group := strings.TrimSuffix(name, "-table") // a group table is "<group>-table"
		return &prefillTarget{topic: name, dir: filepath.Join(stateDir, "tables", group), parts: parts,
			stores: map[int32]*tablestore.Storage{}, last: map[int32]int64{}, stats: PrefillTable{Table: name}}
	}
	dedupe := target(p.Dedupe.Name(), p.Dedupe.Partitions())
	state := target(p.DeviceState.Name(), p.DeviceState.Partitions())
	targets := []*prefillTarget{dedupe, state}

	cfg := kafkaclient.ProducerConfig(k)
	cfg.Producer.Flush.Frequency = 20 * time.Millisecond
	cfg.Producer.Flush.Bytes = 1 << 20
	prod, err := sarama.NewAsyncProducer(k.Brokers, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: prefill producer: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return drainProducer(prod, "prefill", func(m *sarama.ProducerMessage) {
			t := m.Metadata.(*prefillTarget)
			t.mu.Lock()
			t.last[m.Partition] = max(t.last[m.Partition], m.Offset)
			t.mu.Unlock()
		})
	})
	write := func(t *prefillTarget, key string, value []byte) error {
		part := topology.Partition([]byte(key), t.parts)
		st, err := t.store(part)
		if err != nil {
			return err
		}
		if err := st.Set(key, value); err != nil {
			return fmt.Errorf("bench: prefill: %w", err)
		}
		t.stats.Keys++
		t.stats.Bytes += uint64(len(value))
		select {
		case prod.Input() <- &sarama.ProducerMessage{Topic: t.topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value), Metadata: t}:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}

	end := w.first.Add(-time.Second)
	from := end.Add(-history)
	perPackage = max(perPackage, 1)
	gen := newHistoryGen(p.Dedupe.Partitions()) // every pipeline topic has the same partitions
	states := make(map[uint64]records.DeviceState, len(devices))
	var werr error
	for i, d := range devices {
		h := p.NewHistory(d)
		// Devices send out of step: each starts at its own second.
		t0 := from.Add(time.Duration(i%perPackage) * time.Second)
		for seq := int64(0); ; seq++ {
			base := t0.Add(time.Duration(seq*int64(perPackage)) * time.Second)
			if !base.Before(end) {
				break
			}
			n := min(perPackage, int(end.Sub(base)/time.Second)+1)
			b, err := gen.batch(d, uint32(seq), base, n, historyOffsetBase+seq*int64(len(devices))+int64(i))
			if err != nil {
				werr = err
				break
			}
			h.Add(b)
			stats.Packages++
			stats.Messages += uint64(n)
		}
		if werr != nil {
			break
		}
		h.Dedupe(func(key string, e records.DedupeEntry) {
			if werr != nil {
				return
			}
			v, err := records.DedupeEntryCodec{}.Encode(e)
			if err == nil {
				err = write(dedupe, key, v)
			}
			werr = err
		})
		if st, ok := h.DeviceState(); ok && werr == nil {
			states[d] = st
			v, err := records.DeviceStateCodec{}.Encode(st)
			if err == nil {
				err = write(state, strconv.FormatUint(d, 10), v)
			}
			werr = err
		}
		if werr != nil {
			break
		}
	}
	prod.AsyncClose()
	if err := g.Wait(); werr == nil {
		werr = err
	}
	// Each local store's offset is its partition's newest record, so the
	// group starts reading the table topic after it.
	for _, t := range targets {
		for part, st := range t.stores {
			if off, ok := t.last[part]; ok && werr == nil {
				if err := st.SetOffset(off); err != nil {
					werr = fmt.Errorf("bench: prefill: %w", err)
				}
			}
			if err := st.Close(); err != nil && werr == nil {
				werr = fmt.Errorf("bench: prefill: %w", err)
			}
			if werr == nil {
				werr = compactStore(filepath.Join(t.dir, fmt.Sprintf("%s.%d", t.topic, part)))
			}
		}
		stats.Tables = append(stats.Tables, t.stats)
	}
	if werr != nil {
		return nil, nil, werr
	}
	stats.Seconds = time.Since(start).Seconds()
	return stats, states, nil
}

// compactStore compacts the leveldb in path whole. A table a day of
// traffic built has been compacted all along; a prefill writes it in
// minutes, and without this the run would pay for compacting the pile.
func compactStore(path string) error {
	db, err := leveldb.OpenFile(path, nil)
	if err != nil {
		return fmt.Errorf("bench: prefill: %w", err)
	}
	err = db.CompactRange(util.Range{})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: prefill: compact %s: %w", path, err)
	}
	return nil
}

// historyGen makes a device's history packages: valid messages of every
// type one second apart, encoded and decoded as the edge and the decode
// stage would, so their content CRCs are the real ones.
type historyGen struct {
	parts int32
	enc   protocol.Encoder
	dec   protocol.Decoder
	pkg   protocol.Package
	msgs  []protocol.Message
	buf   []byte
}

func newHistoryGen(rawParts int32) *historyGen { return &historyGen{parts: rawParts} }

// batch returns device's package seq of n messages from base on, as the
// decode stage hands it on for the raw record at rawOffset.
func (g *historyGen) batch(device uint64, seq uint32, base time.Time, n int, rawOffset int64) (records.Batch, error) {
	g.msgs = g.msgs[:0]
	at := uint64(base.UnixMilli())
	for j := range n {
		g.msgs = append(g.msgs, historyMessage(device, at+uint64(j)*1000))
	}
	h := protocol.Header{Version: 2, Flags: protocol.FlagSnappy, DeviceID: device, PackageSeq: seq, BaseTimeMs: at, Firmware: 0x0102}
	var err error
	g.buf, err = g.enc.Append(g.buf[:0], h, g.msgs)
	if err != nil {
		return records.Batch{}, fmt.Errorf("bench: history package: %w", err)
	}
	if err := g.dec.Decode(g.buf, &g.pkg); err != nil {
		return records.Batch{}, fmt.Errorf("bench: history package: %w", err)
	}
	received := base.Add(time.Duration(n) * time.Second).UnixMilli()
	b := records.NewBatch(&g.pkg, received)
	b.Messages = slices.Clone(g.pkg.Messages)
	key := strconv.FormatUint(device, 10)
	b.RawPartition, b.RawOffset = topology.Partition([]byte(key), g.parts), rawOffset
	return b, nil
}

// historyMessage is device's message at atMs: mostly GPS and
// accelerometer fixes, with engine, battery and event readings among them,
// every value in range.
func historyMessage(device, atMs uint64) protocol.Message {
	s := atMs / 1000
	v := int32((s + device) % 1000)
	switch s % 8 {
	case 0, 2, 4:
		return protocol.Message{Type: protocol.TypeGPS, TimeMs: atMs, LatE7: 480_000_000 + v*100, LonE7: 110_000_000 + v*70,
			SpeedDkmh: uint16(v % 900), HeadingDeg: uint16(v % 360), HdopD: 9, Satellites: 8}
	case 1, 3, 5:
		return protocol.Message{Type: protocol.TypeAccel, TimeMs: atMs, XMg: int16(v%200 - 100), YMg: int16(v % 50), ZMg: 1000}
	case 6:
		return protocol.Message{Type: protocol.TypeEngine, TimeMs: atMs, RPM: uint16(800 + v), CoolantRaw: uint8(120 + v%20), FuelPct: uint8(v % 100)}
	default:
		if s%16 == 7 {
			return protocol.Message{Type: protocol.TypeEvent, TimeMs: atMs, Code: 1, Severity: 1}
		}
		return protocol.Message{Type: protocol.TypeBattery, TimeMs: atMs, Millivolts: uint16(12_000 + v)}
	}
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	return n
}

// PrefillReport compares runs from an empty start with runs from a
// prefilled one (Options.Prefill), alternated.
type PrefillReport struct {
	Runs []PrefillRun `json:"runs"`
}

// PrefillRun is one run of a comparison.
type PrefillRun struct {
	Round     int     `json:"round"`
	Prefilled bool    `json:"prefilled"`
	Report    *Report `json:"report"`
}

// ComparePrefill runs the workload of opts rounds times from an empty
// start and from a start prefilled with opts.Prefill of history, in turn
// (empty first, then prefilled; the order flips every round), each in its
// own folder under opts.DataDir and on its own broker (the embedded one)
// or topics. opts.CPUProfile and MemProfile are of the first prefilled
// run.
func ComparePrefill(ctx context.Context, opts Options, rounds int) (*PrefillReport, error) {
	if opts.Prefill <= 0 {
		return nil, errors.New("bench: no prefill to compare with")
	}
	if opts.DataDir == "" {
		return nil, errors.New("bench: no data folder")
	}
	rep := &PrefillReport{}
	for round := 1; round <= max(rounds, 1); round++ {
		order := []bool{false, true}
		if round%2 == 0 {
			order = []bool{true, false}
		}
		for _, prefilled := range order {
			o := opts
			o.DataDir = filepath.Join(opts.DataDir, fmt.Sprintf("prefill-%d-%v", round, prefilled))
			if !prefilled {
				o.Prefill = 0
			}
			if round > 1 || !prefilled {
				o.CPUProfile, o.MemProfile = nil, nil // the first prefilled run's only
			}
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "bench: round %d, prefilled %v\n", round, prefilled)
			}
			r, err := Run(ctx, o)
			if rerr := os.RemoveAll(o.DataDir); err == nil && rerr != nil {
				err = fmt.Errorf("bench: %w", rerr)
			}
			if err != nil {
				return nil, err
			}
			rep.Runs = append(rep.Runs, PrefillRun{Round: round, Prefilled: prefilled, Report: r})
		}
	}
	return rep, nil
}

// Markdown writes each run's report, then the comparison.
func (r *PrefillReport) Markdown(w io.Writer) error {
	for _, run := range r.Runs {
		start := "empty start"
		if run.Prefilled {
			start = "prefilled start"
		}
		if _, err := fmt.Fprintf(w, "<!-- round %d, %s -->\n", run.Round, start); err != nil {
			return err
		}
		if err := run.Report.Markdown(w); err != nil {
			return err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Empty start against prefilled start\n\n")
	fmt.Fprintf(&b, "| round | start | load avg | msgs/s in the view | send→view p99 ms | send→store p99 ms | CPU s / 10k msgs | RSS window start → end MB | live heap start → end MB | local tables on disk MB | lag growing | problems |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, run := range r.Runs {
		rp := run.Report
		start := "empty"
		if run.Prefilled {
			start = "prefilled"
		}
		var disk int64
		for _, n := range rp.TablesDiskBytes {
			disk += n
		}
		fmt.Fprintf(&b, "| %d | %s | %.2f-%.2f | %.0f | %.0f | %.0f | %.3f | %d → %d | %d → %d | %d | %v | %d |\n", run.Round, start,
			rp.Machine.LoadStart, rp.Machine.LoadEnd, rp.MessagesPerSecond, rp.P99SendToViewMs, rp.P99SendToStoreMs, rp.CPUSecondsPer10kMessages,
			rp.Memory.WindowStartBytes>>20, rp.Memory.WindowEndBytes>>20, rp.Memory.LiveHeapWindowStartBytes>>20, rp.Memory.LiveHeapWindowEndBytes>>20,
			disk>>20, rp.LagGrowing, len(rp.Consistency.Problems))
	}
	for i := 0; i+1 < len(r.Runs); i += 2 {
		e, p := r.Runs[i].Report, r.Runs[i+1].Report
		if r.Runs[i].Prefilled {
			e, p = p, e
		}
		if e.MessagesPerSecond > 0 && e.P99SendToViewMs > 0 {
			fmt.Fprintf(&b, "\nRound %d, prefilled / empty: throughput %.2f, send→view p99 %.2f, CPU per message %.2f.\n", r.Runs[i].Round,
				p.MessagesPerSecond/e.MessagesPerSecond, p.P99SendToViewMs/e.P99SendToViewMs, p.CPUSecondsPer10kMessages/max(e.CPUSecondsPer10kMessages, 1e-12))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
