package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/edge"
)

const dlqUsage = `dlq <list|show|stats|replay> [flags]

  list     one line per dead letter (or --json lines), filtered
  show     one dead letter as JSON with its package decoded (--partition, --offset)
  stats    counts by reason and stage, oldest and newest failure
  replay   write the selected dead letters back to their topics, once
           (a dry run unless --dry-run=false)

Run 'watershed dlq <subcommand> -h' for its flags. See docs/dead-letters.md.`

// runDLQ implements `watershed dlq list|show|stats|replay`: it reads, counts
// and replays the dead-letter topic. It exits 0 when done, 1 on a failure
// (Kafka, a missing record, a failed replay) and 2 on a usage error.
func runDLQ(ctx context.Context, reg *assembly.Registry, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: watershed %s\n", dlqUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, "usage: watershed %s\n", dlqUsage)
		return 0
	case "list":
		return dlqList(ctx, reg, args[1:], stdout, stderr)
	case "show":
		return dlqShow(ctx, reg, args[1:], stdout, stderr)
	case "stats":
		return dlqStats(ctx, reg, args[1:], stdout, stderr)
	case "replay":
		return dlqReplay(ctx, reg, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "watershed dlq: unknown subcommand %q\n\nusage: watershed %s\n", args[0], dlqUsage)
	return 2
}

// dlqFlags are the flags every dlq subcommand shares: where the topic is
// and, for all but show, which dead letters to select.
type dlqFlags struct {
	kafka    kafkaFlags
	settings settingsFlags
	topic    string
	json     bool
	// pipeline is the declared assembly, once the flags are parsed.
	pipeline *assembly.Assembly

	stage, reason, device string
	since, until          string
	timeField             string
	source                string
	sourcePartition       *int32
	sourceOffset          *int64
	limit                 int
}

func (f *dlqFlags) register(fs *flag.FlagSet, reg *assembly.Registry, filters bool) {
	f.kafka.register(fs)
	f.settings.register(fs, reg)
	fs.StringVar(&f.topic, "topic", "", "the dead-letter topic (default the pipeline's, with the prefix)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	if !filters {
		return
	}
	fs.StringVar(&f.stage, "stage", "", "only this stage: a processor group (with or without the prefix) or edge")
	fs.StringVar(&f.reason, "reason", "", "only this reason (header_crc, out_of_range, sink_refused, ...)")
	fs.StringVar(&f.device, "device", "", "only this device id (the record key)")
	fs.StringVar(&f.since, "since", "", "only failures at or after this time: RFC 3339, or a duration ago such as 1h")
	fs.StringVar(&f.until, "until", "", "only failures before this time: RFC 3339, or a duration ago such as 30m")
	fs.StringVar(&f.timeField, "time-field", "last-failure", "the time --since and --until apply to: last-failure or timestamp (the original record's)")
	fs.StringVar(&f.source, "source-topic", "", "only dead letters of records from this topic")
	fs.Func("source-partition", "only dead letters of records from this partition (-1: edge rejections)", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return fmt.Errorf("not a partition: %w", err)
		}
		p := int32(n)
		f.sourcePartition = &p
		return nil
	})
	fs.Func("source-offset", "only dead letters of the record at this offset", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("not an offset: %w", err)
		}
		f.sourceOffset = &n
		return nil
	})
	fs.IntVar(&f.limit, "limit", 0, "stop after this many dead letters (0: no limit)")
}

// deadLetterTopic returns --topic or the pipeline's dead-letter topic.
func (f *dlqFlags) deadLetterTopic() string {
	if f.topic != "" {
		return f.topic
	}
	return f.pipeline.Topology.DeadLetterTopic()
}

// filter returns the selection of the flags, with times relative to now.
func (f *dlqFlags) filter(now time.Time) (dlq.Filter, error) {
	var out dlq.Filter
	if f.stage != "" {
		out.Stages = []string{f.stage}
		if prefix := f.pipeline.Config().Prefix; prefix != "" && f.stage != edge.Stage && !strings.HasPrefix(f.stage, prefix) {
			out.Stages = append(out.Stages, prefix+f.stage)
		}
	}
	out.Reason, out.Device, out.Topic = f.reason, f.device, f.source
	out.Partition, out.Offset = f.sourcePartition, f.sourceOffset
	if f.limit < 0 {
		return out, errors.New("--limit must not be negative")
	}
	out.Limit = f.limit
	var err error
	if out.TimeField, err = dlq.ParseTimeField(f.timeField); err != nil {
		return out, err
	}
	if out.Since, err = dlq.ParseWhen(f.since, now); err != nil {
		return out, fmt.Errorf("--since: %w", err)
	}
	if out.Until, err = dlq.ParseWhen(f.until, now); err != nil {
		return out, fmt.Errorf("--until: %w", err)
	}
	return out, nil
}

// dlqSetup parses a subcommand's flags and opens the queue. It returns the
// exit code to stop with, or -1 and the queue (which the caller closes).
func dlqSetup(name, usage string, reg *assembly.Registry, args []string, stderr io.Writer, f *dlqFlags, filters bool, extra func(*flag.FlagSet)) (*dlq.Queue, dlq.Filter, int) {
	fs := newFlagSet("dlq "+name, usage, stderr)
	f.register(fs, reg, filters)
	if extra != nil {
		extra(fs)
	}
	if code := parseFlags(fs, args); code >= 0 {
		return nil, dlq.Filter{}, code
	}
	var err error
	if f.pipeline, err = f.settings.build(nil); err != nil {
		fmt.Fprintf(stderr, "watershed dlq %s: %v\n", name, err)
		return nil, dlq.Filter{}, 2
	}
	var filter dlq.Filter
	if filters {
		var err error
		if filter, err = f.filter(time.Now()); err != nil {
			fmt.Fprintf(stderr, "watershed dlq %s: %v\n", name, err)
			return nil, dlq.Filter{}, 2
		}
	}
	log := newLogger(stderr)
	k, err := f.kafka.kafka(log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed dlq %s: %v\n", name, err)
		return nil, dlq.Filter{}, 2
	}
	q, err := dlq.Open(k, f.deadLetterTopic(), log)
	if err != nil {
		fmt.Fprintf(stderr, "watershed dlq %s: %v\n", name, err)
		return nil, dlq.Filter{}, 1
	}
	return q, filter, -1
}

func dlqList(ctx context.Context, reg *assembly.Registry, args []string, stdout, stderr io.Writer) int {
	var f dlqFlags
	q, filter, code := dlqSetup("list", "dlq list [flags]", reg, args, stderr, &f, true, nil)
	if code >= 0 {
		return code
	}
	defer q.Close()
	enc := json.NewEncoder(stdout)
	st, err := q.Scan(ctx, filter, func(r dlq.Record) error {
		if f.json {
			return enc.Encode(envelopeForm(q.Topic(), &r, false))
		}
		_, err := fmt.Fprintln(stdout, listLine(&r))
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "watershed dlq list: %v\n", err)
		return 1
	}
	if st.Undecodable > 0 {
		fmt.Fprintf(stderr, "watershed dlq list: %d records of %s are not envelopes (skipped)\n", st.Undecodable, q.Topic())
	}
	return 0
}

// listLine is the one-line form of a dead letter: time, stage, reason, key,
// original place, attempts, dead-letter place, first line of the error.
func listLine(r *dlq.Record) string {
	e := &r.Envelope
	errLine, _, _ := strings.Cut(e.Error, "\n")
	return fmt.Sprintf("%s  %s  %s  key=%s  from=%s/%d/%d  attempts=%d  dlq=%s  %s",
		e.LastFailure.UTC().Format(time.RFC3339), e.Stage, e.Reason, dlq.Printable(e.Key),
		e.Topic, e.Partition, e.Offset, e.Attempts, r.Coordinates(), strings.TrimRight(errLine, "\r"))
}

// envelopeJSON is the JSON form of a dead letter.
type envelopeJSON struct {
	DLQTopic     string       `json:"dlq_topic"`
	DLQPartition int32        `json:"dlq_partition"`
	DLQOffset    int64        `json:"dlq_offset"`
	Stage        string       `json:"stage"`
	Reason       string       `json:"reason"`
	Error        string       `json:"error"`
	Topic        string       `json:"topic"`
	Partition    int32        `json:"partition"`
	Offset       int64        `json:"offset"`
	Key          *string      `json:"key"`
	KeyHex       string       `json:"key_hex,omitempty"`
	Headers      []headerJSON `json:"headers"`
	Timestamp    time.Time    `json:"timestamp"`
	Attempts     int          `json:"attempts"`
	FirstFailure time.Time    `json:"first_failure"`
	LastFailure  time.Time    `json:"last_failure"`
	ValueBytes   int          `json:"value_bytes"`
	// Package is the value decoded as a device package, in the test
	// vectors' form (or {"reject": REASON}), when its header is intact.
	Package json.RawMessage `json:"package,omitempty"`
	// PackageHeader holds the header fields of a package that fails
	// checks 3-4 (the edge's rejections): the header is intact.
	PackageHeader map[string]any `json:"package_header,omitempty"`
	// ValueHex is the value in hex when it is not a package (or when
	// asked for).
	ValueHex string `json:"value_hex,omitempty"`
}

type headerJSON struct {
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueHex string  `json:"value_hex,omitempty"`
}

// envelopeForm returns the JSON form of r; with decode the value is
// decoded (or given in hex).
func envelopeForm(topic string, r *dlq.Record, decode bool) envelopeJSON {
	e := &r.Envelope
	out := envelopeJSON{
		DLQTopic: topic, DLQPartition: r.Partition, DLQOffset: r.Offset,
		Stage: e.Stage, Reason: e.Reason, Error: e.Error,
		Topic: e.Topic, Partition: e.Partition, Offset: e.Offset,
		Headers:   []headerJSON{},
		Timestamp: e.Timestamp, Attempts: e.Attempts, FirstFailure: e.FirstFailure, LastFailure: e.LastFailure,
		ValueBytes: len(e.Value),
	}
	if e.Key != nil {
		if utf8.Valid(e.Key) {
			k := string(e.Key)
			out.Key = &k
		} else {
			out.KeyHex = hex.EncodeToString(e.Key)
		}
	}
	for _, h := range e.Headers {
		hj := headerJSON{Key: h.Key}
		switch {
		case h.Value == nil:
		case utf8.Valid(h.Value):
			v := string(h.Value)
			hj.Value = &v
		default:
			hj.ValueHex = hex.EncodeToString(h.Value)
		}
		out.Headers = append(out.Headers, hj)
	}
	if decode {
		decodeValue(&out, e.Value)
	}
	return out
}

// decodeValue fills the package fields of out from a dead letter's value:
// the vectors' form when the value's header passes checks 1-4, the header
// fields when it fails only checks 3-4, and hex otherwise.
func decodeValue(out *envelopeJSON, v []byte) {
	h, err := protocol.CheckHeader(v)
	if err == nil {
		if b, err := protocol.MarshalVectorJSON(protocol.Decode(v)); err == nil {
			out.Package = b
			return
		}
	}
	var pe *protocol.PackageError
	if errors.As(err, &pe) && pe.HeaderTrusted() {
		if b, err := protocol.MarshalVectorJSON(nil, pe); err == nil {
			out.Package = b
		}
		out.PackageHeader = map[string]any{
			"version": h.Version, "flags": h.Flags, "device_id": strconv.FormatUint(h.DeviceID, 10),
			"package_seq": h.PackageSeq, "base_time_ms": h.BaseTimeMs, "message_count": h.MessageCount,
			"body_len": h.BodyLen,
		}
		if h.Version == 2 {
			out.PackageHeader["firmware"] = h.Firmware
		}
	}
	out.ValueHex = hex.EncodeToString(v)
}

func dlqShow(ctx context.Context, reg *assembly.Registry, args []string, stdout, stderr io.Writer) int {
	var f dlqFlags
	partition, offset := int64(-1), int64(-1)
	withHex := false
	q, _, code := dlqSetup("show", "dlq show --partition P --offset O [flags]", reg, args, stderr, &f, false, func(fs *flag.FlagSet) {
		fs.Int64Var(&partition, "partition", -1, "the dead letter's partition in the dead-letter topic (required)")
		fs.Int64Var(&offset, "offset", -1, "the dead letter's offset in the dead-letter topic (required)")
		fs.BoolVar(&withHex, "hex", false, "print the value in hex also when it is a package")
	})
	if code >= 0 {
		return code
	}
	defer q.Close()
	if partition < 0 || partition > 1<<31-1 || offset < 0 {
		fmt.Fprintln(stderr, "watershed dlq show: --partition and --offset of the dead letter are required (as `dlq list` prints them: dlq=P/O)")
		return 2
	}
	r, err := q.Get(ctx, int32(partition), offset)
	if err != nil {
		fmt.Fprintf(stderr, "watershed dlq show: %v\n", err)
		return 1
	}
	form := envelopeForm(q.Topic(), &r, true)
	if withHex && form.ValueHex == "" {
		form.ValueHex = hex.EncodeToString(r.Envelope.Value)
	}
	out, err := json.MarshalIndent(form, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "watershed dlq show: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(append(out, '\n')); err != nil {
		fmt.Fprintf(stderr, "watershed dlq show: write: %v\n", err)
		return 1
	}
	return 0
}

func dlqStats(ctx context.Context, reg *assembly.Registry, args []string, stdout, stderr io.Writer) int {
	var f dlqFlags
	q, filter, code := dlqSetup("stats", "dlq stats [flags]", reg, args, stderr, &f, true, nil)
	if code >= 0 {
		return code
	}
	defer q.Close()
	s, err := q.Stats(ctx, filter)
	if err != nil {
		fmt.Fprintf(stderr, "watershed dlq stats: %v\n", err)
		return 1
	}
	if f.json {
		if err := json.NewEncoder(stdout).Encode(s); err != nil {
			fmt.Fprintf(stderr, "watershed dlq stats: write: %v\n", err)
			return 1
		}
		return 0
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d dead letters", s.Topic, s.Total)
	if s.Undecodable > 0 {
		fmt.Fprintf(&b, " (and %d records that are not envelopes)", s.Undecodable)
	}
	b.WriteString("\n")
	if s.Total > 0 {
		fmt.Fprintf(&b, "failures from %s to %s\n", s.OldestFailure.UTC().Format(time.RFC3339), s.NewestFailure.UTC().Format(time.RFC3339))
	}
	writeCounts(&b, "by reason", s.ByReason)
	writeCounts(&b, "by stage", s.ByStage)
	if len(s.ByStageReason) > 0 {
		b.WriteString("\nby stage and reason:\n")
		for _, c := range s.ByStageReason {
			fmt.Fprintf(&b, "  %-24s %-20s %d\n", c.Stage, c.Reason, c.Count)
		}
	}
	if _, err := io.WriteString(stdout, b.String()); err != nil {
		fmt.Fprintf(stderr, "watershed dlq stats: write: %v\n", err)
		return 1
	}
	return 0
}

// writeCounts writes counts by name, largest first.
func writeCounts(b *strings.Builder, title string, counts map[string]int) {
	if len(counts) == 0 {
		return
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if counts[names[i]] != counts[names[j]] {
			return counts[names[i]] > counts[names[j]]
		}
		return names[i] < names[j]
	})
	fmt.Fprintf(b, "\n%s:\n", title)
	for _, n := range names {
		fmt.Fprintf(b, "  %-24s %d\n", n, counts[n])
	}
}

func dlqReplay(ctx context.Context, reg *assembly.Registry, args []string, stdout, stderr io.Writer) int {
	var f dlqFlags
	opts := dlq.ReplayOptions{DryRun: true}
	q, filter, code := dlqSetup("replay", "dlq replay [--dry-run=false] [flags]", reg, args, stderr, &f, true, func(fs *flag.FlagSet) {
		fs.BoolVar(&opts.DryRun, "dry-run", true, "list what would be replayed and write nothing; --dry-run=false replays")
		fs.BoolVar(&opts.IncludeEdge, "include-edge", false, "also replay the ingest edge's rejections (malformed packages the decode stage rejects again unless the cause was fixed)")
		fs.IntVar(&opts.MaxAttempts, "max-attempts", 0, "refuse dead letters with at least this many attempts (0: no limit)")
	})
	if code >= 0 {
		return code
	}
	defer q.Close()
	// The fusion (--fuse) decides which topics have a consumer: a stage
	// fused away has no input topic, so its dead letters cannot go back.
	dead := q.Topic()
	for _, t := range f.pipeline.Topology.Topics() {
		if t != dead {
			opts.Topics = append(opts.Topics, t)
		}
	}
	rep, err := q.Replay(ctx, filter, opts)
	enc := json.NewEncoder(stdout)
	var writeErr error
	for _, it := range rep.Items {
		e := &it.Record.Envelope
		if f.json {
			writeErr = cmp.Or(writeErr, enc.Encode(it.JSON()))
			continue
		}
		line := fmt.Sprintf("%-16s dlq=%s  %s  %s  key=%s  to=%s", it.Action, it.Record.Coordinates(), e.Stage, e.Reason, dlq.Printable(e.Key), e.Topic)
		if it.Target != "" {
			line += "  at=" + it.Target
		}
		if !it.ReplayedAt.IsZero() && it.Action == dlq.ActionAlreadyReplayed {
			line += "  on " + it.ReplayedAt.UTC().Format(time.RFC3339)
		}
		if it.Detail != "" {
			line += "  (" + it.Detail + ")"
		}
		_, werr := fmt.Fprintln(stdout, line)
		writeErr = cmp.Or(writeErr, werr)
	}
	summary := fmt.Sprintf("%d replayed, %d already replayed, %d refused, %d failed",
		rep.Count(dlq.ActionReplayed), rep.Count(dlq.ActionAlreadyReplayed), rep.Count(dlq.ActionRefused), rep.Count(dlq.ActionFailed))
	if rep.DryRun {
		summary = fmt.Sprintf("dry run: %d would be replayed, %d already replayed, %d refused; nothing written (--dry-run=false replays)",
			rep.Count(dlq.ActionWouldReplay), rep.Count(dlq.ActionAlreadyReplayed), rep.Count(dlq.ActionRefused))
	}
	if f.json {
		fmt.Fprintln(stderr, "watershed dlq replay: "+summary)
	} else {
		fmt.Fprintln(stdout, summary)
	}
	if err != nil {
		fmt.Fprintf(stderr, "watershed dlq replay: %v\n", err)
		return 1
	}
	if writeErr != nil {
		fmt.Fprintf(stderr, "watershed dlq replay: write: %v\n", writeErr)
		return 1
	}
	return 0
}
