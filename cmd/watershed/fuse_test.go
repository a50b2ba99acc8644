package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// `watershed topology --fuse` describes the fused pipeline: the fused
// groups name their stages, and the groups and topic fused away are gone.
// WATERSHED_FUSE sets the same, and a bad value is a usage error.
func TestTopologyFuse(t *testing.T) {
	describe := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := dispatch(context.Background(), append([]string{"topology"}, args...), nil, &out, &errb)
		return out.String() + errb.String(), code
	}
	fused, code := describe("--fuse", "decode,alerts")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, fused)
	}
	for _, want := range []string{"group dedupe: fused stages decode+dedupe", "group device-state: fused stages alerts+device-state", "telemetry.alerts"} {
		if !strings.Contains(fused, want) {
			t.Errorf("fused description lacks %q:\n%s", want, fused)
		}
	}
	for _, gone := range []string{"group decode:", "group alerts:", "telemetry.decoded"} {
		if strings.Contains(fused, gone) {
			t.Errorf("fused description holds %q", gone)
		}
	}
	plain, _ := describe()
	if !strings.Contains(plain, "group decode:") || strings.Contains(plain, "fused") {
		t.Errorf("the default is fused:\n%s", plain)
	}

	t.Setenv("WATERSHED_FUSE", "all")
	if env, _ := describe(); env != fused {
		t.Errorf("WATERSHED_FUSE=all describes\n%s\nnot\n%s", env, fused)
	}
	t.Setenv("WATERSHED_FUSE", "sink")
	if out, code := describe(); code != 2 || !strings.Contains(out, "WATERSHED_FUSE") {
		t.Errorf("WATERSHED_FUSE=sink: exit %d: %s", code, out)
	}
}
