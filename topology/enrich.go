package topology

import "fmt"

// Enrich declares that p joins each record of in with tb's value for the
// record's key (a Join: tb must be co-partitioned with in) and emits
// fn(key, v, t) under the same key to a new stream named name, encoded by
// codec, with opts. A record whose key tb does not hold emits nothing (an
// inner join, as Kafka Streams' KStream.join of a KTable); for anything
// else (a default, a lookup by another key), write the handler with Join
// or Lookup. It returns the new stream.
func Enrich[V, T, R any](p *Processor, in Stream[V], tb Table[T], name string, codec Codec[R], fn func(key string, v V, t T) R, opts ...TopicOption) Stream[R] {
	out := NewStream(p.t, name, codec, opts...)
	if fn == nil {
		p.t.declErrs = append(p.t.declErrs, fmt.Errorf("processor %q: Enrich without a function", p.group))
		return out
	}
	joined, emit := Join(p, tb), Produce(p, out)
	Consume(p, in, func(c *Context, key string, v V) error {
		t, ok, err := joined.Get(c)
		if err != nil || !ok {
			return err
		}
		return emit.Emit(c, key, fn(key, v, t))
	})
	return out
}
