package topology

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// The SCRAM client that Config installs completes a conversation with a
// SCRAM server for the right password, and fails it for a wrong one.
func TestSCRAMClientTalksToAServer(t *testing.T) {
	for _, mech := range []string{SCRAMSHA256, SCRAMSHA512} {
		hash := scram.SHA256
		if mech == SCRAMSHA512 {
			hash = scram.SHA512
		}
		stored, err := hash.NewClient("watershed", "right-password", "")
		if err != nil {
			t.Fatal(err)
		}
		creds := stored.GetStoredCredentials(scram.KeyFactors{Salt: "salt-of-the-earth", Iters: 4096})
		server, err := hash.NewServer(func(user string) (scram.StoredCredentials, error) { return creds, nil })
		if err != nil {
			t.Fatal(err)
		}
		for password, ok := range map[string]bool{"right-password": true, "wrong-password": false} {
			c := Kafka{Brokers: []string{"b:9092"}, SASL: SASL{Mechanism: mech, User: "watershed", Password: password}}.config()
			if !c.Net.SASL.Enable || c.Net.SASL.User != "watershed" {
				t.Fatalf("%s: SASL settings %+v", mech, c.Net.SASL)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("%s: sarama refuses the configuration: %v", mech, err)
			}
			client := c.Net.SASL.SCRAMClientGeneratorFunc()
			if err := client.Begin("watershed", password, ""); err != nil {
				t.Fatal(err)
			}
			conv := server.NewConversation()
			msg, err := client.Step("")
			for err == nil && !client.Done() {
				var challenge string
				if challenge, err = conv.Step(msg); err != nil {
					break
				}
				msg, err = client.Step(challenge)
			}
			if got := err == nil && conv.Valid(); got != ok {
				t.Errorf("%s with the %s: conversation valid = %v (%v), want %v", mech, password, got, err, ok)
			}
		}
	}
}

func TestSASLValidation(t *testing.T) {
	for _, s := range []SASL{
		{Mechanism: "PLAIN", User: "u", Password: "p"},
		{Mechanism: SCRAMSHA256},
		{User: "u", Password: "p"},
	} {
		if err := (Kafka{Brokers: []string{"b:9092"}, SASL: s}).validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	c := Kafka{Brokers: []string{"b:9092"}, SASL: SASL{Mechanism: SCRAMSHA512, User: "u", Password: "p"}}.config()
	if c.Net.SASL.Mechanism != sarama.SASLTypeSCRAMSHA512 {
		t.Errorf("mechanism %q", c.Net.SASL.Mechanism)
	}
	if (Kafka{Brokers: []string{"b:9092"}}).config().Net.SASL.Enable {
		t.Error("SASL enabled without a mechanism")
	}
}

// Printing or logging a Kafka configuration never shows the SASL password.
func TestSASLPasswordIsNeverPrinted(t *testing.T) {
	const pw = "scram-password-4f7a9c"
	k := Kafka{Brokers: []string{"b:9092"}, SASL: SASL{Mechanism: SCRAMSHA512, User: "edge", Password: pw}}
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("kafka", "kafka", k, "sasl", k.SASL)
	slog.New(slog.NewTextHandler(&b, nil)).Info("kafka", "kafka", k, "sasl", k.SASL)
	for _, out := range []string{fmt.Sprintf("%v %+v %s", k, k, k.SASL), b.String()} {
		if strings.Contains(out, pw) {
			t.Errorf("the password is printed: %s", out)
		}
		if !strings.Contains(out, "edge") || !strings.Contains(out, "(redacted)") {
			t.Errorf("the user or the redaction is missing: %s", out)
		}
	}
}
