package testinfra

import (
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTB records Fatalf instead of failing the real test, and stops the
// calling goroutine the way testing.T.FailNow does.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	fatals []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Name() string { return "TestFake/sub case" }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

// runFake runs fn with a fakeTB on its own goroutine (Fatalf ends it) and
// returns the recorded fatal messages.
func runFake(fn func(tb testing.TB)) []string {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.fatals
}

func TestServiceAddressesFromEnv(t *testing.T) {
	t.Setenv(EnvKafkaBrokers, " 127.0.0.1:19092, 127.0.0.2:19092 ,")
	t.Setenv(EnvCassandraHosts, "127.0.0.1:19042")
	if got := Kafka(t); strings.Join(got, "|") != "127.0.0.1:19092|127.0.0.2:19092" {
		t.Errorf("Kafka = %q", got)
	}
	if got := Cassandra(t); len(got) != 1 || got[0] != "127.0.0.1:19042" {
		t.Errorf("Cassandra = %q", got)
	}
}

// Without the environment the helpers must fail (not skip) and say how to
// run the test.
func TestMissingEnvFailsWithInstructions(t *testing.T) {
	t.Setenv(EnvKafkaBrokers, "")
	t.Setenv(EnvCassandraHosts, " , ")
	for name, get := range map[string]func(testing.TB) []string{
		EnvKafkaBrokers:   Kafka,
		EnvCassandraHosts: Cassandra,
	} {
		var got []string
		fatals := runFake(func(tb testing.TB) { got = get(tb) })
		if len(fatals) != 1 {
			t.Fatalf("%s unset: %d fatal messages, want 1 (returned %q)", name, len(fatals), got)
		}
		for _, want := range []string{name + " is not set", "make integration"} {
			if !strings.Contains(fatals[0], want) {
				t.Errorf("%s unset: message %q lacks %q", name, fatals[0], want)
			}
		}
	}
}

func TestUniqueNames(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z][a-z0-9_]*_[0-9a-f]{8}$`)
	seen := map[string]bool{}
	for range 50 {
		for _, n := range []string{TopicName(t), GroupName(t), KeyspaceName(t)} {
			if !valid.MatchString(n) {
				t.Errorf("name %q is not of the form %s", n, valid)
			}
			if seen[n] {
				t.Errorf("name %q given twice", n)
			}
			seen[n] = true
		}
	}
	if ks := KeyspaceName(t); len(ks) > 48 {
		t.Errorf("keyspace %q is %d bytes, Cassandra allows 48", ks, len(ks))
	}
	fatals := runFake(func(tb testing.TB) {
		n := UniqueName(tb, "ks", 20)
		if len(n) > 20 || !strings.HasPrefix(n, "ks_testfake_") {
			t.Errorf("UniqueName(ks, 20) = %q", n)
		}
	})
	if len(fatals) != 0 {
		t.Errorf("UniqueName failed: %q", fatals)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"t_TestA/b c":   "t_testa_b_c",
		"__x--y..z__":   "x_y_z",
		"ks_Test/ünï/9": "ks_test_n_9",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	if err := WaitFor(time.Second, time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Errorf("WaitFor = %v after %d calls, want nil after 3", err, calls)
	}
	sentinel := errors.New("never")
	err := WaitFor(30*time.Millisecond, 5*time.Millisecond, func() error { return sentinel })
	if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), "still failing after 30ms") {
		t.Errorf("WaitFor on a failing condition = %v", err)
	}
}
