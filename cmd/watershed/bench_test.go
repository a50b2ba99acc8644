package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBenchCatchUpFlags: a catch-up with an unknown fusion is refused as a
// usage error before anything runs.
func TestBenchCatchUpFlags(t *testing.T) {
	var out, errb bytes.Buffer
	code := runBench(context.Background(), registry(), []string{"--catch-up", "--catch-up-fuse", "none,sideways"}, nil, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "--catch-up-fuse") {
		t.Errorf("exit %d, stderr %q; want 2 and the flag named", code, errb.String())
	}
	if out.Len() != 0 {
		t.Errorf("a report was written: %q", out.String())
	}
}

// A catch-up whose fleet sends at no positive rate is refused as a usage
// error: its message times would not advance.
func TestBenchCatchUpFleetRateFlag(t *testing.T) {
	for _, rate := range []string{"0", "-5", "NaN", "+Inf"} {
		var out, errb bytes.Buffer
		code := runBench(context.Background(), registry(), []string{"--catch-up", "--catch-up-fleet-rate", rate}, nil, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "--catch-up-fleet-rate") {
			t.Errorf("rate %s: exit %d, stderr %q; want 2 and the flag named", rate, code, errb.String())
		}
		if out.Len() != 0 {
			t.Errorf("rate %s: a report was written: %q", rate, out.String())
		}
	}
}
