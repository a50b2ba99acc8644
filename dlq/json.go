package dlq

import (
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"
)

// ItemJSON is the JSON form of one replay outcome (`watershed dlq replay
// --json`, the console).
type ItemJSON struct {
	Action       string    `json:"action"`
	DLQPartition int32     `json:"dlq_partition"`
	DLQOffset    int64     `json:"dlq_offset"`
	Stage        string    `json:"stage"`
	Reason       string    `json:"reason"`
	Key          string    `json:"key"`
	Topic        string    `json:"topic"`
	Attempts     int       `json:"attempts"`
	Target       string    `json:"target,omitempty"`
	ReplayedAt   time.Time `json:"replayed_at,omitzero"`
	Detail       string    `json:"detail,omitempty"`
}

// JSON returns the JSON form of the outcome.
func (it *ReplayItem) JSON() ItemJSON {
	e := &it.Record.Envelope
	return ItemJSON{
		Action: string(it.Action), DLQPartition: it.Record.Partition, DLQOffset: it.Record.Offset,
		Stage: e.Stage, Reason: e.Reason, Key: Printable(e.Key), Topic: e.Topic, Attempts: e.Attempts,
		Target: it.Target, ReplayedAt: it.ReplayedAt, Detail: it.Detail,
	}
}

// Printable returns b as text when it is printable UTF-8, else as hex
// prefixed with 0x.
func Printable(b []byte) string {
	if utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return string(b)
	}
	return "0x" + hex.EncodeToString(b)
}
