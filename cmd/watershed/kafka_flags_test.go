package main

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/internal/testcert"
	"github.com/watershed-io/watershed/topology"
)

// parseWith registers flags on a fresh flag set and parses args.
func parseWith(t *testing.T, register func(*flag.FlagSet), args ...string) {
	t.Helper()
	fs := newFlagSet("test", "test", io.Discard)
	register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
}

func parseKafkaFlags(t *testing.T, args ...string) (topology.Kafka, error) {
	t.Helper()
	var kf kafkaFlags
	parseWith(t, kf.register, append([]string{"--brokers", "b:9093"}, args...)...)
	return kf.kafka(nil)
}

func TestKafkaSecurityFlags(t *testing.T) {
	for _, name := range []string{"WATERSHED_KAFKA_TLS", "WATERSHED_KAFKA_TLS_CA", "WATERSHED_KAFKA_SASL_MECHANISM", "WATERSHED_KAFKA_SASL_USER", "WATERSHED_KAFKA_SASL_PASSWORD"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	k, err := parseKafkaFlags(t)
	if err != nil || k.TLS != nil || k.SASL != (topology.SASL{}) {
		t.Fatalf("no security flags: %+v, %v; want plain", k, err)
	}
	dir := t.TempDir()
	pair := testcert.Write(t, dir, "ca")
	t.Setenv("WATERSHED_KAFKA_SASL_PASSWORD", "from-the-environment")
	k, err = parseKafkaFlags(t, "--kafka-tls-ca", pair.CertFile, "--kafka-sasl-user", "edge", "--kafka-sasl-mechanism", "SCRAM-SHA-256")
	if err != nil {
		t.Fatal(err)
	}
	if k.TLS == nil || k.TLS.RootCAs == nil || k.TLS.MinVersion == 0 {
		t.Errorf("TLS %+v, want the CA's pool and a minimum version", k.TLS)
	}
	if want := (topology.SASL{Mechanism: topology.SCRAMSHA256, User: "edge", Password: "from-the-environment"}); k.SASL != want {
		t.Errorf("SASL %+v, want %+v", k.SASL, want)
	}
	os.Unsetenv("WATERSHED_KAFKA_SASL_PASSWORD")
	if k, err := parseKafkaFlags(t, "--kafka-tls"); err != nil || k.TLS == nil || k.TLS.RootCAs != nil {
		t.Errorf("--kafka-tls: %+v, %v; want TLS with the system's CAs", k.TLS, err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--kafka-sasl-user", "u", "--kafka-sasl-mechanism", "PLAIN"}, "kafka-sasl-mechanism"},
		{[]string{"--kafka-sasl-password", "p"}, "without --kafka-sasl-user"},
		{[]string{"--kafka-tls-ca", notPEM}, "no PEM"},
		{[]string{"--kafka-tls-ca", filepath.Join(dir, "missing.pem")}, "kafka-tls-ca"},
	} {
		if _, err := parseKafkaFlags(t, c.args...); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%v: %v, want an error mentioning %q", c.args, err, c.says)
		}
	}
}

// logTo returns a logger writing JSON lines to b.
func logTo(b *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, nil))
}

// Credentials for Kafka or Cassandra without TLS draw a warning at the
// start; with TLS, none. A password given as a flag value draws one too.
func TestCredentialsWithoutTLSAreWarnedAbout(t *testing.T) {
	for _, name := range []string{"WATERSHED_KAFKA_TLS", "WATERSHED_KAFKA_TLS_CA", "WATERSHED_KAFKA_SASL_MECHANISM", "WATERSHED_KAFKA_SASL_USER",
		"WATERSHED_KAFKA_SASL_PASSWORD", "WATERSHED_KAFKA_SASL_PASSWORD_FILE", "WATERSHED_CASSANDRA_USER", "WATERSHED_CASSANDRA_PASSWORD",
		"WATERSHED_CASSANDRA_PASSWORD_FILE", "WATERSHED_CASSANDRA_TLS_CA", "WATERSHED_CASSANDRA_HOSTS"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	dir := t.TempDir()
	ca := testcert.Write(t, dir, "ca").CertFile
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kafka := func(args ...string) (topology.Kafka, string) {
		t.Helper()
		var kf kafkaFlags
		parseWith(t, kf.register, append([]string{"--brokers", "b:9093"}, args...)...)
		var log bytes.Buffer
		k, err := kf.kafka(logTo(&log))
		if err != nil {
			t.Fatal(err)
		}
		return k, log.String()
	}
	k, log := kafka("--kafka-sasl-user", "u", "--kafka-sasl-password-file", pwFile)
	if k.SASL.Password != "from-a-file" || !strings.Contains(log, "Kafka credentials are sent without TLS") {
		t.Errorf("SASL without TLS: password %q, log %q; want the file's password and a warning", k.SASL.Password, log)
	}
	if strings.Contains(log, "from-a-file") || strings.Contains(log, "command line") {
		t.Errorf("log %q: holds the password or warns of a flag value", log)
	}
	if _, log := kafka("--kafka-sasl-user", "u", "--kafka-sasl-password-file", pwFile, "--kafka-tls-ca", ca); log != "" {
		t.Errorf("SASL with TLS: log %q, want nothing", log)
	}
	if _, log := kafka(); log != "" {
		t.Errorf("no credentials: log %q, want nothing", log)
	}
	k, log = kafka("--kafka-sasl-user", "u", "--kafka-sasl-password", "on-the-line", "--kafka-tls")
	if k.SASL.Password != "on-the-line" || !strings.Contains(log, "command line") || strings.Contains(log, "on-the-line") {
		t.Errorf("password as a flag value: %q, log %q; want a warning without the password", k.SASL.Password, log)
	}

	cassandra := func(args ...string) string {
		t.Helper()
		var cf cassandraFlags
		parseWith(t, cf.register, append([]string{"--cassandra-hosts", "c:9042"}, args...)...)
		var log bytes.Buffer
		o, err := cf.options(logTo(&log))
		if err != nil {
			t.Fatal(err)
		}
		if o.Username != "" && o.Password != "from-a-file" {
			t.Errorf("Cassandra password %q, want the file's", o.Password)
		}
		return log.String()
	}
	if log := cassandra("--cassandra-user", "u", "--cassandra-password-file", pwFile); !strings.Contains(log, "Cassandra password is sent without TLS") {
		t.Errorf("Cassandra login without TLS: log %q, want a warning", log)
	}
	if log := cassandra("--cassandra-user", "u", "--cassandra-password-file", pwFile, "--cassandra-tls-ca", ca); log != "" {
		t.Errorf("Cassandra login with TLS: log %q, want nothing", log)
	}
	if log := cassandra(); log != "" {
		t.Errorf("no login: log %q, want nothing", log)
	}
}

// A secret comes from the flag, its file, the environment or the
// environment's file, in that order; two sources at one level are an
// error, and errors never hold the secret.
func TestSecretSources(t *testing.T) {
	t.Setenv("WATERSHED_TEST_SECRET", "")
	t.Setenv("WATERSHED_TEST_SECRET_FILE", "")
	os.Unsetenv("WATERSHED_TEST_SECRET")
	os.Unsetenv("WATERSHED_TEST_SECRET_FILE")
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, empty, twoLines := file("good", "from-file\r\n"), file("empty", "\n"), file("two", "line-one\nline-two\n")
	resolve := func(def string, args ...string) (string, string, error) {
		var s *secretFlag
		parseWith(t, func(fs *flag.FlagSet) {
			s = newSecretFlag(fs, "test-secret", "WATERSHED_TEST_SECRET", "test secret", "a secret", def)
		}, args...)
		var log bytes.Buffer
		v, err := s.resolve(logTo(&log))
		return v, log.String(), err
	}
	if v, _, err := resolve("the-default"); v != "the-default" || err != nil {
		t.Errorf("nothing set: %q, %v; want the default", v, err)
	}
	t.Setenv("WATERSHED_TEST_SECRET_FILE", good)
	if v, _, err := resolve(""); v != "from-file" || err != nil {
		t.Errorf("env file: %q, %v", v, err)
	}
	t.Setenv("WATERSHED_TEST_SECRET", "from-env")
	if _, _, err := resolve(""); err == nil || strings.Contains(err.Error(), "from-") {
		t.Errorf("env and env file: %v, want an error without the secret", err)
	}
	os.Unsetenv("WATERSHED_TEST_SECRET_FILE")
	if v, log, err := resolve(""); v != "from-env" || err != nil || log != "" {
		t.Errorf("env: %q, %v, log %q", v, err, log)
	}
	if v, _, err := resolve("", "--test-secret-file", good); v != "from-file" || err != nil {
		t.Errorf("file flag over env: %q, %v", v, err)
	}
	if v, log, err := resolve("", "--test-secret", "from-flag"); v != "from-flag" || err != nil || !strings.Contains(log, "command line") || strings.Contains(log, "from-flag") {
		t.Errorf("flag over env: %q, %v, log %q; want a warning without the secret", v, err, log)
	}
	if _, _, err := resolve("", "--test-secret", "x", "--test-secret-file", good); err == nil {
		t.Error("flag and file flag: no error")
	}
	for _, p := range []string{empty, twoLines, filepath.Join(dir, "missing")} {
		if _, _, err := resolve("", "--test-secret-file", p); err == nil || strings.Contains(err.Error(), "line-") {
			t.Errorf("file %s: %v, want an error without the content", p, err)
		}
	}
}
