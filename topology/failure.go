package topology

import (
	"context"
	"fmt"
	"time"
)

// The failure core: decide is the one place that says what becomes of a
// record whose handling failed, whoever handles it (the record handler, a
// Batcher's partition queue, the retry group). They only carry out its
// verdict.

// origin is where a failing record is handled.
type origin int

const (
	// fromInput is a record of one of the group's input streams (or its
	// loop topic), handled in its callback.
	fromInput origin = iota
	// fromBatch is a record whose rows a Batcher wrote alone after its
	// callback returned.
	fromBatch
	// fromRetryTopic is a record of a retry topic, handled by the
	// companion retry group.
	fromRetryTopic
)

// action is what is done with a failed record.
type action int

const (
	// retryInPlace waits verdict.wait and handles the record again.
	retryInPlace action = iota
	// toRetryTopic moves the record to retry topic verdict.tier.
	toRetryTopic
	// deadLetter sends the record to the dead-letter topic with
	// verdict.reason and verdict.err.
	deadLetter
	// skip leaves a failed record of the dead-letter topic where it is:
	// dead-lettering it again would loop. It commits.
	skip
	// stop fails the group with verdict.err (the Stop policy); the record
	// stays uncommitted.
	stop
)

// failure is one failed attempt at a record.
type failure struct {
	err    error
	origin origin
	// local counts the attempts made at the record in this handling
	// (1-based); attempt is its total, earlier handlings included.
	local, attempt int
	// tier is the retry topic (0-based) a fromRetryTopic record came from.
	tier int
	// deadLetterInput is set when the record was read from the
	// dead-letter topic.
	deadLetterInput bool
	// retryBytes is the size of the record as it would go to a retry
	// topic (key, value and headers).
	retryBytes int
	// what names the record in errors.
	what fmt.Stringer
}

// verdict is decide's answer.
type verdict struct {
	action action
	reason string
	err    error
	// wait is the backoff before retryInPlace.
	wait time.Duration
	// outage is set when retryInPlace waits out a dependency's outage:
	// the attempt does not count against the record's retries.
	outage bool
	// tier is toRetryTopic's retry topic (0-based).
	tier int
}

// decide says what becomes of a record after failure f, from the error, the
// attempts, the group's policy and the record's origin:
//
//   - A transient error is retried in place with the group's backoff. With
//     retry topics, once InPlace attempts failed (at once in the retry
//     group), the record moves to the next retry topic unless the
//     dependency is down (see outage), in which case it waits in place and
//     the attempt does not count; a record whose attempts are spent is
//     dead-lettered as retries_exhausted, or stops the group under Stop.
//   - Any other error stops the group under the Stop policy; otherwise the
//     record is dead-lettered with its reason (see ReasonOf), or skipped
//     when it was read from the dead-letter topic.
//   - A record too large for a retry topic fails permanently as too_large.
//
// It may probe the group's dependency (RetryPolicy.Probe) and tells obs of
// each transient failure.
func (p *Processor) decide(ctx context.Context, state *retryState, obs observer, f failure) verdict {
	main := p
	if p.retryOf != nil {
		main = p.retryOf
	}
	if IsTransient(f.err) {
		obs.retried(p.group)
		if main.retry == nil || (f.origin != fromRetryTopic && f.local < main.retry.policy.InPlace) {
			return verdict{action: retryInPlace, wait: main.backoff.delay(f.local)}
		}
		if main.outage(ctx, state, f.err, f.origin == fromRetryTopic) {
			// The dependency is down: wait in place rather than spend
			// the record's attempts.
			wait := main.backoff.delay(f.local)
			if f.origin == fromRetryTopic {
				wait = main.backoff.delay(2)
			}
			return verdict{action: retryInPlace, wait: wait, outage: true}
		}
		if f.origin == fromRetryTopic && f.attempt >= main.retry.policy.MaxAttempts {
			return main.permanent(f, ReasonRetriesExhausted, fmt.Errorf("after %d attempts: %w", f.attempt, f.err))
		}
		tier := 0
		if f.origin == fromRetryTopic {
			tier = min(f.tier+1, len(main.retry.tiers)-1)
		}
		if f.retryBytes > MaxRecordBytes {
			return main.permanent(f, ReasonTooLarge, fmt.Errorf("a retry record of %d bytes exceeds %d: %w", f.retryBytes, MaxRecordBytes, f.err))
		}
		return verdict{action: toRetryTopic, tier: tier}
	}
	return main.permanent(f, ReasonOf(f.err), f.err)
}

// permanent is the verdict on a record that cannot succeed: stop under the
// Stop policy, else a dead letter (a skip for a dead letter itself).
func (p *Processor) permanent(f failure, reason string, err error) verdict {
	if p.policy == Stop {
		return verdict{action: stop, err: fmt.Errorf("topology: %s (%w): %w", f.what, ErrStopPolicy, err)}
	}
	if f.deadLetterInput {
		return verdict{action: skip, reason: reason, err: err}
	}
	return verdict{action: deadLetter, reason: reason, err: err}
}
