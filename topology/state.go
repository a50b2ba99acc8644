package topology

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"

	"github.com/watershed-io/watershed/topology/internal/timectl"
	"github.com/watershed-io/watershed/topology/windowstore"
)

// Framework-owned state.
//
// Windowed aggregates (window.go) and timers (timers.go) keep their state
// in windowed stores (package windowstore) that the framework owns: one
// store per input partition under the group's data folder, whose changelog
// is a compacted topic of the group ("<group>-<name>-windows",
// "<group>-timers"), partitioned like its inputs.
//
// A callback's state writes are queued in its Context with its emits, and
// applied only when it returns nil: the local store takes them and each
// goes to the changelog topic, in the record's partition, through the very
// emit path of the callback's outputs. goka commits the record only once
// all of them were acknowledged, so the changelog holds every write of a
// committed record. A failed callback leaves nothing behind.
//
// When a session of the group's consumer group starts, every claimed
// partition's stores are rebuilt from their changelog partitions before
// any record is handled: from the store's checkpoint when the folder kept
// one, else from the oldest record, to the end (see statecheckpoint.go).
// The changelog is the state, the local stores a cache of it. A write
// that reached a local store but whose record failed (its emit refused,
// the process killed) is thereby forgotten with its record, which is
// handled again. The rebuild reads what the compacted changelog keeps:
// a window changelog is also deleted after the store's retention (plus a
// day), so it stays bounded; the timers changelog is compacted only (a
// cancelled timer is a tombstone, a fired one a mark until its firing
// record settled: see stateValue and dropSettledMarks).

// timeDecl is a group's framework-owned state.
type timeDecl struct {
	p *Processor
	// states are the group's stores, windows first, the timers' last.
	states []*stateDecl
	// aggs close their windows as stream time passes.
	aggs []closer
	// timers is the timers' store, ticks the topic of the wall-clock
	// ticks that fire them when no record comes (nil: no timers).
	timers   *stateDecl
	ticks    *inputDecl
	handlers map[string]func(c *Context, key string, raw []byte) error
}

type stateKind int

const (
	stateWindows stateKind = iota
	stateTimers
)

// stateDecl is one framework-owned store of a group and its changelog.
type stateDecl struct {
	topic *topicDecl
	kind  stateKind
	// size is the windows' length (to tell a window's end), segment and
	// retention the store's, all in milliseconds.
	size, segment, retention int64
}

// closer is a windowed aggregate, seen by the runtime.
type closer interface {
	closeDue(c *Context, ps *partState, streamTime int64) error
}

// timeState returns p's time declaration, creating it.
func (p *Processor) timeState() *timeDecl {
	if p.time == nil {
		p.time = &timeDecl{p: p, handlers: map[string]func(*Context, string, []byte) error{}}
	}
	return p.time
}

// addState declares a store whose changelog topic is "<group>-<name>".
func (td *timeDecl) addState(name string, kind stateKind, valueType, codec string, retentionMs int64) *stateDecl {
	d := &topicDecl{name: td.p.group + "-" + name, kind: kindState, valueType: valueType, codecName: codec,
		key: "key", partitions: DefaultPartitions, owner: td.p.group, retentionMs: retentionMs}
	td.p.t.addTopic(d)
	st := &stateDecl{topic: d, kind: kind}
	td.states = append(td.states, st)
	return st
}

// copartition gives the group's state and ticks topics its inputs'
// partition count.
func (td *timeDecl) copartition(n int32) {
	if td == nil {
		return
	}
	for _, st := range td.states {
		st.topic.partitions = n
	}
	if td.ticks != nil {
		td.ticks.topic.partitions = n
	}
}

// describe adds the ticks topic to the group's inputs and the changelogs
// to its outputs.
func (td *timeDecl) describe(in, out []string) ([]string, []string) {
	if td == nil {
		return in, out
	}
	if td.ticks != nil {
		in = append(in, td.ticks.topic.name)
	}
	for _, st := range td.states {
		out = append(out, st.topic.name)
	}
	return in, out
}

// edges returns the goka edges of the group's state: the ticks input,
// handled by cb, and the changelog outputs.
func (td *timeDecl) edges(cb func(*inputDecl) goka.ProcessCallback) []goka.Edge {
	if td == nil {
		return nil
	}
	var edges []goka.Edge
	if td.ticks != nil {
		edges = append(edges, goka.Input(goka.Stream(td.ticks.topic.name), rawCodec{}, cb(td.ticks)))
	}
	for _, st := range td.states {
		edges = append(edges, goka.Output(goka.Stream(st.topic.name), rawCodec{}))
	}
	return edges
}

// check reports what a group cannot combine with framework-owned state.
func (td *timeDecl) check() []error {
	if td == nil {
		return nil
	}
	if td.p.retry != nil {
		return []error{fmt.Errorf("processor %q: retry topics do not carry windows and timers: handle transient errors in place", td.p.group)}
	}
	return nil
}

// timeRuntime is the state of one group in one goka processor: the open
// stores of its partitions.
type timeRuntime struct {
	td *timeDecl
	// dir holds the stores ("" keeps them in memory: the test driver);
	// kafka, when set, is where their changelogs are read back.
	dir   string
	kafka *Kafka
	log   *slog.Logger
	// clock tells wall-clock time to the ticker (nil: the system's);
	// stream is the group's stream time, raised by what a rebuild finds.
	clock  Clock
	stream *streamClock
	// every is the ticker's period (0: DefaultTickEvery).
	every time.Duration

	// restoreTimeout bounds the rebuild of a session's state (0: the
	// default; see staterestore.go).
	restoreTimeout time.Duration
	// cacheBytes is the read cache of each store (0: the default).
	cacheBytes int

	bindOnce sync.Once
	mu       sync.Mutex
	parts    map[int32]*partState
	// owned are the partitions of the current session; stopTicks ends
	// its ticker.
	owned []int32
	// newTickProducer makes the ticker's producer (nil: defaultTickProducer).
	newTickProducer func() (sarama.SyncProducer, error)
	stopTicks       context.CancelFunc
	ticking         sync.WaitGroup
}

// partState is the open state of one partition. Its maps are touched by
// the partition's callbacks only (one at a time), and by session set-up.
type partState struct {
	stores map[*stateDecl]*windowstore.Store
	// wall holds the wall-clock timers (stores[timers] the stream-time
	// ones).
	wall *windowstore.Store
	// closedTo is, per aggregate, the stream-time bound its windows were
	// closed up to (a window is never created due: see Aggregate).
	closedTo map[*stateDecl]int64
	// nextEnd is, per aggregate, a lower bound of the ends of its pending
	// windows (math.MinInt64: not known): closing looks for due windows
	// only once stream time passes it, not after every record.
	nextEnd map[*stateDecl]int64
	// clock is the partition's stream-time entry (streamtime.go).
	clock streamLog
	// fired are the marks of fired timers not deleted yet
	// (dropSettledMarks); marks counts them for the ticker, which sends
	// a partition holding some a tick, so that a quiet partition deletes
	// them too.
	fired []firedMark
	marks atomic.Int64
}

// newRuntime returns the runtime of a goka processor of the group, nil
// when the group has no state. With kafka nil the stores are rebuilt by
// nobody: the test driver's (dir "", in memory).
func (td *timeDecl) newRuntime(dir string, kafka *Kafka, clock Clock, log *slog.Logger) *timeRuntime {
	if td == nil {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	return &timeRuntime{td: td, dir: dir, kafka: kafka, clock: clock, log: log, parts: map[int32]*partState{}}
}

// attach gives rt the stream clock of its processor, and returns rt.
func (rt *timeRuntime) attach(clock *streamClock) *timeRuntime {
	if rt != nil {
		rt.stream = clock
	}
	return rt
}

// Timer stores never expire: their windows start at 0 and end when due.
const timerSpan = int64(1) << 61

// stateWriteBuffer is the write buffer of each store (windowstore's
// Options.WriteBuffer): a store's writes reach leveldb in batches of about
// this many bytes. Nothing is lost by keeping them in memory: a live store
// is thrown away when its partition's next session starts (base is copied
// over it), and a base store is flushed before its checkpoint is written.
//
// 4 MiB, not 1: a catch-up's summaries cost a sixth less (docs/benchmarks.md,
// "Session 9"), more of a partition's windows being rewritten in memory
// before they reach leveldb.
const stateWriteBuffer = 4 << 20

// DefaultStateCacheBytes is the StateCacheBytes of a runner that sets
// none: the read cache of each window or timer store of a partition.
const DefaultStateCacheBytes = 16 << 20

// withCacheBytes sets the read cache of rt's stores (RunnerOptions.
// StateCacheBytes), and returns rt.
func (rt *timeRuntime) withCacheBytes(n int) *timeRuntime {
	if rt != nil {
		rt.cacheBytes = n
	}
	return rt
}

// timerWriteBuffer is the smaller buffer of timer stores: a timer is a few
// dozen bytes, and a partition's buffers add up (see docs/time.md).
const timerWriteBuffer = 256 << 10

// open opens the stores of partition p in their folder named folder
// ("base" or "live": see statecheckpoint.go), emptying those wipe names.
func (rt *timeRuntime) open(p int32, folder string, wipe map[*stateDecl]bool) (*partState, error) {
	ps := &partState{stores: map[*stateDecl]*windowstore.Store{}, closedTo: map[*stateDecl]int64{}, nextEnd: map[*stateDecl]int64{}}
	one := func(st *stateDecl, sub string) (*windowstore.Store, error) {
		o := windowstore.Options{SegmentInterval: st.segment, Retention: st.retention, Memory: rt.dir == "", WriteBuffer: stateWriteBuffer,
			CacheBytes: cmp.Or(rt.cacheBytes, DefaultStateCacheBytes)}
		if st.kind == stateTimers {
			o.SegmentInterval, o.Retention, o.WriteBuffer = timerSpan, timerSpan, timerWriteBuffer
		}
		if folder == "base" {
			// Written by the rebuild only, then copied to live: a cache
			// would cost the rebuild two inserts a change and serve nobody.
			o.CacheBytes = -1
		}
		if !o.Memory {
			o.Dir = filepath.Join(rt.partDir(st, p), folder, sub)
			if wipe[st] {
				if err := os.RemoveAll(o.Dir); err != nil {
					return nil, fmt.Errorf("topology: empty %s: %w", o.Dir, err)
				}
			}
		}
		return windowstore.Open(o)
	}
	for _, st := range rt.td.states {
		s, err := one(st, "")
		if err != nil {
			ps.close()
			return nil, err
		}
		ps.stores[st] = s
		ps.closedTo[st], ps.nextEnd[st] = math.MinInt64, math.MinInt64
		if st.kind == stateTimers {
			if ps.wall, err = one(st, "wall"); err != nil {
				ps.close()
				return nil, err
			}
		}
	}
	return ps, nil
}

// flush writes the stores' write buffers.
func (ps *partState) flush() error {
	var errs []error
	for _, s := range ps.stores {
		errs = append(errs, s.Flush())
	}
	if ps.wall != nil {
		errs = append(errs, ps.wall.Flush())
	}
	return errors.Join(errs...)
}

func (ps *partState) close() {
	for _, s := range ps.stores {
		_ = s.Close()
	}
	if ps.wall != nil {
		_ = ps.wall.Close()
	}
}

// part returns partition p's state: under a Runner, the session set-up
// opened it; the test driver's opens when first used.
func (rt *timeRuntime) part(p int32) (*partState, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if ps := rt.parts[p]; ps != nil {
		return ps, nil
	}
	if rt.kafka != nil {
		return nil, fmt.Errorf("topology: %s: partition %d's state is not open in this session", rt.td.p.group, p)
	}
	ps, err := rt.open(p, "live", nil)
	if err != nil {
		return nil, err
	}
	rt.parts[p] = ps
	return ps, nil
}

// bind registers rt with the test driver whose context the processor runs
// in, so that the driver reads its stores.
func (rt *timeRuntime) bind(ctx context.Context) {
	rt.bindOnce.Do(func() {
		if ctl := timectl.From(ctx); ctl != nil {
			ctl.Register(rt.td.p.group, rt)
		}
	})
}

// setup rebuilds the state of a new session's partitions from their
// changelogs, and starts its ticker. dl reads the group's committed
// offsets.
func (rt *timeRuntime) setup(s sarama.ConsumerGroupSession, dl *deadLetterLog) error {
	rt.cleanup()
	client := dl.client
	resp, err := dl.committed(s.Claims())
	if err != nil {
		return err
	}
	var owned []int32
	for _, ps := range s.Claims() {
		for _, p := range ps {
			if !slices.Contains(owned, p) {
				owned = append(owned, p)
			}
		}
	}
	slices.Sort(owned)
	ctx, cancel := context.WithTimeout(s.Context(), rt.restoreTimeoutOrDefault())
	defer cancel()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("topology: %s: state consumer: %w", rt.td.p.group, err)
	}
	defer consumer.Close()
	committed := map[int32]map[string]int64{}
	for _, p := range owned {
		committed[p] = map[string]int64{}
		for topic, claimed := range s.Claims() {
			if slices.Contains(claimed, p) {
				committed[p][topic] = -1
				if blk := resp.GetBlock(topic, p); blk != nil {
					committed[p][topic] = blk.Offset
				}
			}
		}
	}
	if rt.stream != nil {
		// A new session's partitions start from their committed stream
		// time (streamtime.go), not from this process's last session's.
		for _, p := range owned {
			rt.stream.reset(p)
		}
	}
	parts, err := rt.restorePartitions(ctx, client, consumer, owned, committed)
	if err != nil {
		return err
	}
	for p, ps := range parts {
		rt.restoreStreamTime(p, ps)
	}
	rt.mu.Lock()
	rt.parts, rt.owned = parts, owned
	rt.mu.Unlock()
	if rt.td.timers != nil && len(owned) > 0 {
		tctx, stop := context.WithCancel(s.Context())
		rt.stopTicks = stop
		rt.ticking.Add(1)
		go rt.tick(tctx)
	}
	return nil
}

func closeParts(parts map[int32]*partState) {
	for _, ps := range parts {
		ps.close()
	}
}

// changelogSpan is what a store reads of its changelog partition: from
// offset from (its checkpoint's or the oldest) to end, starting with
// maxStart as the latest window start it holds.
type changelogSpan struct {
	from, end, maxStart, oldest int64
	// stream is the partition's committed stream time (Unix ns) when the
	// checkpoint was taken (0: none), for a tail without a stream-time
	// entry.
	stream int64
}

// restorePartitions brings the base stores of partitions owned up to
// their changelogs' ends (from their checkpoints when they have one),
// checkpoints them, and returns live copies of them for the session.
// committed holds each partition's committed input offsets (see undone).
func (rt *timeRuntime) restorePartitions(ctx context.Context, client sarama.Client, consumer sarama.Consumer, owned []int32, committed map[int32]map[string]int64) (map[int32]*partState, error) {
	bases := map[int32]*partState{}
	spans := map[int32]map[*stateDecl]changelogSpan{}
	keep := rt.tombstoneKeeps(client)
	for _, p := range owned {
		spans[p] = map[*stateDecl]changelogSpan{}
		wipe := map[*stateDecl]bool{}
		for _, st := range rt.td.states {
			sp, fromCheckpoint, err := rt.span(client, st, p, keep)
			if err != nil {
				closeParts(bases)
				return nil, err
			}
			spans[p][st], wipe[st] = sp, !fromCheckpoint
		}
		ps, err := rt.open(p, "base", wipe)
		if err != nil {
			// A checkpointed store that does not open (a crash of the
			// machine lost what it had not synced): rebuild it all.
			rt.log.Warn("state checkpoint unusable: rebuilding", "group", rt.td.p.group, "partition", p, "err", err)
			for _, st := range rt.td.states {
				sp := spans[p][st]
				spans[p][st], wipe[st] = changelogSpan{from: sp.oldest, end: sp.end, maxStart: -1, oldest: sp.oldest}, true
			}
			ps, err = rt.open(p, "base", wipe)
		}
		if err != nil {
			closeParts(bases)
			return nil, err
		}
		if len(rt.td.states) > 0 && !wipe[rt.td.states[0]] {
			// The stream-time entry lives in the first changelog: a
			// tail without one starts from the checkpoint's.
			if st := spans[p][rt.td.states[0]].stream; st > 0 {
				ps.clock = streamLog{base: st, written: st, restored: true}
			}
		}
		bases[p] = ps
	}
	maxStarts, err := rt.restoreAll(ctx, consumer, bases, committed, spans)
	for _, ps := range bases {
		if err == nil {
			// A base's writes are on disk before its checkpoint says so.
			err = ps.flush()
		}
	}
	closeParts(bases)
	if err != nil {
		return nil, err
	}
	parts := map[int32]*partState{}
	for _, p := range owned {
		for _, st := range rt.td.states {
			var stream int64
			if c := bases[p].clock; c.restored {
				stream = c.written
			}
			err := rt.putCheckpoint(st, p, checkpoint{offset: spans[p][st].end, maxStart: maxStarts[p][st], stream: stream})
			if err == nil {
				err = copyTree(filepath.Join(rt.partDir(st, p), "base"), filepath.Join(rt.partDir(st, p), "live"))
			}
			if err != nil {
				closeParts(parts)
				return nil, err
			}
		}
		ps, err := rt.open(p, "live", nil)
		if err == nil {
			if err = rt.collectMarks(ps); err != nil {
				ps.close()
			}
		}
		if err != nil {
			closeParts(parts)
			return nil, err
		}
		ps.clock = bases[p].clock
		parts[p] = ps
	}
	return parts, nil
}

// tombstoneKeeps returns a function telling a changelog's
// delete.retention.ms, asked of the brokers once per topic (0 when they
// do not say: no checkpoint is used).
func (rt *timeRuntime) tombstoneKeeps(client sarama.Client) func(topic string) time.Duration {
	keeps := map[string]time.Duration{}
	var admin sarama.ClusterAdmin
	return func(topic string) time.Duration {
		if d, ok := keeps[topic]; ok {
			return d
		}
		var err error
		if admin == nil {
			// Not closed: closing it would close the session's client.
			admin, err = sarama.NewClusterAdminFromClient(client)
			if err != nil {
				err = fmt.Errorf("topology: admin: %w", err)
			}
		}
		var d time.Duration
		if err == nil {
			d, err = tombstoneKeep(admin, topic)
		}
		if err != nil {
			rt.log.Warn("changelog's delete.retention.ms unknown: state checkpoints not used", "group", rt.td.p.group, "topic", topic, "err", err)
			admin = nil
		}
		keeps[topic] = d
		return d
	}
}

// span returns what store st of partition p reads of its changelog, and
// whether it starts from the store's checkpoint (taking it): only when the
// changelog still holds the checkpoint's offset and, keep telling the
// changelog's delete.retention.ms, every tombstone written since
// (checkpointUsable).
func (rt *timeRuntime) span(client sarama.Client, st *stateDecl, p int32, keep func(topic string) time.Duration) (changelogSpan, bool, error) {
	topic := st.topic.name
	end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return changelogSpan{}, false, fmt.Errorf("topology: end of %s/%d: %w", topic, p, err)
	}
	oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil {
		return changelogSpan{}, false, fmt.Errorf("topology: start of %s/%d: %w", topic, p, err)
	}
	ck, ok, err := rt.takeCheckpoint(st, p)
	if err != nil {
		return changelogSpan{}, false, err
	}
	if ok && ck.offset >= oldest && ck.offset <= end {
		age, keeps := time.Since(time.UnixMilli(ck.written)), keep(topic)
		log := rt.log.With("group", rt.td.p.group, "topic", topic, "partition", p, "checkpoint_age", age.Round(time.Second), "delete_retention", keeps)
		if checkpointUsable(age, keeps, rt.restoreTimeoutOrDefault()) {
			log.Info("state checkpoint used: reading the changelog from it", "from", ck.offset)
			return changelogSpan{from: ck.offset, end: end, maxStart: ck.maxStart, oldest: oldest, stream: ck.stream}, true, nil
		}
		log.Info("state checkpoint too old for the changelog's delete.retention.ms: rebuilding from the oldest record")
	}
	return changelogSpan{from: oldest, end: end, maxStart: -1, oldest: oldest}, false, nil
}

// restoreAll reads every store of parts from its changelog partition,
// spans telling what, all at once: they share the consumer's fetches, and
// the wait of a fetch at the end of one partition (Consumer.MaxWaitTime)
// is not paid once per store and partition in turn. It returns the latest
// window start each store holds, and raises each partition's stream time
// to it.
func (rt *timeRuntime) restoreAll(ctx context.Context, consumer sarama.Consumer, parts map[int32]*partState, committed map[int32]map[string]int64, spans map[int32]map[*stateDecl]changelogSpan) (map[int32]map[*stateDecl]int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		p        int32
		st       *stateDecl
		maxStart int64
		err      error
	}
	results := make(chan result)
	n := 0
	for p, ps := range parts {
		for _, st := range rt.td.states {
			n++
			go func() {
				maxStart, err := rt.restore(ctx, consumer, st, p, ps, committed[p], spans[p][st])
				results <- result{p, st, maxStart, err}
			}()
		}
	}
	maxStarts := map[int32]map[*stateDecl]int64{}
	var first error
	for range n {
		r := <-results
		if r.err != nil && first == nil {
			first = r.err
			cancel()
		}
		if maxStarts[r.p] == nil {
			maxStarts[r.p] = map[*stateDecl]int64{}
		}
		maxStarts[r.p][r.st] = r.maxStart
	}
	if first == nil && rt.stream != nil {
		for p, byState := range maxStarts {
			for st, maxStart := range byState {
				if st.kind == stateWindows && maxStart >= 0 && !parts[p].clock.restored {
					// No stream-time entry (a changelog written before
					// them): a window starts no later than the stream
					// time that made it, a lower bound of it.
					rt.stream.advance(p, time.UnixMilli(maxStart))
				}
			}
		}
	}
	return maxStarts, first
}

// restore reads store st of partition p back from its changelog, the
// records of sp, and returns the latest start it holds (-1: none).
func (rt *timeRuntime) restore(ctx context.Context, consumer sarama.Consumer, st *stateDecl, p int32, ps *partState, committed map[string]int64, sp changelogSpan) (int64, error) {
	topic, end := st.topic.name, sp.end
	done := func(read int, maxStart int64) (int64, error) {
		if st.kind == stateWindows && maxStart >= 0 {
			// A window starts before the stream time that made it: drop
			// what the retention dropped before.
			if _, err := ps.stores[st].Expire(maxStart); err != nil {
				return -1, err
			}
		}
		rt.log.Info("state restored", "group", rt.td.p.group, "topic", topic, "partition", p, "from", sp.from, "records", read)
		return maxStart, nil
	}
	if sp.from >= end {
		return done(0, sp.maxStart)
	}
	pc, err := consumer.ConsumePartition(topic, p, sp.from)
	if err != nil {
		return -1, fmt.Errorf("topology: read %s/%d: %w", topic, p, err)
	}
	// Not waited for: a partition consumer's Close waits for its fetch in
	// flight, up to Consumer.MaxWaitTime (half a second), which every
	// store of every claimed partition would pay in turn.
	defer func() { go pc.Close() }()
	read, maxStart := 0, sp.maxStart
	for {
		select {
		case m := <-pc.Messages():
			read++
			c, err := windowstore.ParseChange(m.Key, m.Value)
			entry := err == nil && isStreamTime(c)
			if entry {
				err = ps.clock.restore(c.Value, committed)
			} else if err == nil {
				c, err = undone(c, committed)
			}
			if err != nil {
				return -1, fmt.Errorf("topology: %s/%d@%d: %w", topic, p, m.Offset, err)
			}
			store := ps.stores[st]
			if st.kind == stateTimers && len(c.Key) > 0 && c.Key[0] == timerWall {
				store = ps.wall
			}
			if !entry { // the stream time is not the store's
				if err := store.Restore(c); err != nil {
					return -1, fmt.Errorf("topology: restore %s/%d@%d: %w", topic, p, m.Offset, err)
				}
				maxStart = max(maxStart, c.Start)
			}
			if m.Offset+1 >= end {
				return done(read, maxStart)
			}
		case err := <-pc.Errors():
			return -1, fmt.Errorf("topology: read %s/%d: %w", topic, p, err)
		case <-ctx.Done():
			return -1, fmt.Errorf("topology: read %s/%d to %d: %w", topic, p, end, ctx.Err())
		}
	}
}

// cleanup closes the state of the ended session.
func (rt *timeRuntime) cleanup() {
	if rt.stopTicks != nil {
		rt.stopTicks()
		rt.ticking.Wait()
		rt.stopTicks = nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for p, ps := range rt.parts {
		ps.close()
		delete(rt.parts, p)
	}
	rt.owned = nil
}

// DefaultTickEvery is how often a Runner looks for due wall-clock timers
// in the partitions it owns, unless RunnerOptions.TickEvery says
// otherwise. A partition with one gets a tick record, whose handling
// fires them.
const DefaultTickEvery = time.Second

// setTick sets the ticker's period (0 or less: DefaultTickEvery).
func (rt *timeRuntime) setTick(every time.Duration) {
	if rt != nil {
		rt.every = every
	}
}

// tick sends, every rt.every, a tick to each owned partition that holds
// a due wall-clock timer, until ctx ends. Ticks go through the group's
// input, so a timer fires in a callback, with its commit rules, on the
// partition's goroutine.
func (rt *timeRuntime) tick(ctx context.Context) {
	defer rt.ticking.Done()
	prod, err := rt.tickProducer(ctx)
	if err != nil {
		return // the session ended
	}
	defer prod.Close()
	clock := rt.clock
	if clock == nil {
		clock = SystemClock{}
	}
	every := rt.every
	if every <= 0 {
		every = DefaultTickEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := clock.Now().UnixMilli()
		var msgs []*sarama.ProducerMessage
		rt.mu.Lock()
		for _, p := range rt.owned {
			if ps := rt.parts[p]; ps != nil && (hasDue(ps.wall, now) || ps.marks.Load() > 0) {
				h := originHeader(p)
				msgs = append(msgs, &sarama.ProducerMessage{Topic: rt.td.ticks.topic.name, Key: sarama.StringEncoder("tick"),
					Value:   sarama.ByteEncoder(strconv.AppendInt(nil, now, 10)),
					Headers: []sarama.RecordHeader{{Key: []byte(h.Key), Value: h.Value}}})
			}
		}
		rt.mu.Unlock()
		if len(msgs) > 0 {
			if err := prod.SendMessages(msgs); err != nil && ctx.Err() == nil {
				rt.log.Warn("wall-clock timer ticks not sent", "group", rt.td.p.group, "err", err)
			}
		}
	}
}

// hasDue reports whether s holds a window ending at or before now.
func hasDue(s *windowstore.Store, now int64) bool {
	due := false
	_ = s.Ending(0, now+1, func(windowstore.Window) bool { due = true; return false })
	return due
}

// withTimeState gives the ordered group cg its time runtime.
func withTimeState(cg sarama.ConsumerGroup, err error) func(*timeRuntime) (sarama.ConsumerGroup, error) {
	return func(rt *timeRuntime) (sarama.ConsumerGroup, error) {
		if og, ok := cg.(orderedGroup); ok && rt != nil {
			og.time = rt
			cg = og
		}
		return cg, err
	}
}
