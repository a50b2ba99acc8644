package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/topology/windowstore"
)

// WindowView follows the windows of an aggregate from any process, as a
// View follows a table: it reads the aggregate's changelog into local
// windowed stores, one per partition, and serves a key's windows by time
// range. It is a WindowSource. It starts from an empty folder each time
// and reads the changelog from its oldest record (the changelog's
// retention bounds that read); until it has read every partition up to
// where it ended when Run started, it answers ErrRecovering.
type WindowView[A any] struct {
	w    Windowed[A]
	opts ViewOptions

	mu     sync.RWMutex
	stores []*windowstore.Store // by partition; nil before Run
	// caughtUp is set once every partition was read up to its end when
	// Run started.
	caughtUp atomic.Bool
}

// ErrRecovering is wrapped by what a WindowView answers until it has read
// its changelog up to where the changelog ended when Run started: what it
// holds until then is a part of the windows. A server answers it with 503
// (Service Unavailable) and Retry-After.
var ErrRecovering = errors.New("topology: window view recovering")

// NewWindowView returns a view of aggregate w's windows; Run fills it.
func NewWindowView[A any](w Windowed[A], opts ViewOptions) (*WindowView[A], error) {
	if w.st == nil {
		return nil, errors.New("topology: view of an undeclared aggregate")
	}
	if err := opts.Kafka.validate(); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		return nil, fmt.Errorf("topology: view of %q needs a data folder", w.Name())
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &WindowView[A]{w: w, opts: opts}, nil
}

// Run reads the changelog until ctx ends. An error of the brokers or the
// local folder does not end it: the view is read again from its changelog
// after a backoff (1 s doubling up to 30 s), answering ErrRecovering
// meanwhile, as goka's views retry, so that a server using it stays up
// through a broker's outage.
func (v *WindowView[A]) Run(ctx context.Context) error {
	backoff := DefaultRestartBackoff()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := v.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > backoff.Max {
			attempt = 1 // it ran a while: start the backoff over
		}
		wait := backoff.delay(attempt)
		v.opts.Logger.Error("window view stopped; it reads its changelog again", "topic", v.w.Name(), "error", err, "retry_in", wait)
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

// run reads the changelog into fresh stores until ctx ends or reading
// fails.
func (v *WindowView[A]) run(ctx context.Context) error {
	topic := v.w.Name()
	cfg := v.opts.Kafka.config()
	cfg.ClientID = clientID(v.opts.Kafka, "view-"+topic)
	client, err := sarama.NewClient(v.opts.Kafka.Brokers, cfg)
	if err != nil {
		return fmt.Errorf("topology: view of %q: %w", topic, err)
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("topology: view of %q: %w", topic, err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("topology: view of %q: %w", topic, err)
	}
	defer consumer.Close()
	dir := filepath.Join(v.opts.DataDir, "windows", topic)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("topology: view of %q: %w", topic, err)
	}
	stores := make([]*windowstore.Store, len(parts))
	defer func() {
		v.mu.Lock()
		v.stores = nil
		v.mu.Unlock()
		for _, s := range stores {
			if s != nil {
				_ = s.Close()
			}
		}
	}()
	for _, p := range parts {
		if stores[p], err = windowstore.Open(windowstore.Options{Dir: filepath.Join(dir, strconv.Itoa(int(p))),
			SegmentInterval: v.w.st.segment, Retention: v.w.st.retention, WriteBuffer: stateWriteBuffer,
			// The view reads by Fetch, past the cache: it serves only the
			// old ends of windows the changelog rewrites.
			CacheBytes: windowstore.DefaultCacheBytes}); err != nil {
			return err
		}
	}
	v.mu.Lock()
	v.stores = stores
	v.caughtUp.Store(false) // a Run again starts empty again
	v.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(parts))
	var behind atomic.Int32
	behind.Store(int32(len(parts)))
	for _, p := range parts {
		go func() { errs <- v.follow(ctx, client, consumer, p, stores[p], &behind) }()
	}
	var first error
	for range parts {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
			cancel()
		}
	}
	return first
}

// follow applies partition p of the changelog to store until ctx ends.
func (v *WindowView[A]) follow(ctx context.Context, client sarama.Client, consumer sarama.Consumer, p int32, store *windowstore.Store, behind *atomic.Int32) error {
	topic := v.w.Name()
	end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
	if err != nil {
		return fmt.Errorf("topology: view of %s/%d: %w", topic, p, err)
	}
	oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("topology: view of %s/%d: %w", topic, p, err)
	}
	caughtUp := func() {
		if behind.Add(-1) == 0 {
			v.caughtUp.Store(true)
		}
	}
	if oldest >= end {
		caughtUp()
	}
	pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("topology: view of %s/%d: %w", topic, p, err)
	}
	defer pc.Close()
	maxStart, done := int64(-1), oldest >= end
	expire := time.NewTicker(time.Minute)
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-expire.C:
			if maxStart >= 0 {
				if _, err := store.Expire(maxStart); err != nil {
					return err
				}
			}
		case err, ok := <-pc.Errors():
			if !ok {
				return fmt.Errorf("topology: view of %s/%d: the consumer stopped", topic, p)
			}
			// sarama tells, then fetches the partition again itself.
			v.opts.Logger.Warn("window view: reading the changelog", "topic", topic, "partition", p, "error", err)
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("topology: view of %s/%d: the consumer stopped", topic, p)
			}
			c, err := windowstore.ParseChange(m.Key, m.Value)
			if err != nil {
				return fmt.Errorf("topology: view of %s/%d@%d: %w", topic, p, m.Offset, err)
			}
			if !isStreamTime(c) { // the group's stream time is no window
				if err := store.Restore(c); err != nil {
					return fmt.Errorf("topology: view of %s/%d@%d: %w", topic, p, m.Offset, err)
				}
				maxStart = max(maxStart, c.Start)
			}
			if m.Offset+1 >= end && !done {
				done = true
				if _, err := store.Expire(maxStart); err != nil {
					return err
				}
				caughtUp()
			}
		}
	}
}

// Recovered reports whether the view has read every partition up to where
// it ended when Run started.
func (v *WindowView[A]) Recovered() bool { return v.caughtUp.Load() }

// Fetch returns key's windows that start in [from, to), oldest first.
func (v *WindowView[A]) Fetch(key string, from, to time.Time) ([]WindowValue[A], error) {
	return v.w.Fetch(v, key, from, to)
}

// FetchWindows reads key's stored windows of the view's aggregate
// (WindowSource).
func (v *WindowView[A]) FetchWindows(topic, key string, from, to time.Time) ([]StoredWindow, error) {
	if topic != v.w.Name() {
		return nil, fmt.Errorf("topology: the view of %q has no windows of %q", v.w.Name(), topic)
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if len(v.stores) == 0 {
		return nil, fmt.Errorf("%w: the view of %q is not running (yet or again)", ErrRecovering, topic)
	}
	if !v.caughtUp.Load() {
		return nil, fmt.Errorf("%w: the view of %q has not read its changelog to its end yet", ErrRecovering, topic)
	}
	return fetchAll(v.stores, key, from, to)
}

// fetchAll reads key's windows starting in [from, to) from every store
// (the key's partition is the input's producer's choice, which readers do
// not know), oldest first.
func fetchAll(stores []*windowstore.Store, key string, from, to time.Time) ([]StoredWindow, error) {
	var out []StoredWindow
	for _, s := range stores {
		ws, err := s.Fetch([]byte(key), from.UnixMilli(), to.UnixMilli())
		if err != nil {
			return nil, err
		}
		for _, w := range ws {
			sv, err := parseState(w.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, StoredWindow{Window: Window{Start: time.UnixMilli(w.Start), End: time.UnixMilli(sv.end)}, Closed: sv.done, Value: sv.payload})
		}
	}
	slices.SortFunc(out, func(a, b StoredWindow) int { return a.Start.Compare(b.Start) })
	return out, nil
}
