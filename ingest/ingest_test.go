package ingest

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestReceivedAt(t *testing.T) {
	lookup := func(v []byte) func(string) []byte {
		return func(k string) []byte {
			if k == HeaderReceivedMs {
				return v
			}
			return nil
		}
	}
	at, err := ReceivedAt(lookup([]byte("1773500000123")))
	if err != nil || !at.Equal(time.UnixMilli(1773500000123)) || at.Location() != time.UTC {
		t.Errorf("ReceivedAt = %v, %v", at, err)
	}
	if _, err := ReceivedAt(lookup(nil)); !errors.Is(err, ErrNoReceivedTime) {
		t.Errorf("absent header: %v", err)
	}
	for _, bad := range []string{"", "-1", "+5", " 5", "5 ", "1e3", "0x10", "99999999999999999999", "9223372036854775808"} {
		if _, err := ReceivedAt(lookup([]byte(bad))); !errors.Is(err, ErrBadReceivedTime) {
			t.Errorf("ReceivedAt(%q) = %v, want ErrBadReceivedTime", bad, err)
		}
	}
	now := time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)
	if got := string(AppendReceivedMs(nil, now)); got != strconv.FormatInt(now.UnixMilli(), 10) {
		t.Errorf("AppendReceivedMs = %s", got)
	}
}
