// Package processors declares the telemetry pipeline: its topics and the
// processor groups that decode, validate, deduplicate, normalize and fan out
// the devices' packages. The declaration is one topology.Topology, which is
// what `watershed topology` prints and what `watershed run` and `watershed
// demo` run.
//
// Groups and their stages:
//
//   - decode: snappy, frames, CRCs and intra-package duplicates (the codec),
//     then validation (physical limits and clock); bad packages and bad
//     messages go to the dead-letter topic with their reasons.
//   - dedupe: drops messages already seen across packages, with a group table
//     keyed by device and time bucket whose entries expire; normalizes what
//     is new to normal units.
//   - device-state: each device's counters and latest readings, served by the
//     view API; it also counts the dead letters of each device.
//   - alerts: events of severity 3 and up, and engine coolant over 120 C.
//   - summaries: each device's hourly summaries by message time, emitted
//     to telemetry.summaries when a window closes (see declareSummaries).
//   - sink: writes every reading to the store (local or Cassandra), and
//     every hourly summary of telemetry.summaries (see consumeSummaries).
//
// Every topic between groups is keyed by the device id in decimal, so all
// groups are co-partitioned; records carry one package each, not one
// message, which was measured several times faster. Config.Fuse runs
// decode inside dedupe and alerts inside device-state (see Fusion).
package processors

import (
	"log/slog"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/ingest"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// The default names of the pipeline's topics, before the prefix.
const (
	TopicRaw        = ingest.RawTopic
	TopicDecoded    = "telemetry.decoded"
	TopicNormalized = "telemetry.normalized"
	TopicAlerts     = "telemetry.alerts"
	TopicSummaries  = "telemetry.summaries"
	TopicDeadLetter = ingest.DeadLetterTopic
)

// The processor groups, before the prefix.
const (
	GroupDecode      = "decode"
	GroupDedupe      = "dedupe"
	GroupDeviceState = "device-state"
	GroupAlerts      = "alerts"
	GroupSink        = "sink"
)

// KeyDeviceID is what every pipeline topic is keyed by, as the edge keys
// the raw topic.
const KeyDeviceID = ingest.KeyDeviceID

// Config configures the pipeline. The zero value is usable; the sink
// group's store is a resource given to the Runner (see Store).
type Config struct {
	// Prefix is prepended to every topic and group name.
	Prefix string
	// Partitions of every topic (default 8). All topics are co-partitioned.
	Partitions int32
	// DedupeWindow is how long a message identity is remembered (default
	// 24h), counted in message time back from the device's newest bucket.
	DedupeWindow time.Duration
	// DedupeBucket is the span of message time whose identities share one
	// table entry (default 10m).
	DedupeBucket time.Duration
	// FutureSkew is how far after its receive time a message may be
	// (default 5m).
	FutureSkew time.Duration
	// CoolantAlertC raises an alert above this engine coolant temperature
	// (default 120).
	CoolantAlertC float64
	// AlertSeverity raises an alert for events of at least this severity
	// (default 3).
	AlertSeverity float64
	// Silence is how long the edge must have received nothing from a
	// device before it is silent (default DefaultSilence; see
	// NoteReceived and SilenceDue).
	Silence time.Duration
	// ReplayHorizon is how long after a package's receive time (relative
	// to the device's newest) device-state still recognises a copy of its
	// Readings that dedupe writes again when it replays (default
	// DefaultReplayHorizon; at most records.PackagesLimit packages a
	// device are remembered whatever it is).
	ReplayHorizon time.Duration
	// Fuse is the set of stages that run fused into the group after them
	// (default none). Every process of an installation must agree on it.
	Fuse Fusion
	// SinkBatch batches the sink's writes across the records of a
	// partition (zero: topology's defaults, 1000 rows or 5ms). A record
	// still commits only after its rows are written.
	SinkBatch topology.BatchOptions
	// SinkRetry is the sink's policy for writes the store failed
	// (sinks.ErrWriteFailed) while it answers others (zero: topology's
	// defaults). A nil Probe is the store's sinks.Pinger. Outages
	// (sinks.ErrUnavailable) never leave their partition, whatever it says.
	SinkRetry topology.RetryPolicy
	// SinkBackoff is the backoff of the sink's in-place retries (zero:
	// topology.DefaultBackoff).
	SinkBackoff topology.Backoff
	// SinkAudit, when set, logs every record the sink group is handed and
	// every write the store acknowledged (tests count write calls with it).
	SinkAudit *sinks.Audit
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives the stages' logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 24 * time.Hour
	}
	if c.DedupeBucket == 0 {
		c.DedupeBucket = 10 * time.Minute
	}
	if c.FutureSkew == 0 {
		c.FutureSkew = 5 * time.Minute
	}
	if c.CoolantAlertC == 0 {
		c.CoolantAlertC = 120
	}
	if c.AlertSeverity == 0 {
		c.AlertSeverity = 3
	}
	if c.Silence == 0 {
		c.Silence = DefaultSilence
	}
	if c.ReplayHorizon == 0 {
		c.ReplayHorizon = DefaultReplayHorizon
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Pipeline is the declared telemetry topology with handles on its topics
// and tables.
type Pipeline struct {
	Topology    *topology.Topology
	Raw         topology.Stream[[]byte]
	Decoded     topology.Stream[records.Batch] // the zero Stream when decode is fused into dedupe
	Normalized  topology.Stream[records.Readings]
	Alerts      topology.Stream[records.Alert]
	Summaries   topology.Stream[records.Summary]
	DeadLetters topology.Stream[records.Envelope]
	DeviceState topology.Table[records.DeviceState]
	// SummaryWindows are the summaries group's hourly windows (the open
	// one is what the view adds to the stored summaries).
	SummaryWindows topology.Windowed[records.SummaryAcc]
	Dedupe         topology.Table[records.DedupeEntry]

	cfg Config
}

// New declares the pipeline.
func New(cfg Config) *Pipeline {
	cfg.defaults()
	parts := topology.WithPartitions(cfg.Partitions)
	byDevice := topology.KeyedBy(KeyDeviceID)
	t := topology.New("telemetry",
		topology.WithPrefix(cfg.Prefix),
		topology.WithDeadLetterTopic(TopicDeadLetter, parts, byDevice),
	)
	p := &Pipeline{Topology: t, cfg: cfg}
	p.Raw = topology.NewStream(t, TopicRaw, codecs.Bytes{}, parts, byDevice, topology.External("ingest edge"))
	if !cfg.Fuse.Has(FuseDecode) {
		p.Decoded = topology.NewStream(t, TopicDecoded, records.BatchCodec{}, parts, byDevice)
	}
	p.Normalized = topology.NewStream(t, TopicNormalized, records.ReadingsCodec{}, parts, byDevice).TimedBy(SummaryTime)
	p.Alerts = topology.NewStream(t, TopicAlerts, records.AlertCodec{}, parts, byDevice)
	p.Summaries = topology.NewStream(t, TopicSummaries, records.SummaryCodec{}, parts, byDevice)
	p.DeadLetters = t.DeadLetters()

	if !cfg.Fuse.Has(FuseDecode) {
		p.declareDecode()
	}
	p.declareDedupe(parts, byDevice)
	p.declareDeviceState(parts, byDevice)
	if !cfg.Fuse.Has(FuseAlerts) {
		p.declareAlerts()
	}
	p.declareSummaries()
	p.declareSink()
	return p
}

// Config returns the pipeline's configuration with defaults applied.
func (p *Pipeline) Config() Config { return p.cfg }
