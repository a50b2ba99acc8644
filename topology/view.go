package topology

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
)

// View is a local, continuously updated copy of a group table, typed. It
// serves reads by key from any process, such as the view API.
type View[V any] struct {
	v     *goka.View
	codec Codec[V]
	name  string
	// caughtUp is set once the view has recovered: from then on its local
	// copy answers, even while it reconnects or catches up again.
	caughtUp atomic.Bool
}

// ViewOptions configure a View.
type ViewOptions struct {
	// Kafka is the cluster to read from.
	Kafka Kafka
	// DataDir holds the view's local copy. Required.
	DataDir string
	// Logger receives goka's logs (default slog.Default()).
	Logger *slog.Logger
}

// NewView prepares a view of table tb. Call Run to start it.
func NewView[V any](tb Table[V], opts ViewOptions) (*View[V], error) {
	if tb.decl == nil {
		return nil, fmt.Errorf("topology: view of an undeclared table")
	}
	if err := opts.Kafka.validate(); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		return nil, fmt.Errorf("topology: view of %q needs a data folder", tb.decl.name)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	k := opts.Kafka
	gv, err := goka.NewView(k.Brokers, goka.Table(tb.decl.name), rawCodec{},
		goka.WithViewHasher(tb.decl.partitioner.hasher()),
		goka.WithViewStorageBuilder(storage.DefaultBuilder(filepath.Join(opts.DataDir, "views"))),
		goka.WithViewConsumerSaramaBuilder(saramaConsumerBuilder(k)),
		goka.WithViewTopicManagerBuilder(topicManagerBuilder(k)),
		goka.WithViewLogger(gokaLogger{opts.Logger.With("view", tb.decl.name)}),
		goka.WithViewClientID(clientID(k, "view-"+tb.decl.name)),
		// A view that loses its broker reconnects instead of failing, so
		// that it keeps answering from its local copy.
		goka.WithViewAutoReconnect(),
	)
	if err != nil {
		return nil, fmt.Errorf("topology: view of %q: %w", tb.decl.name, err)
	}
	return &View[V]{v: gv, codec: tb.codec, name: tb.decl.name}, nil
}

// Run keeps the view up to date until ctx is cancelled.
func (v *View[V]) Run(ctx context.Context) error {
	if err := v.v.Run(ctx); err != nil {
		return fmt.Errorf("topology: view of %q: %w", v.name, err)
	}
	return nil
}

// Get returns the value for key.
func (v *View[V]) Get(key string) (V, bool, error) {
	var zero V
	raw, err := v.v.Get(key)
	if err != nil {
		return zero, false, fmt.Errorf("topology: view of %q: get %q: %w", v.name, key, err)
	}
	b, _ := raw.([]byte)
	if b == nil {
		return zero, false, nil
	}
	val, err := v.codec.Decode(b)
	if err != nil {
		return zero, false, fmt.Errorf("topology: view of %q: decode %q: %w", v.name, key, err)
	}
	return val, true, nil
}

// Recovered reports whether the view is caught up with its table now: every
// partition is recovered and following it.
func (v *View[V]) Recovered() bool {
	ok := v.v.Recovered()
	if ok {
		v.caughtUp.Store(true)
	}
	return ok
}

// Serving reports whether the view has caught up with its table at least
// once since it started, so that its local copy may answer: after that, a
// reconnect or a rebalance makes the copy lag behind the table for a while
// but does not empty it.
func (v *View[V]) Serving() bool { return v.caughtUp.Load() || v.Recovered() }

// Running reports whether every partition of the view is connected and
// following its table, as opposed to recovering or reconnecting.
func (v *View[V]) Running() bool { return v.v.CurrentState() == goka.ViewStateRunning }

// Keys calls fn for every key of the view, in order, until fn returns
// false.
func (v *View[V]) Keys(fn func(key string) bool) error {
	it, err := v.v.Iterator()
	if err != nil {
		return fmt.Errorf("topology: view of %q: iterate: %w", v.name, err)
	}
	defer it.Release()
	for it.Next() {
		if !fn(it.Key()) {
			break
		}
	}
	return nil
}
