package topology

import (
	"context"
	"errors"
	"fmt"
)

// Resource names something a processor uses at run time, of type T, such
// as a store or a client. The declaration holds only this typed key: the
// value is handed to the Runner (RunnerOptions.Resources) or the test
// driver, so that declaring a topology (to describe it, check it or create
// its topics) needs no store.
type Resource[T any] struct{ name string }

// NewResource returns the key of a resource called name (unique within a
// topology).
func NewResource[T any](name string) Resource[T] { return Resource[T]{name: name} }

// Name returns the resource's name.
func (r Resource[T]) Name() string { return r.name }

// Get returns the value provided for r, reading it from ctx: the context of
// a callback (Context.Context), of a Batcher's write or of a RetryPolicy's
// probe, which carry the resources of their Runner. It reports false when
// none was provided.
func (r Resource[T]) Get(ctx context.Context) (T, bool) {
	res, _ := ctx.Value(resourcesKey{}).(map[string]any)
	v, ok := res[r.name].(T)
	return v, ok
}

// Provided is the value of one resource, for RunnerOptions.Resources.
type Provided struct {
	name  string
	value any
}

// Name returns the name of the provided resource.
func (p Provided) Name() string { return p.name }

// Resources returns the names of the resources group p uses (its main
// group's, for a retry group).
func (p *Processor) Resources() []string {
	if p.retryOf != nil {
		p = p.retryOf
	}
	return append([]string(nil), p.uses...)
}

// Provide pairs resource r with its value v.
func Provide[T any](r Resource[T], v T) Provided { return Provided{name: r.name, value: v} }

// ErrMissingResource is returned by NewRunner when a group to run uses a
// resource it was not given.
var ErrMissingResource = errors.New("topology: resource not provided")

// Uses declares that p needs resource r at run time: a Runner refuses to
// run p (and its retry group) without it.
func Uses[T any](p *Processor, r Resource[T]) {
	if !p.t.open("%q uses resource %q", p.group, r.name) {
		return
	}
	p.uses = append(p.uses, r.name)
}

type resourcesKey struct{}

// WithResources returns a context carrying the resources res on top of
// those ctx carries. A Runner's processors run under such a context; a
// test driver or a tool gives its own processors one the same way.
func WithResources(ctx context.Context, res ...Provided) context.Context {
	if len(res) == 0 {
		return ctx
	}
	prev, _ := ctx.Value(resourcesKey{}).(map[string]any)
	m := make(map[string]any, len(prev)+len(res))
	for k, v := range prev {
		m[k] = v
	}
	for _, r := range res {
		m[r.name] = r.value
	}
	return context.WithValue(ctx, resourcesKey{}, m)
}

// checkResources returns an error naming the first resource a group of
// procs uses that res does not provide.
func checkResources(procs []*Processor, res []Provided) error {
	have := map[string]bool{}
	for _, r := range res {
		have[r.name] = true
	}
	for _, p := range procs {
		for _, name := range p.Resources() {
			if !have[name] {
				return fmt.Errorf("%w: group %q uses %q", ErrMissingResource, p.group, name)
			}
		}
	}
	return nil
}
