// Package topology is a Kafka Streams-style framework for Go: an
// application declares its topics and processor groups once, typed, and
// the framework checks the declaration, creates the topics, runs any subset
// of the groups in a process, and handles every failure of a record by one
// policy. It runs on goka and sarama; it imports nothing of the
// application built on it.
//
// # The model
//
//   - A Topology (New) is one application: its topics and groups. Names
//     take an optional prefix, so that installations can share a cluster.
//   - A Stream[V] (NewStream) is a topic whose values are of type V, with
//     the Codec that encodes them (see package topology/codec). Producer
//     and consumers share the handle, so their codecs agree by
//     construction. A stream produced outside the topology is External.
//   - A Processor (Topology.Processor) is a consumer group: every process
//     that runs it shares its partitions. It Consumes streams with a
//     Handler, and declares what it writes: outputs (Produce, then
//     Output.Emit), a group table (Persist, the compacted topic
//     "<group>-table", read and written by the current record's key), a
//     loop topic (Loop, to reach other keys of its own table), and reads of
//     other groups' tables (Join by the current key, co-partitioned;
//     Lookup by any key). A Batcher (Batch) merges the writes of many
//     records to an external store.
//   - A Handler sees one record through a Context (key, headers, position)
//     and queues its outputs there. Returning nil commits the record with
//     its outputs; an error discards them and hands the record to the
//     failure policy.
//   - Failure policy: an error marked Transient is retried in place with
//     backoff (RetryBackoff), then, with WithRetryTopics, through retry
//     topics handled by a companion group "<group>-retry"; an error marked
//     Outage pauses the partition until the dependency answers. Any other
//     error (Reject names its reason) sends the record to the dead-letter
//     topic as a deadletter.Envelope, or stops the group under the Stop
//     policy (OnFailure). One function decides for every record, whoever
//     handles it (the record handler, a Batcher, the retry group).
//   - Time (docs/time.md): a stream's record time (Stream.TimedBy), stream
//     time per partition and wall-clock time (Context.Now). Aggregate
//     keeps windowed aggregates over record time (tumbling, hopping,
//     session, with grace); Timer schedules callbacks at a stream or wall-clock time.
//     Their state is the framework's: local stores per partition,
//     changelogged to topics the framework declares, written with the
//     callback's outputs and rebuilt when a process takes a partition.
//   - Validate checks the declaration (producers, co-partitioning, keys);
//     Describe prints it (text, Mermaid, DOT, JSON); EnsureTopics creates
//     its topics.
//   - Build ends the declaration and returns the sealed Plan, which the
//     Runner runs and lag queries (Plan.Lag) read.
//   - A Runner (NewRunner, from the Plan) runs a set of groups in this
//     process: it commits a partition's offsets in order, restarts a group
//     after a recoverable error, and reports through Hooks (package topology/promhooks wires
//     them to Prometheus). A View serves a group table from any process.
//   - Package topology/topologytest drives a whole topology in a unit test
//     without a broker, through the very callbacks the Runner runs.
package topology
