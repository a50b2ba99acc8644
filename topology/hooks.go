package topology

import "time"

// Hook is a value given to a Runner through RunnerOptions.Hooks that
// implements one or more of the Hook* interfaces below; the Runner calls
// each one it implements. This keeps the framework free of any metrics
// library: package topology/promhooks wires the hooks to Prometheus.
//
// Hooks are called from the processors' goroutines, concurrently: they must
// be safe for concurrent use and quick.
type Hook any

// HookRecordConsumed is called for every input record a group handles.
type HookRecordConsumed interface {
	OnRecordConsumed(group, topic string)
}

// HookRecordsProduced is called when a group's handled record emitted n
// records to topic (the loop topic included).
type HookRecordsProduced interface {
	OnRecordsProduced(group, topic string, n int)
}

// HookDeadLettered is called for every record a group sends to the
// dead-letter topic, with its reason.
type HookDeadLettered interface {
	OnDeadLettered(group, reason string)
}

// HookRetried is called for every retry of a record that failed
// transiently.
type HookRetried interface {
	OnRetried(group string)
}

// HookSkipped is called for a record read from the dead-letter topic whose
// processing failed: it stays there, not dead-lettered again, with its
// reason; and for a replayed record meant for another group.
type HookSkipped interface {
	OnSkipped(group, reason string)
}

// HookRecordProcessed is called with the time a group took to handle one
// input record, retries included.
type HookRecordProcessed interface {
	OnRecordProcessed(group string, d time.Duration)
}

// HookBatchWritten is called for every write of a Batcher: the input
// records and the rows it held.
type HookBatchWritten interface {
	OnBatchWritten(group string, records, rows int)
}

// HookDeadLetterTruncated is called for a dead-letter envelope cut down to
// fit MaxDeadLetterBytes.
type HookDeadLetterTruncated interface {
	OnDeadLetterTruncated(group string)
}

// HookGroupStarted is called once when the Runner starts running a group,
// before any restart (so that a restart counter shows 0).
type HookGroupStarted interface {
	OnGroupStarted(group string)
}

// HookGroupRestarted is called when the Runner decided to restart a
// group's processor after a recoverable error.
type HookGroupRestarted interface {
	OnGroupRestarted(group string)
}

// observer receives what the callbacks do. The zero observer records
// nothing.
type observer interface {
	consumed(group, topic string)
	produced(group, topic string, n int)
	deadLettered(group, reason string)
	retried(group string)
	batchWritten(group string, records, rows int)
	skipped(group, reason string)
	processed(group string, d time.Duration)
	deadLetterTruncated(group string)
}

type nopObserver struct{}

func (nopObserver) consumed(string, string)         {}
func (nopObserver) produced(string, string, int)    {}
func (nopObserver) deadLettered(string, string)     {}
func (nopObserver) retried(string)                  {}
func (nopObserver) batchWritten(string, int, int)   {}
func (nopObserver) skipped(string, string)          {}
func (nopObserver) processed(string, time.Duration) {}
func (nopObserver) deadLetterTruncated(string)      {}

// hookSet is the Runner's hooks sorted by interface, so that a call
// reaches only the hooks that take it.
type hookSet struct {
	consumedHooks  []HookRecordConsumed
	producedHooks  []HookRecordsProduced
	deadHooks      []HookDeadLettered
	retriedHooks   []HookRetried
	skippedHooks   []HookSkipped
	processedHooks []HookRecordProcessed
	batchHooks     []HookBatchWritten
	truncatedHooks []HookDeadLetterTruncated
	startedHooks   []HookGroupStarted
	restartedHooks []HookGroupRestarted
}

// collect appends h to out when it implements H.
func collect[H any](out []H, h Hook) []H {
	if x, ok := h.(H); ok {
		return append(out, x)
	}
	return out
}

func newHookSet(hooks []Hook) *hookSet {
	s := &hookSet{}
	for _, h := range hooks {
		s.consumedHooks = collect(s.consumedHooks, h)
		s.producedHooks = collect(s.producedHooks, h)
		s.deadHooks = collect(s.deadHooks, h)
		s.retriedHooks = collect(s.retriedHooks, h)
		s.skippedHooks = collect(s.skippedHooks, h)
		s.processedHooks = collect(s.processedHooks, h)
		s.batchHooks = collect(s.batchHooks, h)
		s.truncatedHooks = collect(s.truncatedHooks, h)
		s.startedHooks = collect(s.startedHooks, h)
		s.restartedHooks = collect(s.restartedHooks, h)
	}
	return s
}

func (s *hookSet) consumed(group, topic string) {
	for _, h := range s.consumedHooks {
		h.OnRecordConsumed(group, topic)
	}
}

func (s *hookSet) produced(group, topic string, n int) {
	for _, h := range s.producedHooks {
		h.OnRecordsProduced(group, topic, n)
	}
}

func (s *hookSet) deadLettered(group, reason string) {
	for _, h := range s.deadHooks {
		h.OnDeadLettered(group, reason)
	}
}

func (s *hookSet) retried(group string) {
	for _, h := range s.retriedHooks {
		h.OnRetried(group)
	}
}

func (s *hookSet) batchWritten(group string, records, rows int) {
	for _, h := range s.batchHooks {
		h.OnBatchWritten(group, records, rows)
	}
}

func (s *hookSet) skipped(group, reason string) {
	for _, h := range s.skippedHooks {
		h.OnSkipped(group, reason)
	}
}

func (s *hookSet) processed(group string, d time.Duration) {
	for _, h := range s.processedHooks {
		h.OnRecordProcessed(group, d)
	}
}

func (s *hookSet) deadLetterTruncated(group string) {
	for _, h := range s.truncatedHooks {
		h.OnDeadLetterTruncated(group)
	}
}

func (s *hookSet) groupStarted(group string) {
	for _, h := range s.startedHooks {
		h.OnGroupStarted(group)
	}
}

func (s *hookSet) groupRestarted(group string) {
	for _, h := range s.restartedHooks {
		h.OnGroupRestarted(group)
	}
}
