package embedded

import "time"

// One-machine batching: the fetch and flush settings (topology.Kafka's
// FetchMinBytes, FetchMaxWait and FlushInterval) that `watershed demo` and
// `watershed bench` give a topology's clients on the embedded broker. On
// one machine the broker, the edge and every stage share the same cores,
// so each fetch and produce request is paid on both sides of the loopback.
// A fetch waits for FetchMinBytes or FetchMaxWait, whichever comes first:
// under a heavy load it answers at once with a full batch, under a light
// one it adds at most FetchMaxWait per hop. A producer sends what it
// gathered every FlushInterval, or sooner once its batch is full.
// docs/benchmarks.md ("Live batching") has the measurements behind them.
const (
	FetchMinBytes = 64 << 10
	FetchMaxWait  = 10 * time.Millisecond
	FlushInterval = 20 * time.Millisecond
)
