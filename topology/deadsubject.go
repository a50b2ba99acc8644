package topology

import "time"

// The Stage of a dead letter whose subject is not a record but a timer
// that failed as it fired, or a window whose OnClose failed, is the
// group's with one of these suffixes. Its Topic is the state changelog
// ("<group>-timers", "<group>-<name>-windows"), its Key the timer's or
// the window's key, its Value the timer's value or the encoded aggregate,
// its Partition and Offset the record that fired or closed it. It cannot
// be replayed into a topic (package dlq refuses it): the timer is kept as
// fired, the window as closed.
const (
	StageSuffixTimer  = "/timer"
	StageSuffixWindow = "/window"
)

// deadSubject is what a dead letter is of when it is not the record.
type deadSubject struct {
	stage, topic, key string
}

// deadLetterOf queues the dead letter of subject s, failed in the current
// record's callback.
func (c *Context) deadLetterOf(s *deadSubject, reason string, err error, value []byte) {
	c.dead = append(c.dead, pendingDead{reason: reason, err: err, value: value, subject: s})
}

// envelope encodes dead letter d: env's for the record, the subject's own
// otherwise.
func (c *Context) envelope(env envelopeFactory, d pendingDead) ([]byte, error) {
	if d.subject == nil {
		return env(c, d.reason, d.err, d.value)
	}
	rec := c.info(time.Time{})
	rec.group += d.subject.stage
	rec.topic, rec.key, rec.headers, rec.attempt = d.subject.topic, d.subject.key, nil, 1
	return c.encodeEnvelope(&rec, d.reason, d.err, d.value)
}

// deadLetterKey returns the Kafka key of dead letter d.
func (d pendingDead) deadLetterKey(c *Context) string {
	if d.subject != nil {
		return deadLetterKey(d.subject.key)
	}
	return deadLetterKey(c.g.Key())
}
