package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/internal/testcert"
	"github.com/watershed-io/watershed/topology"
)

func parseKafkaFlags(t *testing.T, args ...string) (topology.Kafka, error) {
	t.Helper()
	fs := newFlagSet("test", "test", io.Discard)
	var kf kafkaFlags
	kf.register(fs)
	if err := fs.Parse(append([]string{"--brokers", "b:9093"}, args...)); err != nil {
		t.Fatal(err)
	}
	return kf.kafka()
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
