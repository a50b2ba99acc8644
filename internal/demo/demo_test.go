package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/internal/demo"
	"github.com/watershed-io/watershed/processors"
)

// The whole pipeline on the embedded default, driven by the simulator with
// every fault: what the store, the view and the dead-letter topic hold
// equals the simulator's ground truth.
func TestDemoEndToEnd(t *testing.T) { demoEndToEnd(t, processors.FuseNone) }

// The same with every fusion: decode inside dedupe, alerts inside
// device-state.
func TestDemoEndToEndFused(t *testing.T) { demoEndToEnd(t, processors.FuseAll) }

// A device secret and a view key that are not the demo's defaults.
const (
	plantedSecret = "planted-demo-secret-4e1b"
	plantedKey    = "planted-demo-key-7c9d"
)

func demoEndToEnd(t *testing.T, fuse processors.Fusion) {
	var out bytes.Buffer
	report, err := demo.Run(context.Background(), demo.Options{
		Devices: 30, Rate: 60, Duration: 24 * time.Second, Faults: true, Seed: 7,
		Silence: 8 * time.Second, MessageSpan: 50 * time.Minute,
		IngestAddr: "127.0.0.1:0", ViewAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		DeviceSecret: plantedSecret, ViewKey: plantedKey, Partitions: 4, Out: &out, Fuse: fuse,
	})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	// A secret or key other than the documented defaults is not printed.
	if strings.Contains(out.String(), plantedSecret) || strings.Contains(out.String(), plantedKey) {
		t.Errorf("the demo printed its secret or key:\n%s", out.String())
	}
	js, _ := json.MarshalIndent(report, "", "  ")
	t.Logf("report:\n%s", js)
	if !report.OK {
		t.Fatalf("the pipeline disagrees with the truth: %v", report.Mismatches)
	}
	if report.Truth.Messages == 0 || report.Truth.Duplicates == 0 || report.Truth.Invalid == 0 || report.Truth.PackagesRejected == 0 {
		t.Fatalf("the run did not exercise every outcome: %+v", report.Truth)
	}
	if report.Sink.Messages != report.Truth.Messages || report.View.Messages != report.Truth.Messages ||
		report.View.Duplicates != report.Truth.Duplicates || report.View.Invalid != report.Truth.Invalid ||
		report.View.PackagesRejected != report.Truth.PackagesRejected || report.DeadLetterTopic.DeadLetters != report.Truth.DeadLetters {
		t.Errorf("totals differ: %+v", report)
	}
	// Hourly summaries and silences, compared exactly with the truth
	// (report.OK above): the run closed windows and one device paused.
	tr := report.Time
	if tr == nil {
		t.Fatal("the report does not compare summaries and silences")
	}
	if tr.Windows == 0 || tr.Certain == 0 || tr.Matched != tr.Certain || tr.Stored < tr.Matched {
		t.Errorf("closed windows %d, certain %d, matched %d, stored %d", tr.Windows, tr.Certain, tr.Matched, tr.Stored)
	}
	if tr.TruthSilent == 0 || tr.TruthBack == 0 || tr.Silent < tr.TruthSilent || tr.Back < tr.TruthBack {
		t.Errorf("silences: %d device_silent and %d device_back alerts, truth %d and %d", tr.Silent, tr.Back, tr.TruthSilent, tr.TruthBack)
	}
}
