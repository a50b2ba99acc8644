package topology

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/IBM/sarama"
)

// Failures count in a row when they come soon after a start and read the
// same but for their digits; a slow one, another text, or brokers that
// cannot be reached start over.
func TestRestartStreak(t *testing.T) {
	var s restartStreak
	noDir := func(p int) error {
		return fmt.Errorf("error setting up (partition=%d): open tables/g/t.%d: %w", p, p, syscall.ENOTDIR)
	}
	for i, want := range []int{1, 2, 3} {
		if got := s.fail(noDir(i), true); got != want {
			t.Fatalf("failure %d counted %d in a row, want %d", i, got, want)
		}
	}
	if got := s.fail(errors.New("codec mismatch"), true); got != 1 {
		t.Errorf("another text counted %d in a row, want 1", got)
	}
	if got := s.fail(errors.New("codec mismatch"), false); got != 0 {
		t.Errorf("a failure after a long run counted %d, want 0", got)
	}
	s.fail(noDir(0), true)
	for _, err := range []error{
		fmt.Errorf("Error creating the kafka client: %v", sarama.ErrOutOfBrokers),
		fmt.Errorf("topology: processor g: %w", fmt.Errorf("Error creating topic manager: %v", fmt.Errorf("cannot connect to broker 127.0.0.1:19393: %v", io.EOF))),
		fmt.Errorf("dial: %w", syscall.ECONNREFUSED),
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route to host")},
		fmt.Errorf("could not commit message with key 'k': %v", fmt.Errorf("%w the partition was revoked while retrying: n/3@89: outage", errAbandoned)),
	} {
		if got := s.fail(err, true); got != 0 {
			t.Errorf("brokers away or a rebalance (%v) counted %d, want 0", err, got)
		}
	}
	if got := s.fail(noDir(0), true); got != 1 {
		t.Errorf("after the brokers came back the count went on at %d, want 1", got)
	}
}

// A local error wrapped intact is not taken for the brokers' absence
// (syscall.Errno satisfies net.Error).
func TestBrokersAwayIsNotEveryErrno(t *testing.T) {
	for _, err := range []error{fmt.Errorf("open: %w", syscall.ENOSPC), fmt.Errorf("open: %w", syscall.EACCES)} {
		if brokersAway(err) {
			t.Errorf("brokersAway(%v) = true", err)
		}
	}
}
