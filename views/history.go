package views

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
)

// ReadingSource answers the readings endpoint from the store of readings;
// every sinks.Store is one.
type ReadingSource interface {
	Readings(ctx context.Context, q sinks.Query) ([]records.Reading, error)
}

// SummarySource answers the closed windows of the summaries endpoint from
// the store; every sinks.SummaryStore is one.
type SummarySource interface {
	Summaries(ctx context.Context, q sinks.SummaryQuery) ([]records.Summary, error)
}

// OpenWindows answers the open window of the summaries endpoint: the
// summary so far of a device's window that has not closed yet (the
// summaries group keeps it in its windowed table). The store holds closed
// windows only.
type OpenWindows interface {
	// OpenSummary returns the device's open window and whether it has one.
	OpenSummary(ctx context.Context, deviceID uint64) (records.Summary, bool, error)
}

// History limits of the readings and summaries endpoints.
const (
	// MaxHistoryRange is the longest from-to range a request may ask for.
	MaxHistoryRange = 31 * 24 * time.Hour
	// DefaultHistoryRange is the range when the request gives one bound or
	// none: to defaults to now (or from + DefaultHistoryRange), from to
	// to - DefaultHistoryRange.
	DefaultHistoryRange = 24 * time.Hour
	// MaxReadingsLimit is the largest page of readings.
	MaxReadingsLimit = 10000
	// DefaultReadingsLimit is the page size when the request sets none.
	DefaultReadingsLimit = 1000
)

// The paths of the history endpoints below /v1/devices/{id}.
const (
	readingsSub  = "readings"
	summariesSub = "summaries"
)

// bodyUnavailable answers a store that is down or overloaded.
const bodyUnavailable = `{"error":"store unavailable"}` + "\n"

// badRequest returns the body of a 400 saying msg.
func badRequest(msg string) string {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return string(b) + "\n"
}

// historyQuery is a history request's parameters.
type historyQuery struct {
	from, to time.Time
	limit    int
	after    *sinks.Position
}

// parseHistoryQuery parses the query string of a history request: from
// and to (RFC 3339), and, when paged, limit and cursor. Other parameters,
// or one given twice, are refused. The error is the message of a 400.
func parseHistoryQuery(raw string, now time.Time, paged bool) (historyQuery, string) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return historyQuery{}, "malformed query string"
	}
	q := historyQuery{limit: DefaultReadingsLimit}
	for name, vs := range vals {
		switch name {
		case "from", "to":
		case "limit", "cursor":
			if paged {
				break
			}
			fallthrough
		default:
			return historyQuery{}, fmt.Sprintf("unexpected query parameter %q", name)
		}
		if len(vs) != 1 {
			return historyQuery{}, fmt.Sprintf("query parameter %q given %d times", name, len(vs))
		}
	}
	bound := func(name string) (time.Time, string) {
		s := vals.Get(name)
		if s == "" {
			return time.Time{}, ""
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Sprintf("malformed %s: want an RFC 3339 time such as 2024-05-01T12:00:00Z", name)
		}
		return t.UTC(), ""
	}
	var msg string
	if q.from, msg = bound("from"); msg != "" {
		return historyQuery{}, msg
	}
	if q.to, msg = bound("to"); msg != "" {
		return historyQuery{}, msg
	}
	switch {
	case q.from.IsZero() && q.to.IsZero():
		q.to = now.UTC()
		q.from = q.to.Add(-DefaultHistoryRange)
	case q.to.IsZero():
		q.to = q.from.Add(DefaultHistoryRange)
	case q.from.IsZero():
		q.from = q.to.Add(-DefaultHistoryRange)
	}
	if q.to.Before(q.from) {
		return historyQuery{}, "reversed range: from is after to"
	}
	if q.to.Sub(q.from) > MaxHistoryRange {
		return historyQuery{}, fmt.Sprintf("range over %d days", int(MaxHistoryRange/(24*time.Hour)))
	}
	if s := vals.Get("limit"); vals.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxReadingsLimit {
			return historyQuery{}, fmt.Sprintf("limit must be a whole number from 1 to %d", MaxReadingsLimit)
		}
		q.limit = n
	}
	if vals.Has("cursor") {
		p, ok := parseCursor(vals.Get("cursor"))
		if !ok {
			return historyQuery{}, "malformed cursor"
		}
		q.after = &p
	}
	return q, ""
}

// cursorVersion starts a cursor, so that its form can change.
const cursorVersion = 1

// cursor returns the opaque cursor of the page after p: base64url of a
// version byte, the message time and the content CRC.
func cursor(p sinks.Position) string {
	b := make([]byte, 0, 13)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint64(b, p.TimeMs)
	b = binary.BigEndian.AppendUint32(b, p.ContentCRC)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseCursor parses a cursor made by cursor.
func parseCursor(s string) (sinks.Position, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 13 || b[0] != cursorVersion {
		return sinks.Position{}, false
	}
	return sinks.Position{TimeMs: binary.BigEndian.Uint64(b[1:]), ContentCRC: binary.BigEndian.Uint32(b[9:])}, true
}

// readingsJSON is the body of a 200 answer of the readings endpoint.
type readingsJSON struct {
	DeviceID   string        `json:"device_id"`
	From       string        `json:"from"`
	To         string        `json:"to"`
	Readings   []ReadingJSON `json:"readings"`
	NextCursor *string       `json:"next_cursor"`
}

// serveReadings answers GET /v1/devices/{id}/readings: one page of the
// device's readings in [from, to), newest first.
func (s *Server) serveReadings(w http.ResponseWriter, r *http.Request, id uint64, q historyQuery) int {
	rows, err := s.readings.Readings(r.Context(), sinks.Query{DeviceID: id, From: q.from, To: q.to,
		Limit: q.limit + 1, Newest: true, After: q.after})
	if err != nil {
		return s.storeFailed(w, "readings", id, err)
	}
	body := readingsJSON{DeviceID: strconv.FormatUint(id, 10), From: q.from.Format(time.RFC3339Nano), To: q.to.Format(time.RFC3339Nano),
		Readings: make([]ReadingJSON, 0, min(len(rows), q.limit))}
	if len(rows) > q.limit {
		last := rows[q.limit-1]
		c := cursor(sinks.Position{TimeMs: last.TimeMs, ContentCRC: last.ContentCRC})
		body.NextCursor = &c
		rows = rows[:q.limit]
	}
	for i := range rows {
		body.Readings = append(body.Readings, NewReadingJSON(&rows[i]))
	}
	return s.writeJSON(w, "readings", id, body)
}

// summaryJSON is one window of the summaries endpoint.
type summaryJSON struct {
	WindowStart  msTime            `json:"window_start"`
	WindowEnd    msTime            `json:"window_end"`
	Closed       bool              `json:"closed"`
	Messages     uint64            `json:"messages"`
	DistanceM    float64           `json:"distance_m"`
	MaxSpeedKmh  float64           `json:"max_speed_kmh"`
	AvgSpeedKmh  float64           `json:"avg_speed_kmh"`
	HarshEvents  map[string]uint64 `json:"harsh_events"`
	FirstMessage *msTime           `json:"first_message"`
	LastMessage  *msTime           `json:"last_message"`
}

// summariesJSON is the body of a 200 answer of the summaries endpoint.
type summariesJSON struct {
	DeviceID  string        `json:"device_id"`
	From      string        `json:"from"`
	To        string        `json:"to"`
	Summaries []summaryJSON `json:"summaries"`
}

// newSummaryJSON returns the JSON form of sm.
func newSummaryJSON(sm *records.Summary, closed bool) summaryJSON {
	j := summaryJSON{WindowStart: msTime(sm.WindowStartMs), WindowEnd: msTime(sm.WindowEndMs), Closed: closed,
		Messages: sm.Messages, DistanceM: sm.DistanceM, MaxSpeedKmh: sm.MaxSpeedKmh, AvgSpeedKmh: sm.AvgSpeedKmh,
		HarshEvents: make(map[string]uint64, len(sm.Harsh))}
	for c, n := range sm.Harsh {
		j.HarshEvents[eventName(float64(c))] = n
	}
	if sm.Messages > 0 {
		first, last := msTime(sm.FirstMs), msTime(sm.LastMs)
		j.FirstMessage, j.LastMessage = &first, &last
	}
	return j
}

// serveSummaries answers GET /v1/devices/{id}/summaries: the device's
// windows starting in [from, to), oldest first, the closed ones from the
// store and the open one, when Options.OpenWindows has it, last.
func (s *Server) serveSummaries(w http.ResponseWriter, r *http.Request, id uint64, q historyQuery) int {
	closed, err := s.summaries.Summaries(r.Context(), sinks.SummaryQuery{DeviceID: id, From: q.from, To: q.to})
	if err != nil {
		return s.storeFailed(w, "summaries", id, err)
	}
	body := summariesJSON{DeviceID: strconv.FormatUint(id, 10), From: q.from.Format(time.RFC3339Nano), To: q.to.Format(time.RFC3339Nano),
		Summaries: make([]summaryJSON, 0, len(closed)+1)}
	for i := range closed {
		body.Summaries = append(body.Summaries, newSummaryJSON(&closed[i], true))
	}
	if s.open != nil {
		open, ok, err := s.open.OpenSummary(r.Context(), id)
		if err != nil {
			return s.storeFailed(w, "open summary", id, err)
		}
		from, to, inRange := sinks.SummaryQuery{From: q.from, To: q.to}.Span()
		inRange = inRange && open.WindowStartMs >= from && (to == 0 || open.WindowStartMs < to)
		// A window the store holds has closed, whatever the table says yet.
		stored := slices.ContainsFunc(closed, func(c records.Summary) bool { return c.WindowStartMs == open.WindowStartMs })
		if ok && inRange && !stored {
			body.Summaries = append(body.Summaries, newSummaryJSON(&open, false))
			slices.SortStableFunc(body.Summaries, func(a, b summaryJSON) int { return compareMs(a.WindowStart, b.WindowStart) })
		}
	}
	return s.writeJSON(w, "summaries", id, body)
}

func compareMs(a, b msTime) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// storeFailed answers a failed store call: 503 with Retry-After when the
// store is unavailable (sinks.ErrUnavailable) or still reading its state
// back (topology.ErrRecovering: a window view catching up), 500 otherwise.
func (s *Server) storeFailed(w http.ResponseWriter, what string, id uint64, err error) int {
	if errors.Is(err, context.Canceled) && errors.Is(err, sinks.ErrUnavailable) {
		// The client went away; it reads no answer.
		s.log.Debug("view: "+what+" abandoned by the client", "device_id", id, "error", err)
	} else {
		s.log.Error("view: "+what, "device_id", id, "error", err)
	}
	if errors.Is(err, sinks.ErrUnavailable) || errors.Is(err, topology.ErrRecovering) {
		w.Header().Set("Retry-After", s.retryAfter)
		return s.write(w, http.StatusServiceUnavailable, bodyUnavailable)
	}
	return s.write(w, http.StatusInternalServerError, bodyInternal)
}

// writeJSON answers 200 with body, or 500 if it does not encode.
func (s *Server) writeJSON(w http.ResponseWriter, what string, id uint64, body any) int {
	b, err := json.Marshal(body)
	if err != nil {
		s.log.Error("view: encode "+what, "device_id", id, "error", err)
		return s.write(w, http.StatusInternalServerError, bodyInternal)
	}
	return s.write(w, http.StatusOK, string(append(b, '\n')))
}
