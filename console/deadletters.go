package console

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/watershed-io/watershed/dlq"
	"github.com/watershed-io/watershed/views"
)

// filterJSON selects dead letters: the query of the GET endpoints, part of
// the body of a replay. Every field is optional.
type filterJSON struct {
	Reason string `json:"reason"`
	Stage  string `json:"stage"`
	// Device is a device id in decimal (the record key).
	Device string `json:"device"`
	// Since and Until are RFC 3339 times or durations ago ("1h").
	Since string `json:"since"`
	Until string `json:"until"`
	// TimeField is "last-failure" (default) or "timestamp".
	TimeField string `json:"time_field"`
}

// filterParams are the query parameters of filterJSON.
var filterParams = []string{"reason", "stage", "device", "since", "until", "time_field"}

// filter checks the fields and returns the selection, with times relative
// to now.
func (p filterJSON) filter(now time.Time) (dlq.Filter, error) {
	var f dlq.Filter
	if p.Reason != "" {
		if len(p.Reason) > 64 || strings.IndexFunc(p.Reason, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' && r != '-'
		}) >= 0 {
			return f, badRequest{fmt.Sprintf("reason %q: a reason is lower-case letters, digits, _ and - (such as header_crc)", clip(p.Reason))}
		}
		f.Reason = p.Reason
	}
	if p.Stage != "" {
		if len(p.Stage) > 200 || !utf8.ValidString(p.Stage) || strings.ContainsFunc(p.Stage, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return f, badRequest{"stage: a stage is a group name (with its prefix) or edge"}
		}
		f.Stages = []string{p.Stage}
	}
	if p.Device != "" {
		if _, err := views.ParseDeviceID(p.Device); err != nil {
			return f, badRequest{fmt.Sprintf("device %q: not a device id (decimal, 0 to 18446744073709551615)", clip(p.Device))}
		}
		f.Device = p.Device
	}
	var err error
	if p.TimeField != "" {
		if f.TimeField, err = dlq.ParseTimeField(p.TimeField); err != nil {
			return f, badRequest{fmt.Sprintf("time_field %q: last-failure or timestamp", clip(p.TimeField))}
		}
	}
	if f.Since, err = dlq.ParseWhen(p.Since, now); err != nil {
		return f, badRequest{"since: " + err.Error()}
	}
	if f.Until, err = dlq.ParseWhen(p.Until, now); err != nil {
		return f, badRequest{"until: " + err.Error()}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, badRequest{"since must be before until"}
	}
	return f, nil
}

// clip shortens what an error echoes.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// query reads the filter and the extra parameters named in ints (with
// their bounds) from q; any other parameter is an error.
func parseQuery(q url.Values, ints map[string][3]int) (filterJSON, map[string]int, error) {
	var p filterJSON
	fields := map[string]*string{"reason": &p.Reason, "stage": &p.Stage, "device": &p.Device,
		"since": &p.Since, "until": &p.Until, "time_field": &p.TimeField}
	vals := map[string]int{}
	for name, b := range ints {
		vals[name] = b[0]
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return p, nil, badRequest{fmt.Sprintf("parameter %q given %d times", clip(k), len(vs))}
		}
		if dst, ok := fields[k]; ok {
			*dst = vs[0]
			continue
		}
		b, ok := ints[k]
		if !ok {
			return p, nil, badRequest{fmt.Sprintf("unknown parameter %q (known: %s)", clip(k), strings.Join(known(ints), ", "))}
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < b[1] || n > b[2] {
			return p, nil, badRequest{fmt.Sprintf("%s %q: a whole number from %d to %d", k, clip(vs[0]), b[1], b[2])}
		}
		vals[k] = n
	}
	return p, vals, nil
}

// known lists the parameters a query may hold.
func known(ints map[string][3]int) []string {
	out := append([]string(nil), filterParams...)
	for k := range ints {
		out = append(out, k)
	}
	sort.Strings(out[len(filterParams):])
	return out
}

// selection checks the filter and opens the dead-letter topic, or answers
// why not (and returns a nil queue).
func (s *Server) selection(w http.ResponseWriter, p filterJSON, err error) (dlq.Filter, *dlq.Queue) {
	var f dlq.Filter
	if err == nil {
		f, err = p.filter(s.opts.Now())
	}
	if err != nil {
		s.fail(w, "", err)
		return f, nil
	}
	return f, s.openQueue(w)
}

// openQueue opens the dead-letter topic, or answers why not.
func (s *Server) openQueue(w http.ResponseWriter) *dlq.Queue {
	if s.opts.Kafka == nil || s.opts.Topology.DeadLetterTopic == "" {
		writeError(w, http.StatusServiceUnavailable, "no Kafka configured: the dead letters cannot be read")
		return nil
	}
	q, err := dlq.Open(*s.opts.Kafka, s.opts.Topology.DeadLetterTopic, s.log)
	if err != nil {
		s.fail(w, "reading the dead letters", err)
		return nil
	}
	return q
}

// bucketJSON counts the dead letters of one interval.
type bucketJSON struct {
	Start    time.Time      `json:"start"`
	ByReason map[string]int `json:"by_reason"`
	ByStage  map[string]int `json:"by_stage"`
}

// statsJSON is the answer of GET api/deadletters/stats.
type statsJSON struct {
	dlq.Stats
	// BucketSeconds is the width of each bucket of Series, which covers
	// the filter's range (or the failures' when open) in time_field's
	// time.
	BucketSeconds float64      `json:"bucket_seconds"`
	Series        []bucketJSON `json:"series"`
}

func (s *Server) deadLetterStats(w http.ResponseWriter, r *http.Request, _ views.Access) {
	now := s.opts.Now()
	p, ints, err := parseQuery(r.URL.Query(), map[string][3]int{"buckets": {60, 1, 500}})
	f, q := s.selection(w, p, err)
	if q == nil {
		return
	}
	defer q.Close()
	type point struct {
		t             time.Time
		reason, stage string
	}
	var points []point
	st, err := q.StatsEach(r.Context(), f, func(rec *dlq.Record) {
		e := &rec.Envelope
		t := e.LastFailure
		if f.TimeField == dlq.ByTimestamp {
			t = e.Timestamp
		}
		points = append(points, point{t, e.Reason, e.Stage})
	})
	if err != nil {
		s.fail(w, "counting the dead letters", err)
		return
	}
	out := statsJSON{Stats: st, Series: []bucketJSON{}}
	from, to := f.Since, f.Until
	for _, pt := range points {
		if f.Since.IsZero() && (from.IsZero() || pt.t.Before(from)) {
			from = pt.t
		}
		if f.Until.IsZero() && !pt.t.Before(to) {
			to = pt.t.Add(time.Millisecond)
		}
	}
	if len(points) > 0 || (!from.IsZero() && !to.IsZero()) {
		if to.IsZero() {
			to = now
		}
		n := ints["buckets"]
		// Whole seconds, rounded up, so that n buckets cover the range.
		span := to.Sub(from)
		width := max((span/time.Duration(n) + time.Second - 1).Truncate(time.Second), time.Second)
		n = max(int((span+width-1)/width), 1)
		out.BucketSeconds = width.Seconds()
		for i := range n {
			out.Series = append(out.Series, bucketJSON{Start: from.Add(time.Duration(i) * width).UTC(), ByReason: map[string]int{}, ByStage: map[string]int{}})
		}
		for _, pt := range points {
			i := int(pt.t.Sub(from) / width)
			if i < 0 || i >= n {
				continue
			}
			out.Series[i].ByReason[pt.reason]++
			out.Series[i].ByStage[pt.stage]++
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// letterJSON is one dead letter in the list (without its value).
type letterJSON struct {
	DLQPartition int32     `json:"dlq_partition"`
	DLQOffset    int64     `json:"dlq_offset"`
	Stage        string    `json:"stage"`
	Reason       string    `json:"reason"`
	Error        string    `json:"error"`
	Key          string    `json:"key"`
	Topic        string    `json:"topic"`
	Partition    int32     `json:"partition"`
	Offset       int64     `json:"offset"`
	Attempts     int       `json:"attempts"`
	Timestamp    time.Time `json:"timestamp"`
	FirstFailure time.Time `json:"first_failure"`
	LastFailure  time.Time `json:"last_failure"`
	ValueBytes   int       `json:"value_bytes"`
}

func newLetter(rec *dlq.Record) letterJSON {
	e := &rec.Envelope
	errLine, _, _ := strings.Cut(e.Error, "\n")
	return letterJSON{
		DLQPartition: rec.Partition, DLQOffset: rec.Offset, Stage: e.Stage, Reason: e.Reason,
		Error: clipError(errLine), Key: dlq.Printable(e.Key), Topic: e.Topic, Partition: e.Partition, Offset: e.Offset,
		Attempts: e.Attempts, Timestamp: e.Timestamp, FirstFailure: e.FirstFailure, LastFailure: e.LastFailure,
		ValueBytes: len(e.Value),
	}
}

// clipError keeps the first 300 bytes of an error line.
func clipError(s string) string {
	if len(s) <= 300 {
		return s
	}
	cut := 300
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// lettersJSON is the answer of GET api/deadletters.
type lettersJSON struct {
	// Items are the newest matches (by time_field), newest first.
	Items   []letterJSON `json:"items"`
	Read    int          `json:"read"`
	Matched int          `json:"matched"`
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, _ views.Access) {
	p, ints, err := parseQuery(r.URL.Query(), map[string][3]int{"limit": {100, 1, 1000}})
	f, q := s.selection(w, p, err)
	if q == nil {
		return
	}
	defer q.Close()
	limit := ints["limit"]
	at := func(l *letterJSON) time.Time {
		if f.TimeField == dlq.ByTimestamp {
			return l.Timestamp
		}
		return l.LastFailure
	}
	newestFirst := func(a, b letterJSON) int { return at(&b).Compare(at(&a)) }
	var items []letterJSON
	st, err := q.Scan(r.Context(), f, func(rec dlq.Record) error {
		items = append(items, newLetter(&rec))
		if len(items) >= 2*limit {
			slices.SortStableFunc(items, newestFirst)
			items = items[:limit]
		}
		return nil
	})
	if err != nil {
		s.fail(w, "reading the dead letters", err)
		return
	}
	slices.SortStableFunc(items, newestFirst)
	if len(items) > limit {
		items = items[:limit]
	}
	if items == nil {
		items = []letterJSON{}
	}
	writeJSON(w, http.StatusOK, lettersJSON{Items: items, Read: st.Read, Matched: st.Matched})
}

// replayRequest is the body of POST api/deadletters/replay.
type replayRequest struct {
	filterJSON
	// DryRun must be given: true lists what would be replayed, false
	// replays.
	DryRun      *bool `json:"dry_run"`
	IncludeEdge bool  `json:"include_edge"`
	MaxAttempts int   `json:"max_attempts"`
}

// replayJSON is the answer of a replay: the counts by action and the first
// maxReplayItems outcomes.
type replayJSON struct {
	DryRun bool           `json:"dry_run"`
	Counts map[string]int `json:"counts"`
	Total  int            `json:"total"`
	Items  []dlq.ItemJSON `json:"items"`
	Error  string         `json:"error,omitempty"`
}

// maxReplayItems bounds the outcomes a replay answer lists.
const maxReplayItems = 500

func (s *Server) replayDeadLetters(w http.ResponseWriter, r *http.Request, _ views.Access) {
	req, err := decodeReplay(r)
	if err == nil {
		_, err = req.filter(s.opts.Now()) // bad input is answered first
	}
	if err != nil {
		s.fail(w, "", err)
		return
	}
	if !*req.DryRun && !s.opts.Replay {
		writeError(w, http.StatusForbidden, "replay is turned off on this server (watershed view --console-replay); dry runs are allowed")
		return
	}
	f, q := s.selection(w, req.filterJSON, nil)
	if q == nil {
		return
	}
	defer q.Close()
	s.replay.Lock()
	defer s.replay.Unlock()
	rep, err := q.Replay(r.Context(), f, dlq.ReplayOptions{DryRun: *req.DryRun, IncludeEdge: req.IncludeEdge,
		MaxAttempts: req.MaxAttempts, Topics: s.replayTo})
	out := replayJSON{DryRun: rep.DryRun, Counts: map[string]int{}, Total: len(rep.Items), Items: []dlq.ItemJSON{}}
	for i := range rep.Items {
		it := &rep.Items[i]
		out.Counts[string(it.Action)]++
		if len(out.Items) < maxReplayItems {
			out.Items = append(out.Items, it.JSON())
		}
	}
	if !rep.DryRun {
		s.log.Info("console: dead letters replayed", "filter_reason", f.Reason, "filter_stage", req.Stage,
			"filter_device", f.Device, "counts", out.Counts, "err", err)
	}
	if err != nil {
		s.log.Error("console: replay", "err", err)
		out.Error = "the replay failed part way; the counts say what was done and the process's log why"
		writeJSON(w, http.StatusInternalServerError, out)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// decodeReplay reads and checks a replay's body.
func decodeReplay(r *http.Request) (replayRequest, error) {
	var req replayRequest
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return req, badRequest{"body: want JSON (Content-Type: application/json)"}
	}
	if r.URL.RawQuery != "" {
		return req, badRequest{"replay takes its selection in the body, not the query"}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, badRequest{"body: " + err.Error()}
	}
	if dec.More() {
		return req, badRequest{"body: one JSON object only"}
	}
	if req.DryRun == nil {
		return req, badRequest{"dry_run is required: true to see what would be replayed, false to replay"}
	}
	if req.MaxAttempts < 0 {
		return req, badRequest{"max_attempts must not be negative"}
	}
	return req, nil
}
