package sinks

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/watershed-io/watershed/codecs/records"
)

// Audit is a line log of what the sink processor was handed and what it
// wrote, for tests that count write calls per message identity instead of
// through the store's primary key, which hides a row written twice (the
// fault test, faults/). Each line is one write to the underlying writer:
//
//	d PARTITION OFFSET ID...   a record of telemetry.normalized delivered
//	w ID...                    rows the store acknowledged in one Write
//
// where ID is DEVICE:TIME_MS:CONTENT_CRC in decimal. A process killed
// mid-write may leave a last line cut short. Audit is safe for concurrent
// use; a nil *Audit records nothing.
type Audit struct {
	mu sync.Mutex
	w  io.Writer
}

// NewAudit returns an Audit writing to w.
func NewAudit(w io.Writer) *Audit { return &Audit{w: w} }

// Delivered records the readings of the record at partition and offset.
func (a *Audit) Delivered(partition int32, offset int64, rows []records.Reading) error {
	if a == nil {
		return nil
	}
	b := make([]byte, 0, 24+len(rows)*32)
	b = append(b, 'd', ' ')
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, offset, 10)
	return a.line(appendIDs(b, rows))
}

// Wrote records the rows of one acknowledged Write.
func (a *Audit) Wrote(rows []records.Reading) error {
	if a == nil {
		return nil
	}
	return a.line(appendIDs(append(make([]byte, 0, 2+len(rows)*32), 'w'), rows))
}

func appendIDs(b []byte, rows []records.Reading) []byte {
	for i := range rows {
		r := &rows[i]
		b = append(b, ' ')
		b = strconv.AppendUint(b, r.DeviceID, 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, r.TimeMs, 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(r.ContentCRC), 10)
	}
	return append(b, '\n')
}

func (a *Audit) line(b []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.w.Write(b); err != nil {
		return fmt.Errorf("sinks: audit: %w", err)
	}
	return nil
}
