package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watershed-io/watershed/internal/serve"
)

func TestKeys(t *testing.T) {
	_, hs := newTestServer(t, nil)
	api := hs.URL + Prefix + "api/"
	for _, c := range []struct {
		name, path, key string
		code            int
		want            string
	}{
		{"no key", "session", "", 401, `"unauthorized"`},
		{"wrong key", "session", "not-a-key-of-this-server-at-all", 401, `"unauthorized"`},
		{"full key", "session", fullKey, 200, `"all":true`},
		{"scoped key", "session", scopedKey, 200, `"all":false`},
		{"topology without a key", "topology", "", 401, `"unauthorized"`},
		{"topology with a scoped key", "topology", scopedKey, 403, "scope *"},
		{"dead letters with a scoped key", "deadletters", scopedKey, 403, "scope *"},
		{"replay by GET", "deadletters/replay", fullKey, 404, `"not found"`}, // only POST is routed
		{"device in scope", "devices/7", scopedKey, 200, `"device_id":"7"`},
		{"device out of scope", "devices/8", scopedKey, 404, `"unknown device"`},
		{"unknown device", "devices/9", fullKey, 404, `"unknown device"`},
		{"device without a key", "devices/7", "", 401, `"unauthorized"`},
		{"unknown API path", "nothing", fullKey, 404, `"not found"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := get(t, api+c.path, c.key)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("GET %s: %d %s, want %d with %s", c.path, code, body, c.code, c.want)
			}
			for _, k := range []string{fullKey, scopedKey} {
				if strings.Contains(body, k) {
					t.Errorf("the answer holds a key: %s", body)
				}
			}
		})
	}
	// A replay needs a key before anything else.
	if code, _, body := do(t, http.MethodPost, api+"deadletters/replay", "", "application/json", `{"dry_run":true}`); code != 401 {
		t.Errorf("replay without a key: %d %s", code, body)
	}
	// The page and its assets load without a key (the login is on it).
	for _, p := range []string{"", "static/app.js", "static/style.css"} {
		resp, err := http.Get(hs.URL + Prefix + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: %d, CSP %q", Prefix+p, resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
		}
	}
	if code, body := get(t, hs.URL+Prefix, ""); code != 200 || !strings.Contains(body, `id="login-form"`) {
		t.Errorf("page: %d %s", code, body)
	}
}

func TestBadInput(t *testing.T) {
	_, hs := newTestServer(t, nil)
	api := hs.URL + Prefix + "api/"
	for _, c := range []struct{ path, want string }{
		{"devices/abc", `device id \"abc\": not a device id`},
		{"devices/007", `device id \"007\"`},
		{"devices/18446744073709551616", "not a device id"},
		{"devices/7?window=10s", `window \"10s\": a duration from 1m to 168h`},
		{"devices/7?window=200h", "a duration from 1m to 168h"},
		{"devices/7?color=red", `unknown or repeated parameter \"color\"`},
		{"deadletters?since=yesterday", `since: \"yesterday\" is neither an RFC 3339 time nor a duration`},
		{"deadletters?until=-1h", "until: duration"},
		{"deadletters?since=1h&until=2h", "since must be before until"},
		{"deadletters?limit=0", `limit \"0\": a whole number from 1 to 1000`},
		{"deadletters?limit=x", "a whole number from 1 to 1000"},
		{"deadletters?limit=1&limit=2", `parameter \"limit\" given 2 times`},
		{"deadletters?bogus=1", `unknown parameter \"bogus\" (known: reason, stage, device, since, until, time_field, limit)`},
		{"deadletters?device=x", `device \"x\": not a device id`},
		{"deadletters?reason=Bad!", `reason \"Bad!\": a reason is lower-case letters`},
		{"deadletters?time_field=now", `time_field \"now\": last-failure or timestamp`},
		{"deadletters/stats?buckets=1000", `buckets \"1000\": a whole number from 1 to 500`},
		{"deadletters/stats?limit=5", `unknown parameter \"limit\"`},
	} {
		code, body := get(t, api+c.path, fullKey)
		if code != 400 || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %s, want 400 with %s", c.path, code, body, c.want)
		}
	}
	for _, c := range []struct{ contentType, body, want string }{
		{"", `{"dry_run":true}`, "want JSON (Content-Type: application/json)"},
		{"text/plain", `{"dry_run":true}`, "want JSON"},
		{"application/json", `{}`, "dry_run is required"},
		{"application/json", `{"dry_run":true,"force":1}`, `unknown field \"force\"`},
		{"application/json", `{"dry_run":true} {}`, "one JSON object only"},
		{"application/json", `{"dry_run":"yes"}`, "body: json"},
		{"application/json", `{"dry_run":true,"max_attempts":-1}`, "max_attempts must not be negative"},
		{"application/json", `{"dry_run":true,"device":"01"}`, `device \"01\": not a device id`},
		{"application/json; charset=utf-8", `{"dry_run":false,"since":"soon"}`, `since: \"soon\"`},
	} {
		code, _, body := do(t, http.MethodPost, api+"deadletters/replay", fullKey, c.contentType, c.body)
		if code != 400 || !strings.Contains(body, c.want) {
			t.Errorf("replay %s %s: %d %s, want 400 with %s", c.contentType, c.body, code, body, c.want)
		}
	}
	// A replay (not a dry run) is refused unless the server allows it.
	if code, _, body := do(t, http.MethodPost, api+"deadletters/replay", fullKey, "application/json", `{"dry_run":false}`); code != 403 || !strings.Contains(body, "replay is turned off") {
		t.Errorf("replay while turned off: %d %s", code, body)
	}
	// Without Kafka, good input is answered 503, saying so.
	if code, body := get(t, api+"deadletters?reason=out_of_range", fullKey); code != 503 || !strings.Contains(body, "no Kafka configured") {
		t.Errorf("dead letters without Kafka: %d %s", code, body)
	}
}

func TestDevice(t *testing.T) {
	_, hs := newTestServer(t, nil)
	code, body := get(t, hs.URL+Prefix+"api/devices/7?window=30m", fullKey)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var d struct {
		State struct {
			DeviceID string `json:"device_id"`
			Firmware string `json:"firmware"`
			GPS      struct {
				Lat float64 `json:"lat_deg"`
			} `json:"gps"`
		} `json:"state"`
		From, To  time.Time
		Track     []fixJSON   `json:"track"`
		Speed     []pointJSON `json:"speed"`
		Battery   []pointJSON `json:"battery"`
		Readings  int         `json:"readings"`
		Summaries any         `json:"summaries"`
		Alerts    []alertJSON `json:"alerts"`
		AlertsErr string      `json:"alerts_error"`
		HistErr   string      `json:"history_error"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if d.State.DeviceID != "7" || d.State.Firmware != "2.3" || d.State.GPS.Lat != 52.5 {
		t.Errorf("state = %+v", d.State)
	}
	// The window is the 30 minutes up to the last message: 30 fixes, 30
	// battery readings (the last one, 1 ms after the last fix, is past it).
	if want := time.UnixMilli(lastSeenMs - 30*60_000).UTC(); !d.From.Equal(want) {
		t.Errorf("from = %v, want %v", d.From, want)
	}
	if len(d.Track) != 31 || len(d.Speed) != 31 || len(d.Battery) != 30 || d.Readings != 61 {
		t.Errorf("track %d, speed %d, battery %d, readings %d; want 31, 31, 30, 61", len(d.Track), len(d.Speed), len(d.Battery), d.Readings)
	}
	if last := d.Track[len(d.Track)-1]; last.T != lastSeenMs || last.Lat != 52.589 || last.SpeedKmh != 89 {
		t.Errorf("last fix = %+v", last)
	}
	if d.Summaries != nil || d.HistErr != "" || d.AlertsErr != "no alerts topic configured" || len(d.Alerts) != 0 {
		t.Errorf("summaries %v, history error %q, alerts error %q, alerts %v", d.Summaries, d.HistErr, d.AlertsErr, d.Alerts)
	}

	// Without a store the state still shows, the history says why not.
	_, hs = newTestServer(t, func(o *Options) { o.Store = nil })
	code, body = get(t, hs.URL+Prefix+"api/devices/7", fullKey)
	if code != 200 || !strings.Contains(body, `"history_error":"no store configured`) || !strings.Contains(body, `"device_id":"7"`) {
		t.Errorf("without a store: %d %s", code, body)
	}
}

func TestThin(t *testing.T) {
	xs := make([]int, 10*maxPoints+3)
	for i := range xs {
		xs[i] = i
	}
	got := thin(xs)
	if len(got) != maxPoints || got[0] != 0 || got[len(got)-1] != len(xs)-1 {
		t.Errorf("thin: %d points from %d to %d", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("thin: not increasing at %d", i)
		}
	}
}

// Requests without a good key hold nothing shared: while the listener's
// one slot is taken, they are still answered 401 (not 503), and a good
// key is answered 503.
func TestUnauthenticatedHoldNothing(t *testing.T) {
	st := &fakeStore{rows: track(), block: make(chan struct{})}
	s, _ := newTestServer(t, func(o *Options) { o.Store = st })
	srv, err := serve.Listen(s.Handler(), serve.Options{Addr: "127.0.0.1:0", MaxConcurrentRequests: 1, DeferAdmission: DefersAdmission})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	api := srv.URL() + Prefix + "api/"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if code, body := get(t, api+"devices/7", fullKey); code != 200 {
			t.Errorf("the slow request: %d %s", code, body)
		}
	}()
	st.waitAsked(t) // the slow request holds the slot
	// Past the failed-auth limit (20 at once) the address is answered 429,
	// still without a slot.
	for i := range 30 {
		code, body := get(t, api+"topology", "wrong-key-"+strings.Repeat("x", i))
		if want := map[bool]int{true: 401, false: 429}[i < 20]; code != want {
			close(st.block)
			t.Fatalf("bad key %d while the slot is taken: %d %s, want %d", i, code, body, want)
		}
	}
	if code, body := get(t, api+"session", fullKey); code != 503 {
		t.Errorf("good key while the slot is taken: %d %s", code, body)
	}
	close(st.block)
	wg.Wait()
}

// Reads of Kafka or the store are bounded by MaxReads, after the key.
func TestMaxReads(t *testing.T) {
	st := &fakeStore{rows: track(), block: make(chan struct{})}
	_, hs := newTestServer(t, func(o *Options) { o.Store = st; o.MaxReads = 1 })
	api := hs.URL + Prefix + "api/"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		get(t, api+"devices/7", fullKey)
	}()
	st.waitAsked(t)
	if code, body := get(t, api+"devices/7", fullKey); code != 503 || !strings.Contains(body, "busy") {
		t.Errorf("second read: %d %s", code, body)
	}
	if code, body := get(t, api+"devices/7", "wrong-key-wrong-key-wrong-key"); code != 401 {
		t.Errorf("bad key: %d %s", code, body)
	}
	if code, _ := get(t, api+"topology", fullKey); code != 200 {
		t.Errorf("topology (no read of Kafka) while reads are busy: %d", code)
	}
	close(st.block)
	wg.Wait()
}

func TestTopology(t *testing.T) {
	reg := prometheus.NewRegistry()
	gauge := func(name string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name}, []string{"group"})
		reg.MustRegister(g)
		return g
	}
	recovered, parts := gauge(metricRecovered), gauge(metricPartitions)
	consumed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricConsumed, Help: "c"}, []string{"group", "topic"})
	reg.MustRegister(consumed)
	s, hs := newTestServer(t, func(o *Options) { o.Metrics = MetricsFromGatherer(reg) })
	clock := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	s.opts.Metrics.(*counterMetrics).now = func() time.Time { return clock }
	d := s.opts.Topology
	for _, g := range d.Groups {
		recovered.WithLabelValues(g.Group).Set(1)
		parts.WithLabelValues(g.Group).Set(8)
	}
	recovered.WithLabelValues("dedupe").Set(0)
	parts.WithLabelValues("sink").Set(5)
	recovered.DeleteLabelValues("alerts")
	consumed.WithLabelValues("decode", "telemetry.raw").Add(100)

	read := func() topologyJSON {
		t.Helper()
		code, body := get(t, hs.URL+Prefix+"api/topology", fullKey)
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		var out topologyJSON
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := read()
	if len(out.Groups) != len(d.Groups) {
		t.Errorf("%d groups, want %d", len(out.Groups), len(d.Groups))
	}
	nodes := map[string]Node{}
	for _, n := range out.Graph.Nodes {
		nodes[n.ID] = n
	}
	for _, g := range d.Groups {
		if n, ok := nodes["g_"+strings.ReplaceAll(g.Group, "-", "_")]; !ok || n.Kind != "group" || n.Label != g.Group {
			t.Errorf("group %s: node %+v", g.Group, n)
		}
	}
	if len(out.Graph.Nodes) != len(d.Groups)+len(d.Topics)+len(d.Externals()) || len(out.Graph.Edges) != len(d.Edges()) {
		t.Errorf("graph: %d nodes, %d edges", len(out.Graph.Nodes), len(out.Graph.Edges))
	}
	for g, want := range map[string]string{"decode": HealthOK, "dedupe": HealthDown, "sink": HealthDegraded, "alerts": HealthDown} {
		if got := out.Groups[g].Health; got != want {
			t.Errorf("%s: health %s (%s), want %s", g, got, out.Groups[g].Why, want)
		}
	}
	if g := out.Groups["decode"]; g.InPerSecond != nil || g.Replicas != 1 || *g.PartitionsOwned != 8 || g.Partitions != 8 {
		t.Errorf("decode at the first sample: %+v", g)
	}
	// The second sample gives rates.
	clock = clock.Add(10 * time.Second)
	consumed.WithLabelValues("decode", "telemetry.raw").Add(50)
	out = read()
	if g := out.Groups["decode"]; g.InPerSecond == nil || *g.InPerSecond != 5 {
		t.Errorf("decode in/s = %v, want 5", g.InPerSecond)
	}
	// Another page a second later: its rate is over that second, and its
	// sample does not become the base of the next rates (the one of 10 s
	// stays, 2 s before the next).
	clock = clock.Add(time.Second)
	consumed.WithLabelValues("decode", "telemetry.raw").Add(10)
	if g := read().Groups["decode"]; g.InPerSecond == nil || *g.InPerSecond != 10 {
		t.Errorf("decode in/s a second later = %v, want 10", *g.InPerSecond)
	}
	clock = clock.Add(time.Second)
	if g := read().Groups["decode"]; g.InPerSecond == nil || *g.InPerSecond != 5 {
		t.Errorf("decode in/s two seconds later = %v, want 5", *g.InPerSecond)
	}
	// No metrics: unknown.
	_, hs = newTestServer(t, nil)
	code, body := get(t, hs.URL+Prefix+"api/topology", fullKey)
	if code != 200 || !strings.Contains(body, `"health":"unknown"`) || strings.Contains(body, `"health":"ok"`) {
		t.Errorf("without metrics: %d %s", code, body)
	}
}

// The figures of /metrics endpoints: replicas count the processes, lag is
// the group's (the largest process's sum, not the total), a restart makes
// the group degraded.
func TestMetricsFromEndpoints(t *testing.T) {
	page := func(recovered, parts, restarts string) *httptest.Server {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = w.Write([]byte(`# TYPE watershed_processor_recovered gauge
watershed_processor_recovered{group="sink"} ` + recovered + `
# TYPE watershed_processor_partitions gauge
watershed_processor_partitions{group="sink"} ` + parts + `
# TYPE watershed_consumer_lag gauge
watershed_consumer_lag{group="sink",topic="n",partition="0"} 3
watershed_consumer_lag{group="sink",topic="n",partition="1"} 4
# TYPE watershed_group_restarts_total counter
watershed_group_restarts_total{group="sink"} ` + restarts + `
`))
		}))
		t.Cleanup(hs.Close)
		return hs
	}
	restarts := "0"
	a := page("1", "3", "0")
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page("1", "5", restarts).Config.Handler.ServeHTTP(w, r)
	}))
	defer b.Close()
	m := MetricsFromEndpoints([]string{a.URL, b.URL}, nil).(*counterMetrics)
	clock := time.Now()
	m.now = func() time.Time { return clock }
	g, err := m.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sink := g["sink"]
	if sink.Replicas != 2 || sink.Recovered != 2 || *sink.PartitionsOwned != 8 || *sink.Lag != 7 || sink.RestartedRecently {
		t.Errorf("sink = %+v", sink)
	}
	if h, _ := health(sink, 8); h != HealthOK {
		t.Errorf("health %s", h)
	}
	restarts, clock = "1", clock.Add(5*time.Second)
	g, err = m.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h, why := health(g["sink"], 8); h != HealthDegraded || !g["sink"].RestartedRecently {
		t.Errorf("after a restart: %s %s", h, why)
	}
	// One process down: the other still counts, with its partitions only.
	a.Close()
	g, err = m.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if g["sink"].Replicas != 1 {
		t.Errorf("replicas with one process down: %d", g["sink"].Replicas)
	}
	if _, err := MetricsFromEndpoints([]string{a.URL}, nil).Groups(context.Background()); err == nil {
		t.Error("no process answers: no error")
	}
}

func TestMetricsFromPrometheus(t *testing.T) {
	var queries []string
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/prom/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query().Get("query")
		queries = append(queries, q)
		v := "0"
		switch {
		case strings.HasPrefix(q, "count by (group) (watershed_processor_recovered)"):
			v = "3"
		case strings.HasPrefix(q, "sum by (group) (watershed_processor_recovered)"):
			v = "2"
		case strings.Contains(q, "rate(watershed_processor_records_consumed_total"):
			v = "12.5"
		case strings.Contains(q, "watershed_consumer_lag"):
			v = "40"
		case strings.HasPrefix(q, "sum by (group) (increase("):
			v = "1"
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"group":"dedupe"},"value":[1765000000,"` + v + `"]}]}}`))
	}))
	defer prom.Close()
	m, err := MetricsFromPrometheus(prom.URL+"/prom", nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := g["dedupe"]
	if d == nil || d.Replicas != 3 || d.Recovered != 2 || *d.InPerSecond != 12.5 || *d.Lag != 40 || !d.RestartedRecently {
		t.Fatalf("dedupe = %+v", d)
	}
	if len(queries) != len(promQueries) {
		t.Errorf("%d queries, want %d", len(queries), len(promQueries))
	}
	for _, q := range queries {
		named := false
		for _, n := range MetricNames() {
			named = named || strings.Contains(q, n)
		}
		if !named {
			t.Errorf("query %q names none of the metrics", q)
		}
	}
	if _, err := MetricsFromPrometheus("prometheus:9090", nil); err == nil {
		t.Error("a URL without a scheme is taken")
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"status":"error","error":"bad query"}`))
	}))
	defer bad.Close()
	m, _ = MetricsFromPrometheus(bad.URL, nil)
	if _, err := m.Groups(context.Background()); err == nil || !strings.Contains(err.Error(), "bad query") {
		t.Errorf("error answer: %v", err)
	}
}

// MetricNames hands out a fresh slice: a caller changing it changes
// nothing for the next.
func TestMetricNamesIsAFreshSlice(t *testing.T) {
	a := MetricNames()
	if len(a) == 0 {
		t.Fatal("no metric names")
	}
	want := a[0]
	a[0] = "changed"
	if got := MetricNames()[0]; got != want {
		t.Fatalf("MetricNames()[0] = %q after a caller changed its copy, want %q", got, want)
	}
}
