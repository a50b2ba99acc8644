// Package testinfra gives integration tests the real Apache Kafka and Apache
// Cassandra services that `make integration` starts (scripts/infra/infra.sh),
// plus helpers for unique names, topics, keyspaces and waiting.
//
// The services are found through the environment:
//
//	WATERSHED_KAFKA_BROKERS=127.0.0.1:9092      (comma-separated)
//	WATERSHED_CASSANDRA_HOSTS=127.0.0.1:9042    (comma-separated)
//
//	WATERSHED_CASSANDRA_USER=cassandra          (the node requires a login)
//	WATERSHED_CASSANDRA_PASSWORD=cassandra
//	WATERSHED_TEST_KAFKA_SASL_BROKERS=127.0.0.1:9094  (the SASL/SCRAM listener)
//	WATERSHED_TEST_KAFKA_SCRAM_USER, WATERSHED_TEST_KAFKA_SCRAM_PASSWORD
//
// When a variable is missing, Kafka and Cassandra fail the test instead of
// skipping it, so a run without services can never pass for a run with them.
// Integration tests carry the `integration` build tag, which `make unit`
// does not set, so they are not even compiled there.
package testinfra

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode"
)

// Environment variables read by Kafka and Cassandra; `scripts/infra/infra.sh env`
// prints them.
const (
	EnvKafkaBrokers   = "WATERSHED_KAFKA_BROKERS"
	EnvCassandraHosts = "WATERSHED_CASSANDRA_HOSTS"
)

// Kafka returns the addresses of the real Kafka brokers, from
// WATERSHED_KAFKA_BROKERS. It fails the test when the variable is unset or
// empty.
func Kafka(t testing.TB) []string {
	t.Helper()
	return addrsFromEnv(t, EnvKafkaBrokers, "a real Apache Kafka broker")
}

// Cassandra returns the addresses ("host:port") of the real Cassandra nodes,
// from WATERSHED_CASSANDRA_HOSTS. It fails the test when the variable is
// unset or empty.
func Cassandra(t testing.TB) []string {
	t.Helper()
	return addrsFromEnv(t, EnvCassandraHosts, "a real Apache Cassandra node")
}

// addrsFromEnv splits the comma-separated list in the variable name, failing
// t with instructions when there is none.
func addrsFromEnv(t testing.TB, name, what string) []string {
	t.Helper()
	var addrs []string
	for _, a := range strings.Split(os.Getenv(name), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		t.Fatalf("%s is not set: this test needs %s. Run it with `make integration`, "+
			"which starts the services (scripts/infra/infra.sh start) and sets %s; "+
			"or run `make infra-up` and export the lines of `scripts/infra/infra.sh env`.",
			name, what, name)
	}
	return addrs
}

// UniqueName returns a name that starts with prefix, carries the test's name
// and ends in random hex, made only of lower-case letters, digits and
// underscores, and at most maxLen bytes long (the random part is always
// kept). It is valid as a Kafka topic, a consumer group id and, when prefix
// starts with a letter and maxLen is at most 48, a Cassandra keyspace or
// table name.
func UniqueName(t testing.TB, prefix string, maxLen int) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testinfra: random name: %v", err)
	}
	suffix := "_" + hex.EncodeToString(b[:])
	base := sanitize(prefix + "_" + t.Name())
	if room := maxLen - len(suffix); len(base) > room {
		if room < 1 {
			t.Fatalf("testinfra: maxLen %d leaves no room for a name", maxLen)
		}
		base = strings.TrimRight(base[:room], "_")
	}
	return base + suffix
}

// sanitize lower-cases s and turns every run of other characters than
// letters and digits into one underscore.
func sanitize(s string) string {
	var sb strings.Builder
	underscore := false
	for _, r := range strings.ToLower(s) {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			sb.WriteRune(r)
			underscore = false
			continue
		}
		if !underscore {
			sb.WriteByte('_')
			underscore = true
		}
	}
	return strings.Trim(sb.String(), "_")
}

// TopicName returns a unique Kafka topic name for the test.
func TopicName(t testing.TB) string {
	t.Helper()
	return UniqueName(t, "t", 120)
}

// GroupName returns a unique Kafka consumer group id for the test.
func GroupName(t testing.TB) string {
	t.Helper()
	return UniqueName(t, "g", 120)
}

// KeyspaceName returns a unique Cassandra keyspace name for the test
// (Cassandra allows 48 characters).
func KeyspaceName(t testing.TB) string {
	t.Helper()
	return UniqueName(t, "ks", 48)
}

// Eventually calls cond every interval until it returns nil, and fails the
// test with cond's last error when timeout passes first.
func Eventually(t testing.TB, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	if err := WaitFor(timeout, interval, cond); err != nil {
		t.Fatal(err)
	}
}

// WaitFor calls cond every interval until it returns nil, and returns an
// error wrapping cond's last error when timeout passes first. cond is called
// at least once.
func WaitFor(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	attempts := 0
	for {
		attempts++
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().Add(interval).After(deadline) {
			return fmt.Errorf("still failing after %s (%d attempts): %w", timeout, attempts, err)
		}
		time.Sleep(interval)
	}
}
