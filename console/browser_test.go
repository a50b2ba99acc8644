package console_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/watershed-io/watershed/console"
	"github.com/watershed-io/watershed/internal/demo"
	"github.com/watershed-io/watershed/internal/poll"
	"github.com/watershed-io/watershed/simulator"
)

// screenshotDir keeps the browser test's screenshots (gitignored).
const screenshotDir = "../.infra/console"

// readmeShot is the screenshot the README shows; the test writes it when
// WATERSHED_UPDATE_SCREENSHOT=1 (make console-screenshot).
const readmeShot = "../docs/console-topology.png"

// chromium finds the browser: WATERSHED_CHROMIUM, or chromium on the
// PATH (Debian's package, which make tools installs).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WATERSHED_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on the PATH (make tools installs Debian's package)"
	if chromiumRequired() {
		t.Fatal(msg)
	}
	t.Skip(msg + "; under CI=true or WATERSHED_REQUIRE_CHROMIUM=1 (make unit) this fails")
	return ""
}

// chromiumRequired reports whether a missing chromium fails the browser
// test instead of skipping it: in CI, and in make unit, whose tools step
// installs it.
func chromiumRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("WATERSHED_REQUIRE_CHROMIUM") == "1"
}

// make unit sets WATERSHED_REQUIRE_CHROMIUM=1, and then a missing chromium
// is a failure, not a skip.
func TestChromiumRequiredUnderMakeUnit(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv("WATERSHED_REQUIRE_CHROMIUM", "")
	if chromiumRequired() {
		t.Fatal("chromium required with neither CI nor WATERSHED_REQUIRE_CHROMIUM set: a developer's go test would fail")
	}
	t.Setenv("WATERSHED_REQUIRE_CHROMIUM", "1")
	if !chromiumRequired() {
		t.Fatal("WATERSHED_REQUIRE_CHROMIUM=1 does not require chromium")
	}
}

// TestBrowserConsole drives the console in headless Chromium against a
// running demo (embedded broker, every group, the simulator with its
// faults): it logs in, finds every group of the topology on the graph,
// healthy, opens a device and sees its map and readings, and opens the dead
// letters and sees every reason the simulator injected.
func TestBrowserConsole(t *testing.T) {
	exe := chromium(t)
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The demo, without its own simulator: the test runs one, to know
	// what it injected.
	ready := make(chan *demo.Demo, 1)
	done := make(chan error, 1)
	dctx, stopDemo := context.WithCancel(ctx)
	go func() {
		_, err := demo.Run(dctx, demo.Options{
			IngestAddr: "127.0.0.1:0", ViewAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0",
			DataDir: t.TempDir(), DeviceSecret: "browser-test-secret", ViewKey: "browser-test-key",
			Partitions: 4, Logger: slog.New(slog.DiscardHandler), Ready: func(d *demo.Demo) { ready <- d },
		})
		done <- err
	}()
	defer func() {
		stopDemo()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	}()
	var d *demo.Demo
	select {
	case d = <-ready:
	case err := <-done:
		t.Fatalf("demo stopped: %v", err)
	}
	sim, err := simulator.New(simulator.Options{
		IngestURL: d.IngestURL, Secret: []byte("browser-test-secret"), Devices: 8, Rate: 40,
		Duration: 6 * time.Second, Seed: 7, Faults: simulator.DefaultFaultMix(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := poll.Until(ctx, 90*time.Second, 200*time.Millisecond, func() error { return d.Drained(ctx) }); err != nil {
		t.Fatalf("pipeline did not drain: %v", err)
	}
	// The metrics the topology page reads are the ones the processes
	// export.
	resp, err := http.Get(d.OpsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range console.MetricNames() {
		if !strings.Contains(string(page), "\n"+name+"{") {
			t.Errorf("the demo's /metrics has no %s", name)
		}
	}
	var reasons []string
	for r, n := range sim.Truth().DeadLetters {
		if n > 0 {
			reasons = append(reasons, r)
		}
	}
	slices.Sort(reasons)
	if len(reasons) < 3 {
		t.Fatalf("the simulator injected too few faults to check: %v", reasons)
	}
	// Traffic goes on while the browser looks (other devices, no faults),
	// so that the graph shows records flowing.
	live, err := simulator.New(simulator.Options{
		IngestURL: d.IngestURL, Secret: []byte("browser-test-secret"), Devices: 8, Rate: 20,
		Seed: 8, Faults: simulator.NoFaults(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	lctx, stopLive := context.WithCancel(ctx)
	liveDone := make(chan error, 1)
	go func() { liveDone <- live.Run(lctx) }()
	defer func() {
		stopLive()
		if err := <-liveDone; err != nil && lctx.Err() == nil {
			t.Errorf("simulator: %v", err)
		}
	}()
	var groups []string
	for _, g := range d.Pipeline.Topology.Describe().Groups {
		groups = append(groups, g.Group)
	}
	slices.Sort(groups)
	device := strconv.FormatUint(sim.Devices()[0].ID, 10)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.WindowSize(1900, 1100),
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-gpu", true),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to start as root with its sandbox (it needs
		// an unprivileged user namespace to drop into); CI containers
		// run the tests as root. The browser only loads this test's
		// local pages.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// The first run starts the browser, which lives as long as the
	// context of that run: bctx, not a step's.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(screenshotDir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 45*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Errorf("%s: %v (screenshot in %s)", what, err, screenshotDir)
			shot("failed.png")
			t.FailNow()
		}
	}
	// waitJS polls a JavaScript condition in the page.
	waitJS := func(what, expr string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 45*time.Second)
		defer cancel()
		if _, err := chromedp.Run(sctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(40*time.Second), chromedp.WithPollingInterval(250*time.Millisecond))); err != nil {
			t.Errorf("%s: %v (screenshot in %s)", what, err, screenshotDir)
			shot("failed.png")
			t.FailNow()
		}
	}

	// A wrong key is refused, the right one logs in.
	step("open the console", chromedp.Navigate(d.ConsoleURL), chromedp.WaitVisible(chromedp.ID("login-form")))
	step("log in with a wrong key", chromedp.SendKeys(chromedp.ID("key"), "not-the-key"), chromedp.Click(chromedp.ID("login-button")))
	waitJS("the wrong key is refused", `document.getElementById('login-error').textContent.includes('unauthorized')`)
	step("log in", chromedp.SetValue(chromedp.ID("key"), "browser-test-key"), chromedp.Click(chromedp.ID("login-button")))

	// Every group of the topology, on the graph, healthy.
	waitJS("the graph shows every group, healthy", fmt.Sprintf(`(() => {
		const want = %q.split(',');
		const nodes = Array.from(document.querySelectorAll('#graph g[data-group]'));
		const got = nodes.map((n) => n.getAttribute('data-group')).sort();
		return JSON.stringify(got) === JSON.stringify(want) && nodes.every((n) => n.getAttribute('data-health') === 'ok');
	})()`, strings.Join(groups, ",")))
	topics, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#graph g[data-topic]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(d.Pipeline.Topology.Describe().Topics); topics != want {
		t.Errorf("graph shows %d topics, the topology declares %d", topics, want)
	}
	// Rates need two samples: wait for the second poll.
	waitJS("records in per second", `Array.from(document.querySelectorAll('#groups-table tbody tr')).every((r) => r.cells[4].textContent !== '—')`)
	shot("topology.png")
	if os.Getenv("WATERSHED_UPDATE_SCREENSHOT") == "1" {
		b, err := os.ReadFile(filepath.Join(screenshotDir, "topology.png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(readmeShot, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A device: its state, its track on the map, speed and battery.
	step("open a device", chromedp.Click(chromedp.ID("nav-device")), chromedp.WaitVisible(chromedp.ID("device-form")),
		chromedp.SetValue(chromedp.ID("device-id"), device), chromedp.Click(chromedp.ID("device-open")))
	waitJS("the device's state", fmt.Sprintf(`document.getElementById('device-state').textContent.includes(%q)`, device))
	waitJS("the device's track on the map", `(() => {
		const t = document.querySelector('#device-map polyline.track');
		return t !== null && t.getAttribute('points').split(' ').length >= 2 && document.getElementById('map-scale') !== null;
	})()`)
	waitJS("speed and battery over time", `['speed-chart', 'battery-chart'].every((id) => {
		const p = document.querySelector('#' + id + ' polyline.series');
		return p !== null && p.getAttribute('points').split(' ').length >= 2;
	})`)
	waitJS("the device's alerts and history read without errors", `document.getElementById('alerts-error').textContent === ''
		&& document.getElementById('history-error').textContent === '' && document.getElementById('state-error').textContent === ''
		&& document.querySelectorAll('#device-alerts tbody tr').length > 0`)
	shot("device.png")

	// The dead letters: every reason the simulator injected, and a dry run.
	step("open the dead letters", chromedp.Click(chromedp.ID("nav-deadletters")))
	waitJS("every injected reason", fmt.Sprintf(`(() => {
		const got = new Set(Array.from(document.querySelectorAll('#by-reason tr[data-reason]')).map((r) => r.getAttribute('data-reason')));
		return %q.split(',').every((r) => got.has(r)) && document.querySelectorAll('#letters tbody tr').length > 0
			&& document.querySelectorAll('#dlq-chart rect').length > 0;
	})()`, strings.Join(reasons, ",")))
	step("dry run of a replay", chromedp.Click(chromedp.ID("replay-dry")))
	waitJS("the dry run's outcome", `document.getElementById('replay-summary').textContent.startsWith('Dry run:')`)
	shot("deadletters.png")
}
