package topology

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

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
	// Resources are the values of the resources the groups use (see
	// Resource); NewRunner refuses a group without one it uses.
	Resources []Provided
	// Hooks are told what the processors do (see Hook); package
	// topology/promhooks turns them into Prometheus metrics.
	Hooks []Hook
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
	// tables in the folder it is given: use tablestore.ForKind. The
	// default is tablestore's batching storage with its default options
	// (writes and the table offset reach leveldb as one batch every 50
	// ms); goka's own leveldb storage, a journal write per value, is the
	// kind tablestore.KindLevelDB. The storage is a cache of the table
	// topic: whatever it lost in a crash is replayed from there. The
	// runner gives a group table's storage only the writes the table topic
	// acknowledged (see changelog.go).
	TableStorage tablestore.Factory
	// RestartBackoff spaces the restarts of a group whose processor
	// stopped with a recoverable error while the runner runs (default 1s
	// doubling up to 30s; see Run).
	RestartBackoff Backoff
	// Clock tells the processors wall-clock time (Context.Now; default
	// SystemClock).
	Clock Clock
	// TickEvery is how often the runner looks for due wall-clock timers
	// in the partitions it owns, sending a tick to each that holds one
	// (default DefaultTickEvery): a timer fires up to TickEvery late when
	// no record of its partition comes first.
	TickEvery time.Duration
	// RestartLimit ends Run when a group's processor stopped this many
	// times in a row with the same recoverable error, each time within
	// RestartBackoff.Max of its start: a fault a restart in place does not
	// mend (a folder that cannot be written, a missing file) then stops
	// the process, whose supervisor shows and restarts it, instead of a
	// group restarting for ever. Brokers that cannot be reached are waited
	// for without a limit, as at start. 0 means DefaultRestartLimit; a
	// negative limit restarts for ever.
	RestartLimit int
	// StateRestoreTimeout bounds the rebuild of a group's windows and
	// timers from their changelogs at a session's start (0:
	// DefaultStateRestoreTimeout). A rebuild that fails (a corrupt
	// record, this timeout) is the group's failure, subject to
	// RestartLimit; one cut short by a rebalance is not.
	StateRestoreTimeout time.Duration
	// StateCacheBytes bounds the read cache of each partition's window
	// and timer stores (windowstore's Options.CacheBytes): a key's open
	// window or timer, read on each of its records, is a map lookup while
	// the cache holds it, instead of a walk of leveldb's memtables and
	// tables. It should hold the open windows (and timers) of the keys
	// that send within a few seconds of each other; 16 MiB was chosen
	// between 4 MiB (too small) and 32 MiB (nearly every read a hit),
	// measured with 40,000 devices on 8 partitions (docs/benchmarks.md,
	// "Session 9"). A process holds up to this much per store of each
	// partition it owns. 0 means DefaultStateCacheBytes; negative: no
	// cache.
	StateCacheBytes int
}

// DefaultRestartLimit is the RestartLimit of a runner that sets none: with
// the default backoff, about two and a half minutes of the same failure.
const DefaultRestartLimit = 10

// ErrRestartLimit is in the error Run returns when a group reached its
// RestartLimit.
var ErrRestartLimit = errors.New("topology: restart limit reached")

// DefaultRestartBackoff is the RestartBackoff of a runner that sets none.
func DefaultRestartBackoff() Backoff { return Backoff{Initial: time.Second, Max: 30 * time.Second} }

// Runner runs a set of processor groups of a topology in this process. Many
// processes running the same group share its partitions.
type Runner struct {
	plan *Plan
	// t is the plan's topology, sealed: the runner only reads it.
	t     *Topology
	opts  RunnerOptions
	procs []*Processor
	log   *slog.Logger
	hooks *hookSet

	mu      sync.Mutex
	running []*goka.Processor
	// down holds, per group, the error its processor stopped with while
	// it waits to restart (nil when it runs).
	down []error
	// stopped marks the groups that ended for good (down holds why).
	stopped []bool
	started bool
	// assigned holds, per group, the partitions of its last assignment in
	// this process (GroupStatus.Partitions).
	assigned map[string]*atomic.Int32
}

// NewRunner prepares the named groups of a built plan (see Topology.Build)
// to run on opts.Kafka.
func NewRunner(plan *Plan, opts RunnerOptions) (*Runner, error) {
	if plan == nil {
		return nil, errors.New("topology: runner needs a built plan (Topology.Build)")
	}
	t := plan.t
	if err := opts.Kafka.validate(); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		return nil, errors.New("topology: runner needs a data folder for its tables")
	}
	procs, err := plan.Select(opts.Groups)
	if err != nil {
		return nil, err
	}
	if err := checkResources(procs, opts.Resources); err != nil {
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
	if opts.RestartLimit == 0 {
		opts.RestartLimit = DefaultRestartLimit
	}
	r := &Runner{plan: plan, t: t, opts: opts, procs: procs, log: opts.Logger, hooks: newHookSet(opts.Hooks),
		assigned: make(map[string]*atomic.Int32, len(procs))}
	for _, p := range procs {
		r.assigned[p.group] = new(atomic.Int32)
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
// processor after RestartBackoff, alone: the other groups go on; after
// RestartLimit alike failures in a row (ErrRestartLimit) it stops as for
// an error that is not recoverable. Any other error, such as a failure of
// a processor with the Stop policy, stops every group and Run returns it.
func (r *Runner) Run(ctx context.Context) error {
	if !r.opts.SkipTopicCreation {
		// Brokers that do not answer yet are waited for, as a group
		// waits for them after a start (see runGroup).
		var plan []TopicPlan
		for attempt := 1; ; attempt++ {
			var err error
			plan, err = r.t.ensureTopics(r.opts.Kafka, r.opts.Topics)
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
	// The processors' contexts derive from ctx: they carry the resources.
	ctx, cancel := context.WithCancel(WithResources(ctx, r.opts.Resources...))
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
			var prod goka.Producer
			var err error
			pprof.Do(ctx, groupLabel(p.group), func(context.Context) {
				prod, err = producerBuilder(r.opts.Kafka, r.t.partitioners())(r.opts.Kafka.Brokers, clientID(r.opts.Kafka, p.group)+"-batch", Hasher)
			})
			if err != nil {
				return fmt.Errorf("topology: producer of %s: %w", p.group, err)
			}
			producers = append(producers, prod)
			prods[i] = prod
		}
		gp, err := r.newProcessor(p, prods[i], runEnv{stop: ctx, queues: queues[i], clock: r.opts.Clock})
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
	var streak restartStreak
	r.hooks.groupStarted(p.group)
	for attempt := 1; ; attempt++ {
		var err error
		started := time.Now()
		if gp == nil {
			// Building connects to the brokers: it fails like a run
			// while they are away.
			gp, err = r.newProcessor(p, prod, runEnv{stop: ctx, queues: queues, clock: r.opts.Clock})
			if err == nil {
				r.mu.Lock()
				r.running[i], r.down[i] = gp, nil
				r.mu.Unlock()
			}
		}
		if gp != nil {
			r.log.Info("processor starting", "group", p.group)
			pprof.Do(ctx, groupLabel(p.group), func(ctx context.Context) { err = gp.Run(ctx) })
			r.log.Info("processor stopped", "group", p.group)
		}
		if ctx.Err() != nil {
			// Stopping: an error a restart would have got over (records
			// unwritten or retried, brokers away) leaves its records
			// uncommitted for the next owner, as a restart would; the
			// stop is clean. Only an error no restart mends fails it.
			if err != nil && (IsAbandoned(err) || Recoverable(err)) {
				r.log.Warn("processor stopped while records were unwritten, retried or failing; they stay uncommitted", "group", p.group, "err", err)
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
		quick := time.Since(started) <= bo.Max
		if n := streak.fail(err, quick); r.opts.RestartLimit > 0 && n >= r.opts.RestartLimit {
			return fmt.Errorf("topology: processor %s: %w: it stopped %d times in a row the same way, each within %v of its start: %w",
				p.group, ErrRestartLimit, n, bo.Max, err)
		}
		if !quick {
			attempt = 1 // it ran well for a while: start the backoff over
		}
		wait := bo.delay(attempt)
		r.setDown(i, err)
		r.hooks.groupRestarted(p.group) // told when decided, so that it shows while the group waits
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

// groupLabel is the CPU profile label of a group's goroutines: its
// processor's clients, partitions and tables (leveldb's compactions
// included) inherit it, so a profile splits the CPU by group.
func groupLabel(group string) pprof.LabelSet { return pprof.Labels("group", group) }

func (r *Runner) setDown(i int, err error) {
	r.mu.Lock()
	r.down[i] = err
	r.mu.Unlock()
}

// Recoverable reports whether a processor that stopped with err may be
// started again in the same process. Every error is, such as a record left
// uncommitted when the processor lost a partition (IsAbandoned), an emit
// the producer gave up on, or a lost connection to the brokers, except
// those a restart cannot fix, which end Run:
//
//   - a failure under the Stop policy (ErrStopPolicy);
//   - authentication and authorization refused by the brokers;
//   - a record too large for the brokers or the producer;
//   - configuration: the client's (sarama's configuration errors), a topic that
//     differs from its declaration (ErrTopicMismatch), an invalid topology
//     (*ValidationError), an unknown group.
func Recoverable(err error) bool {
	if err == nil {
		return false
	}
	// goka formats some of its errors with %v, which ends the chain (a
	// callback's panic, how the Stop policy fails a processor): its text
	// is all that is left.
	msg := err.Error()
	for _, text := range []string{ErrStopPolicy.Error(), sarama.ErrMessageSizeTooLarge.Error(), "larger than configured Producer.MaxMessageBytes"} {
		if strings.Contains(msg, text) {
			return false
		}
	}
	for _, target := range []error{
		sarama.ErrSASLAuthenticationFailed, sarama.ErrUnsupportedSASLMechanism, sarama.ErrIllegalSASLState,
		sarama.ErrTopicAuthorizationFailed, sarama.ErrGroupAuthorizationFailed, sarama.ErrClusterAuthorizationFailed,
		sarama.ErrTransactionalIDAuthorizationFailed, sarama.ErrDelegationTokenAuthorizationFailed,
		sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidConfig, ErrTopicMismatch, ErrUnknownGroup,
	} {
		if errors.Is(err, target) {
			return false
		}
	}
	var cfg sarama.ConfigurationError
	var invalid *ValidationError
	return !errors.As(err, &cfg) && !errors.As(err, &invalid)
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
	return r.plan.Lag(ctx, r.opts.Kafka, r.Groups())
}

// Lag reads the consumer lag of the plan's named groups (all when empty)
// on their input topics, including loop and retry topics.
func (pl *Plan) Lag(ctx context.Context, k Kafka, groups []string) ([]PartitionLag, error) {
	procs, err := pl.Select(groups)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(k.Brokers, k.config())
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
		if errors.Is(err, sarama.ErrGroupIDNotFound) {
			// A group that never joined has committed nothing (Kafka
			// answers so; the embedded broker names the error).
			offsets, err = &sarama.OffsetFetchResponse{}, nil
		}
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

// timeRuntime returns the runtime of p's windows and timers as the
// runner's options set it (nil without state).
func (r *Runner) timeRuntime(p *Processor) *timeRuntime {
	k := r.opts.Kafka
	rt := p.time.newRuntime(filepath.Join(r.opts.DataDir, "state", p.group), &k, r.opts.Clock, r.log).
		withRestoreTimeout(r.opts.StateRestoreTimeout).withCacheBytes(r.opts.StateCacheBytes)
	rt.setTick(r.opts.TickEvery)
	return rt
}

func (r *Runner) newProcessor(p *Processor, prod goka.Producer, env runEnv) (*goka.Processor, error) {
	k := r.opts.Kafka
	cl := newChangelog(p, r.log) // the group table's store holds only what its topic acknowledged
	// Windows and timers: rebuilt from their changelogs per session.
	env.time = r.timeRuntime(p)
	opts := []goka.ProcessorOption{
		goka.WithHasher(Hasher),
		goka.WithStorageBuilder(cl.storage(r.tableStorage(filepath.Join(r.opts.DataDir, "tables", p.group)))),
		goka.WithProducerBuilder(cl.producer(producerBuilder(k, r.t.partitioners()))),
		goka.WithConsumerGroupBuilder(func(brokers []string, group, clientID string) (sarama.ConsumerGroup, error) {
			cfg := k.config()
			cfg.ClientID = clientID
			client, err := sarama.NewClient(brokers, cfg)
			if err != nil {
				return nil, err
			}
			// Offsets commit in order, dead letters once (see orderedGroup).
			return withTimeState(newOrderedGroup(client, group, r.t.deadLetter, r.log))(env.time)
		}),
		goka.WithConsumerSaramaBuilder(saramaConsumerBuilder(k)),
		goka.WithTopicManagerBuilder(topicManagerBuilder(k)),
		goka.WithLogger(gokaLogger{r.log.With("group", p.group)}),
		goka.WithClientID(clientID(k, p.group)),
		goka.WithRebalanceCallback(func(a goka.Assignment) { r.assigned[p.group].Store(int32(len(a))) }),
	}
	if r.opts.HotStandby {
		opts = append(opts, goka.WithHotStandby())
	}
	if r.opts.RecoverAhead {
		opts = append(opts, goka.WithRecoverAhead())
	}
	gp, err := goka.NewProcessor(k.Brokers, p.groupGraph(r.hooks, prod, env), opts...)
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
// parts are the topics not placed by hasher (Topology.partitioners).
func producerBuilder(k Kafka, parts map[string]Partitioner) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		cfg := k.producerConfig()
		cfg.ClientID = clientID
		cfg.Producer.Partitioner = originPartitioner(byTopicPartitioner(parts, hasher)) // dead letters by origin (deadonce.go)
		return goka.NewProducer(brokers, cfg)
	}
}

func saramaConsumerBuilder(k Kafka) goka.SaramaConsumerBuilder {
	return func(brokers []string, clientID string) (sarama.Consumer, error) {
		cfg := k.config()
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
		return goka.NewTopicManager(brokers, k.config(), tmc)
	}
}

// gokaLogger routes goka's logs to slog at info level.
type gokaLogger struct{ l *slog.Logger }

func (g gokaLogger) Print(v ...any)            { g.l.Info(fmt.Sprint(v...), "component", "goka") }
func (g gokaLogger) Println(v ...any)          { g.l.Info(fmt.Sprint(v...), "component", "goka") }
func (g gokaLogger) Printf(f string, v ...any) { g.l.Info(fmt.Sprintf(f, v...), "component", "goka") }

// GroupStatus is the state of one group of a Runner.
type GroupStatus struct {
	Group string
	// Retries is set on a companion retry group.
	Retries bool
	// Recovered is set when the group's tables in this process are
	// recovered and it processes records.
	Recovered bool
	// Partitions is the number of input partitions assigned to the group
	// in this process (0 while its processor is down).
	Partitions int
}

// Status returns the state of each group of the runner, in order, or nil
// before Run started them.
func (r *Runner) Status() []GroupStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return nil
	}
	out := make([]GroupStatus, len(r.procs))
	for i, p := range r.procs {
		out[i] = GroupStatus{Group: p.group, Retries: p.retryOf != nil}
		if r.down[i] == nil && !r.stopped[i] && r.running[i] != nil && r.running[i].Recovered() {
			out[i].Recovered = true
		}
		if r.down[i] == nil && !r.stopped[i] {
			out[i].Partitions = int(r.assigned[p.group].Load())
		}
	}
	return out
}

// RetryBacklog is what waits in one retry topic for its retry group.
type RetryBacklog struct {
	Group string
	Topic string
	// Records are the records not yet committed by the group.
	Records int64
	// Oldest is the timestamp of the oldest of them (zero when none
	// waits or it is unknown).
	Oldest time.Time
}

// RetryBacklog reports, from the runner's lags (see Lag), the depth of
// every retry topic this runner consumes and the time of its oldest waiting
// record (read at the group's committed offset).
func (r *Runner) RetryBacklog(ctx context.Context, lags []PartitionLag) []RetryBacklog {
	type key struct{ group, topic string }
	depth := map[key]int64{}
	oldest := map[key]time.Time{}
	var order []key
	companion := map[string]bool{}
	for _, p := range r.procs {
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
		if _, ok := depth[k]; !ok {
			order = append(order, k)
		}
		depth[k] += l.Lag
		if l.Lag == 0 {
			continue
		}
		if consumer == nil {
			var err error
			if consumer, err = sarama.NewConsumer(r.opts.Kafka.Brokers, r.opts.Kafka.config()); err != nil {
				r.log.Warn("retry topic age unavailable", "err", err)
				continue
			}
		}
		if ts, ok := firstTimestamp(ctx, consumer, l); ok && (oldest[k].IsZero() || ts.Before(oldest[k])) {
			oldest[k] = ts
		}
	}
	out := make([]RetryBacklog, 0, len(order))
	for _, k := range order {
		out = append(out, RetryBacklog{Group: k.group, Topic: k.topic, Records: depth[k], Oldest: oldest[k]})
	}
	return out
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
