package topology

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"unicode"

	"github.com/IBM/sarama"
)

// restartStreak counts the failures in a row of one group that look alike
// and came soon after the processor started (see RunnerOptions.RestartLimit).
type restartStreak struct {
	last string
	n    int
}

// fail records a failure and returns how many alike ones came in a row:
// err's text, digits aside (the partition, offset or port named differs
// from one start to the next), each within the backoff's Max of a start
// (quick). A slow failure, another text, brokers that cannot be reached, or
// records left uncommitted by a rebalance (another member's doing) start
// the count over.
func (s *restartStreak) fail(err error, quick bool) int {
	if !quick || brokersAway(err) || IsAbandoned(err) || strings.Contains(err.Error(), errAbandoned.Error()) {
		s.last, s.n = "", 0
		return 0
	}
	text := strings.Map(func(r rune) rune {
		if unicode.IsDigit(r) {
			return '#'
		}
		return r
	}, err.Error())
	if text != s.last {
		s.last, s.n = text, 0
	}
	s.n++
	return s.n
}

// brokersAway reports whether err says that the brokers cannot be reached:
// the runner waits for them for as long as it takes, as it does at start.
// goka ends some chains with %v, so their texts are matched too.
func brokersAway(err error) bool {
	// Not net.Error: every syscall.Errno is one, a full disk too.
	var op *net.OpError
	var dns *net.DNSError
	if errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrNotConnected) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &op) || errors.As(err, &dns) {
		return true
	}
	msg := err.Error()
	for _, text := range []string{sarama.ErrOutOfBrokers.Error(), sarama.ErrNotConnected.Error(), syscall.ECONNREFUSED.Error(),
		"cannot connect to broker", "i/o timeout"} {
		if strings.Contains(msg, text) {
			return true
		}
	}
	return false
}
