package topology

import (
	"encoding/json"
	"fmt"
)

// SASL mechanisms of Kafka.SASL.
const (
	// SCRAMSHA256 is SASL/SCRAM with SHA-256.
	SCRAMSHA256 = "SCRAM-SHA-256"
	// SCRAMSHA512 is SASL/SCRAM with SHA-512.
	SCRAMSHA512 = "SCRAM-SHA-512"
)

// SASL are the credentials a client logs in to Kafka with. The zero value
// logs in with none.
type SASL struct {
	// Mechanism is SCRAMSHA256 or SCRAMSHA512; empty: no SASL.
	Mechanism string
	// User and Password are the SCRAM credentials.
	User     string
	Password string
}

// String describes s without its password, so that printing a Kafka
// configuration (fmt's %v, slog's text handler) never shows it.
func (s SASL) String() string {
	if s.Password == "" {
		return fmt.Sprintf("{Mechanism:%s User:%s}", s.Mechanism, s.User)
	}
	return fmt.Sprintf("{Mechanism:%s User:%s Password:(redacted)}", s.Mechanism, s.User)
}

// MarshalJSON is String for JSON (slog's JSON handler, reports): the
// password is never written.
func (s SASL) MarshalJSON() ([]byte, error) {
	out := struct {
		Mechanism, User string
		Password        string `json:",omitempty"`
	}{s.Mechanism, s.User, ""}
	if s.Password != "" {
		out.Password = "(redacted)"
	}
	return json.Marshal(out)
}

// validate checks that the mechanism is known and has credentials.
func (s SASL) validate() error {
	switch s.Mechanism {
	case "":
		if s.User != "" || s.Password != "" {
			return fmt.Errorf("topology: Kafka SASL credentials without a mechanism (%s or %s)", SCRAMSHA256, SCRAMSHA512)
		}
		return nil
	case SCRAMSHA256, SCRAMSHA512:
		if s.User == "" {
			return fmt.Errorf("topology: Kafka SASL %s without a user", s.Mechanism)
		}
		return nil
	default:
		return fmt.Errorf("topology: unknown Kafka SASL mechanism %q (%s or %s)", s.Mechanism, SCRAMSHA256, SCRAMSHA512)
	}
}
