package topology

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/topology/tablestore"
)

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	// Kafka is the cluster to run on.
	Kafka Kafka
	// Groups names the processor groups to run (all when empty).
	Groups []string
	// DataDir holds the local copies of group tables and lookups, one
	// folder per group. Required.
	DataDir string
	// Metrics receive the processors' counters; nil records none.
	Metrics *Metrics
	// Registerer, when set, gets the lag and recovery collectors.
	Registerer prometheus.Registerer
	// Logger receives the runner's and goka's logs (default slog.Default()).
	Logger *slog.Logger
	// Topics configure the topics the runner creates before starting.
	Topics TopicOptions
	// SkipTopicCreation assumes the topics exist (they are still checked
	// by goka when processors start).
	SkipTopicCreation bool
	// HotStandby keeps a copy of every table partition this process does
	// not own, so that a rebalance finds it already recovered.
	HotStandby bool
	// RecoverAhead recovers newly assigned table partitions before the
	// rebalance completes.
	RecoverAhead bool
	// TableStorage, when set, builds the local storage of a group's
	// tables in the folder it is given. The default is tablestore's
	// batching storage with its default options (writes and the table
	// offset reach leveldb as one batch every 50 ms); goka's own leveldb
	// storage, a journal write per value, is storage.DefaultBuilder. The
	// storage is a cache of the table topic: whatever it lost in a crash
	// is replayed from there. The runner gives a group table's storage
	// only the writes the table topic acknowledged (see changelog.go).
	TableStorage func(dir string) storage.Builder
	// RestartBackoff spaces the restarts of a group whose processor
	// stopped with a recoverable error while the runner runs (default 1s
	// doubling up to 30s; see Run).
	RestartBackoff Backoff
}

// DefaultRestartBackoff is the RestartBackoff of a runner that sets none.
func DefaultRestartBackoff() Backoff { return Backoff{Initial: time.Second, Max: 30 * time.Second} }

// Runner runs a set of processor groups of a topology in this process. Many
// processes running the same group share its partitions.
type Runner struct {
	t     *Topology
	opts  RunnerOptions
	procs []*Processor
	log   *slog.Logger

	mu      sync.Mutex
	running []*goka.Processor
	// down holds, per group, the error its processor stopped with while
	// it waits to restart (nil when it runs).
	down []error
	// stopped marks the groups that ended for good (down holds why).
	stopped []bool
	started bool
}

// NewRunner validates the topology and prepares the named groups.
func NewRunner(t *Topology, opts RunnerOptions) (*Runner, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Kafka.validate(); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		return nil, errors.New("topology: runner needs a data folder for its tables")
	}
	procs, err := t.Select(opts.Groups)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RestartBackoff.Initial <= 0 {
		opts.RestartBackoff.Initial = DefaultRestartBackoff().Initial
	}
	if opts.RestartBackoff.Max < opts.RestartBackoff.Initial {
		opts.RestartBackoff.Max = max(DefaultRestartBackoff().Max, opts.RestartBackoff.Initial)
	}
	r := &Runner{t: t, opts: opts, procs: procs, log: opts.Logger}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(&runnerCollector{r: r}); err != nil {
			return nil, fmt.Errorf("topology: register runner metrics: %w", err)
		}
	}
	return r, nil
}

// Groups returns the groups this runner runs.
func (r *Runner) Groups() []string {
	out := make([]string, len(r.procs))
	for i, p := range r.procs {
		out[i] = p.group
	}
	return out
}

// Run creates missing topics, starts every group, and blocks until ctx is
// cancelled or a processor fails for good. Brokers that do not answer at
// start are waited for with RestartBackoff (not ready meanwhile). On cancellation each processor
// finishes its in-flight records, commits their offsets and leaves its
// group before Run returns. Offsets commit in order: a record's only once
// it and every earlier record of its partition had their outputs
// acknowledged (see orderedGroup).
//
// A group whose processor stops with a recoverable error while ctx is live
// (a record left uncommitted when a rebalance took its partition, an emit
// the producer gave up on, a lost connection to the brokers; see
// Recoverable) is started again with a new
// processor after RestartBackoff, alone: the other groups go on. Any other
// error, such as a failure of a processor with the Stop policy, stops
// every group and Run returns it.
func (r *Runner) Run(ctx context.Context) error {
	if !r.opts.SkipTopicCreation {
		// Brokers that do not answer yet are waited for, as a group
		// waits for them after a start (see runGroup).
		var plan []TopicPlan
		for attempt := 1; ; attempt++ {
			var err error
			plan, err = r.t.EnsureTopics(r.opts.Kafka, r.opts.Topics)
			if err == nil {
				break
			}
			if !Recoverable(err) {
				return err
			}
			wait := r.opts.RestartBackoff.delay(attempt)
			r.log.Warn("brokers not reachable; trying again", "err", err, "in", wait.String())
			if !sleepCtx(ctx, wait) {
				return nil
			}
		}
		created := 0
		for _, p := range plan {
			if p.Action == "create" {
				created++
			}
		}
		r.log.Info("topics ready", "created", created, "total", len(plan))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var producers []goka.Producer
	defer func() {
		for _, p := range producers {
			if err := p.Close(); err != nil {
				r.log.Warn("closing a batch producer", "err", err)
			}
		}
	}()
	gps := make([]*goka.Processor, len(r.procs))
	prods := make([]goka.Producer, len(r.procs))
	downs := make([]error, len(r.procs))
	queues := make([]*sync.WaitGroup, len(r.procs))
	for i, p := range r.procs {
		queues[i] = &sync.WaitGroup{}
		if (p.batch != nil && p.retryOf == nil) || p.retryOf != nil {
			// The batches' dead letters and retries, and the outputs of
			// retried records handled once due, are found after their
			// callbacks returned: they go through a producer of the
			// runner's.
			prod, err := producerBuilder(r.opts.Kafka)(r.opts.Kafka.Brokers, clientID(r.opts.Kafka, p.group)+"-batch", Hasher)
			if err != nil {
				return fmt.Errorf("topology: producer of %s: %w", p.group, err)
			}
			producers = append(producers, prod)
			prods[i] = prod
		}
		gp, err := r.newProcessor(p, prods[i], runEnv{stop: ctx, queues: queues[i]})
		if err != nil && !Recoverable(err) {
			return err
		}
		// Built or not (brokers away): runGroup builds a missing one
		// with backoff.
		gps[i], downs[i] = gp, err
	}
	r.mu.Lock()
	r.running = gps
	r.down = downs
	r.stopped = make([]bool, len(gps))
	r.started = true
	r.mu.Unlock()

	errs := make(chan error, len(gps))
	for i := range gps {
		go func() {
			err := r.runGroup(ctx, i, gps[i], prods[i], queues[i])
			// The batch queues may still flush the last records of the
			// group's partitions through its producer.
			queues[i].Wait()
			r.mu.Lock()
			r.down[i], r.stopped[i] = err, true
			r.mu.Unlock()
			if err != nil {
				cancel() // a group that failed for good stops the others: the process restarts as a whole
			}
			errs <- err
		}()
	}
	var all []error
	for range gps {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// runGroup runs group i until ctx ends or its processor fails with an
// error that is not recoverable, restarting it after recoverable ones.
func (r *Runner) runGroup(ctx context.Context, i int, gp *goka.Processor, prod goka.Producer, queues *sync.WaitGroup) error {
	p := r.procs[i]
	bo := r.opts.RestartBackoff
	if m := r.opts.Metrics; m != nil {
		m.restarts.WithLabelValues(p.group) // shown at 0 before any restart
	}
	for attempt := 1; ; attempt++ {
		var err error
		started := time.Now()
		if gp == nil {
			// Building connects to the brokers: it fails like a run
			// while they are away.
			gp, err = r.newProcessor(p, prod, runEnv{stop: ctx, queues: queues})
			if err == nil {
				r.mu.Lock()
				r.running[i], r.down[i] = gp, nil
				r.mu.Unlock()
			}
		}
		if gp != nil {
			r.log.Info("processor starting", "group", p.group)
			err = gp.Run(ctx)
			r.log.Info("processor stopped", "group", p.group)
		}
		if ctx.Err() != nil {
			if err != nil && IsAbandoned(err) {
				r.log.Warn("processor stopped while records were unwritten or retried; they stay uncommitted", "group", p.group, "err", err)
				err = nil
			}
			if err != nil {
				return fmt.Errorf("topology: processor %s: %w", p.group, err)
			}
			return nil
		}
		if err == nil {
			return nil
		}
		if !Recoverable(err) {
			return fmt.Errorf("topology: processor %s: %w", p.group, err)
		}
		if time.Since(started) > bo.Max {
			attempt = 1 // it ran well for a while: start the backoff over
		}
		wait := bo.delay(attempt)
		r.setDown(i, err)
		if m := r.opts.Metrics; m != nil {
			m.restarted(p.group) // counted when decided, so that it shows while the group waits
		}
		r.log.Warn("processor stopped with a recoverable error; restarting it", "group", p.group, "err", err, "in", wait)
		if !sleepCtx(ctx, wait) {
			return nil
		}
		// The last session's queues finish before a new processor takes
		// partitions again.
		queues.Wait()
		gp = nil
	}
}

func (r *Runner) setDown(i int, err error) {
	r.mu.Lock()
	r.down[i] = err
	r.mu.Unlock()
}

// Recoverable reports whether a processor that stopped with err may be
// started again in the same process: it left a record uncommitted when it
// lost a partition (IsAbandoned), its producer gave up on a record's
// output, or it lost its connection to the brokers. A failure of a
// processor with the Stop policy is not.
func Recoverable(err error) bool {
	// goka formats some of its errors with %v, which ends the chain: a
	// callback's panic (how the Stop policy fails a processor) and the
	// clients it builds at start. Their text is all that is left.
	if err == nil {
		return false
	}
	msg := err.Error()
	if errors.Is(err, errPolicyStop) || strings.Contains(msg, errPolicyStop.Error()) {
		return false
	}
	// A record left uncommitted when its partition was revoked or the
	// processor stopped mid-retry: goka's asynchronous failure path
	// formats it with %v, so its text is matched too.
	if IsAbandoned(err) || strings.Contains(msg, errAbandoned.Error()) {
		return true
	}
	// A producer that gave up on an emit or a table write (past its
	// retries): the record stays uncommitted (see orderedGroup) and a new
	// processor sends it again.
	var perr *sarama.ProducerError
	if errors.As(err, &perr) || strings.Contains(msg, "kafka: Failed to produce message to topic") {
		return true
	}
	for _, target := range []error{sarama.ErrOutOfBrokers, sarama.ErrNotConnected, sarama.ErrBrokerNotAvailable,
		sarama.ErrClosedClient, io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, target) {
			return true
		}
	}
	// goka's own texts when a broker went away under it (seen in the
	// cluster fault test: a processor built while a broker restarted, a
	// consumer group closed on a reset connection).
	for _, text := range []string{sarama.ErrOutOfBrokers.Error(), sarama.ErrNotConnected.Error(),
		syscall.ECONNREFUSED.Error(), syscall.ECONNRESET.Error(), syscall.EPIPE.Error(), "i/o timeout",
		"cannot connect to broker", ": " + io.EOF.Error(), ": " + io.ErrUnexpectedEOF.Error()} {
		if strings.Contains(msg, text) {
			return true
		}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var kerr sarama.KError
	isKErr := errors.As(err, &kerr)
	for _, k := range []sarama.KError{sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable,
		sarama.ErrOffsetsLoadInProgress, sarama.ErrRebalanceInProgress, sarama.ErrRequestTimedOut,
		sarama.ErrLeaderNotAvailable, sarama.ErrNotLeaderForPartition, sarama.ErrNetworkException,
		sarama.ErrUnknownMemberId, sarama.ErrIllegalGeneration} {
		// Matched by text too: goka sets partitions up with %v (a leader
		// that moved while a broker was killed).
		if isKErr && kerr == k || strings.Contains(msg, k.Error()) {
			return true
		}
	}
	return false
}

// Ready returns nil when every processor of the runner has recovered its
// tables and is processing, or an error that says what it waits for.
func (r *Runner) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return errors.New("processors not started")
	}
	for i, gp := range r.running {
		if r.stopped[i] {
			if err := r.down[i]; err != nil {
				return fmt.Errorf("processor %s stopped: %w", r.procs[i].group, err)
			}
			return fmt.Errorf("processor %s stopped", r.procs[i].group)
		}
		if err := r.down[i]; err != nil {
			return fmt.Errorf("processor %s is restarting after an error: %w", r.procs[i].group, err)
		}
		if !gp.Recovered() {
			return fmt.Errorf("processor %s is recovering its tables", r.procs[i].group)
		}
	}
	return nil
}

// PartitionLag is the consumer lag of one group on one input partition.
type PartitionLag struct {
	Group     string
	Topic     string
	Partition int32
	// Committed is the group's committed offset (-1 when none).
	Committed int64
	// End is the partition's high-water mark.
	End int64
	// Lag is End minus Committed (End when nothing is committed).
	Lag int64
}

// Drained returns nil when no lag in lags is above zero, else an error
// naming the first group and partition that lags.
func Drained(lags []PartitionLag) error {
	for _, l := range lags {
		if l.Lag != 0 {
			return fmt.Errorf("group %s lags %d on %s/%d", l.Group, l.Lag, l.Topic, l.Partition)
		}
	}
	return nil
}

// Lag reads the committed offsets of the runner's groups and the end of
// every input partition from the brokers.
func (r *Runner) Lag(ctx context.Context) ([]PartitionLag, error) {
	return r.t.Lag(ctx, r.opts.Kafka, r.Groups())
}

// Lag reads the consumer lag of the named groups (all when empty) on their
// input topics, including loop topics.
func (t *Topology) Lag(ctx context.Context, k Kafka, groups []string) ([]PartitionLag, error) {
	procs, err := t.Select(groups)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(k.Brokers, k.Config())
	if err != nil {
		return nil, fmt.Errorf("topology: connect: %w", err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("topology: admin: %w", err)
	}
	var out []PartitionLag
	for _, p := range procs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		offsets, err := admin.ListConsumerGroupOffsets(p.group, nil)
		if err != nil {
			return nil, fmt.Errorf("topology: offsets of %s: %w", p.group, err)
		}
		topics := []*topicDecl{}
		for _, in := range p.inputs {
			topics = append(topics, in.topic)
		}
		if p.loop != nil {
			topics = append(topics, p.loop.topic)
		}
		for _, d := range topics {
			for part := int32(0); part < d.partitions; part++ {
				end, err := client.GetOffset(d.name, part, sarama.OffsetNewest)
				if err != nil {
					return nil, fmt.Errorf("topology: end offset of %s/%d: %w", d.name, part, err)
				}
				committed := int64(-1)
				if blk := offsets.GetBlock(d.name, part); blk != nil {
					committed = blk.Offset
				}
				lag := end
				if committed >= 0 {
					lag = end - committed
				}
				out = append(out, PartitionLag{Group: p.group, Topic: d.name, Partition: part, Committed: committed, End: end, Lag: lag})
			}
		}
	}
	return out, nil
}

func (r *Runner) newProcessor(p *Processor, prod goka.Producer, env runEnv) (*goka.Processor, error) {
	k := r.opts.Kafka
	cl := newChangelog(p, r.log) // the group table's store holds only what its topic acknowledged
	opts := []goka.ProcessorOption{
		goka.WithHasher(Hasher),
		goka.WithStorageBuilder(cl.storage(r.tableStorage(filepath.Join(r.opts.DataDir, "tables", p.group)))),
		goka.WithProducerBuilder(cl.producer(producerBuilder(k))),
		goka.WithConsumerGroupBuilder(func(brokers []string, group, clientID string) (sarama.ConsumerGroup, error) {
			cfg := k.Config()
			cfg.ClientID = clientID
			client, err := sarama.NewClient(brokers, cfg)
			if err != nil {
				return nil, err
			}
			// Offsets commit in order, dead letters once (see orderedGroup).
			return newOrderedGroup(client, group, r.t.deadLetter, r.log)
		}),
		goka.WithConsumerSaramaBuilder(saramaConsumerBuilder(k)),
		goka.WithTopicManagerBuilder(topicManagerBuilder(k)),
		goka.WithLogger(gokaLogger{r.log.With("group", p.group)}),
		goka.WithClientID(clientID(k, p.group)),
	}
	if r.opts.HotStandby {
		opts = append(opts, goka.WithHotStandby())
	}
	if r.opts.RecoverAhead {
		opts = append(opts, goka.WithRecoverAhead())
	}
	gp, err := goka.NewProcessor(k.Brokers, p.groupGraph(observerFor(r.opts.Metrics), prod, env), opts...)
	if err != nil {
		return nil, fmt.Errorf("topology: processor %s: %w", p.group, err)
	}
	return gp, nil
}

func (r *Runner) tableStorage(dir string) storage.Builder {
	if r.opts.TableStorage != nil {
		return r.opts.TableStorage(dir)
	}
	return tablestore.Builder(dir, tablestore.Options{Logger: r.log})
}

func clientID(k Kafka, group string) string {
	if k.ClientID != "" {
		return k.ClientID + "-" + group
	}
	return "watershed-" + group
}

// producerBuilder builds goka producers from a fresh configuration each
// time, since goka's own builder writes into the one it is given.
func producerBuilder(k Kafka) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		cfg := k.ProducerConfig()
		cfg.ClientID = clientID
		cfg.Producer.Partitioner = originPartitioner(hasher) // dead letters by origin (deadonce.go)
		return goka.NewProducer(brokers, cfg)
	}
}

func saramaConsumerBuilder(k Kafka) goka.SaramaConsumerBuilder {
	return func(brokers []string, clientID string) (sarama.Consumer, error) {
		cfg := k.Config()
		cfg.ClientID = clientID
		return sarama.NewConsumer(brokers, cfg)
	}
}

// topicManagerBuilder gives goka a topic manager that never creates
// topics: EnsureTopics did, with the declared counts and settings.
func topicManagerBuilder(k Kafka) goka.TopicManagerBuilder {
	return func(brokers []string) (goka.TopicManager, error) {
		tmc := goka.NewTopicManagerConfig()
		tmc.NoCreate = true
		tmc.Table.Replication = int(k.replication())
		tmc.Stream.Replication = int(k.replication())
		return goka.NewTopicManager(brokers, k.Config(), tmc)
	}
}

// gokaLogger routes goka's logs to slog at info level.
type gokaLogger struct{ l *slog.Logger }

func (g gokaLogger) Print(v ...any)            { g.l.Info(fmt.Sprint(v...), "component", "goka") }
func (g gokaLogger) Println(v ...any)          { g.l.Info(fmt.Sprint(v...), "component", "goka") }
func (g gokaLogger) Printf(f string, v ...any) { g.l.Info(fmt.Sprintf(f, v...), "component", "goka") }

// runnerCollector reports consumer lag and recovery at scrape time.
type runnerCollector struct{ r *Runner }

var (
	lagDesc = prometheus.NewDesc("watershed_consumer_lag",
		"Records in an input partition that the group has not committed yet.",
		[]string{"group", "topic", "partition"}, nil)
	recoveredDesc = prometheus.NewDesc("watershed_processor_recovered",
		"1 when the group's tables in this process are recovered and it processes records.",
		[]string{"group"}, nil)
	retryDepthDesc = prometheus.NewDesc("watershed_retry_records",
		"Records waiting in a retry topic (not yet committed by its retry group).",
		[]string{"group", "topic"}, nil)
	retryAgeDesc = prometheus.NewDesc("watershed_retry_oldest_age_seconds",
		"Age of the oldest record waiting in a retry topic (0 when none waits).",
		[]string{"group", "topic"}, nil)
)

func (c *runnerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- recoveredDesc
	ch <- retryDepthDesc
	ch <- retryAgeDesc
}

func (c *runnerCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.mu.Lock()
	running := append([]*goka.Processor(nil), c.r.running...)
	down := append([]error(nil), c.r.down...)
	stopped := append([]bool(nil), c.r.stopped...)
	c.r.mu.Unlock()
	for i, gp := range running {
		v := 0.0
		if down[i] == nil && !stopped[i] && gp.Recovered() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(recoveredDesc, prometheus.GaugeValue, v, c.r.procs[i].group)
	}
	if len(running) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := c.r.Lag(ctx)
	if err != nil {
		c.r.log.Warn("consumer lag unavailable", "err", err)
		return
	}
	for _, l := range lags {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(l.Lag), l.Group, l.Topic, strconv.Itoa(int(l.Partition)))
	}
	c.collectRetries(ctx, ch, lags)
}

// collectRetries reports the depth of every retry topic this runner
// consumes and the age of its oldest waiting record (read at the group's
// committed offset).
func (c *runnerCollector) collectRetries(ctx context.Context, ch chan<- prometheus.Metric, lags []PartitionLag) {
	type key struct{ group, topic string }
	depth := map[key]int64{}
	oldest := map[key]time.Time{}
	companion := map[string]bool{}
	for _, p := range c.r.procs {
		companion[p.group] = p.retryOf != nil
	}
	var consumer sarama.Consumer
	defer func() {
		if consumer != nil {
			consumer.Close()
		}
	}()
	for _, l := range lags {
		if !companion[l.Group] {
			continue
		}
		k := key{l.Group, l.Topic}
		depth[k] += l.Lag
		if l.Lag == 0 {
			continue
		}
		if consumer == nil {
			var err error
			if consumer, err = sarama.NewConsumer(c.r.opts.Kafka.Brokers, c.r.opts.Kafka.Config()); err != nil {
				c.r.log.Warn("retry topic age unavailable", "err", err)
				continue
			}
		}
		if ts, ok := firstTimestamp(ctx, consumer, l); ok && (oldest[k].IsZero() || ts.Before(oldest[k])) {
			oldest[k] = ts
		}
	}
	for k, n := range depth {
		ch <- prometheus.MustNewConstMetric(retryDepthDesc, prometheus.GaugeValue, float64(n), k.group, k.topic)
		age := 0.0
		if ts := oldest[k]; !ts.IsZero() {
			age = time.Since(ts).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(retryAgeDesc, prometheus.GaugeValue, age, k.group, k.topic)
	}
}

// firstTimestamp reads the timestamp of the first uncommitted record of a
// partition.
func firstTimestamp(ctx context.Context, consumer sarama.Consumer, l PartitionLag) (time.Time, bool) {
	from := l.Committed
	if from < 0 {
		from = sarama.OffsetOldest
	}
	pc, err := consumer.ConsumePartition(l.Topic, l.Partition, from)
	if err != nil {
		return time.Time{}, false
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		return m.Timestamp, !m.Timestamp.IsZero()
	case <-ctx.Done():
		return time.Time{}, false
	}
}
