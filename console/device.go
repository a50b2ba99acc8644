package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/sinks"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
	"github.com/watershed-io/watershed/views"
)

// Bounds of the device page's reads.
const (
	defaultWindow = time.Hour
	maxWindow     = 7 * 24 * time.Hour
	// maxRows bounds the readings read from the store for one page.
	maxRows = 50000
	// maxPoints bounds the points of each series sent to the page.
	maxPoints = 1500
	// alertScan is how many of the newest records of the device's
	// partition of the alerts topic are read for its alerts.
	alertScan = 20000
	maxAlerts = 100
)

// fixJSON is one GPS fix.
type fixJSON struct {
	T        int64   `json:"t"` // Unix milliseconds
	Lat      float64 `json:"lat"`
	Lon      float64 `json:"lon"`
	SpeedKmh float64 `json:"speed_kmh"`
}

// pointJSON is one value at a time.
type pointJSON struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}

// alertJSON is one alert.
type alertJSON struct {
	T        int64   `json:"t"`
	Kind     string  `json:"kind"`
	Event    string  `json:"event,omitempty"`
	Severity uint8   `json:"severity,omitempty"`
	CoolantC float64 `json:"coolant_c,omitempty"`
}

// deviceJSON is the answer of GET api/devices/{id}. Each part has its own
// error, so that a store that does not answer still shows the state.
type deviceJSON struct {
	DeviceID string `json:"device_id"`
	// State is the view API's answer for the device.
	State      any    `json:"state"`
	StateError string `json:"state_error,omitempty"`
	// From and To bound the history (message time): the window before the
	// device's last message.
	From         time.Time   `json:"from"`
	To           time.Time   `json:"to"`
	Track        []fixJSON   `json:"track"`
	Speed        []pointJSON `json:"speed"`
	Battery      []pointJSON `json:"battery"`
	Readings     int         `json:"readings"`
	HistoryError string      `json:"history_error,omitempty"`
	Alerts       []alertJSON `json:"alerts"`
	AlertsError  string      `json:"alerts_error,omitempty"`
	// Summaries are the device's windowed summaries: not served yet (they
	// come with the time-windowed store); always null until then.
	Summaries any `json:"summaries"`
}

func (s *Server) device(w http.ResponseWriter, r *http.Request, acc views.Access) {
	id, err := views.ParseDeviceID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("device id %q: not a device id (decimal, 0 to 18446744073709551615)", clip(r.PathValue("id"))))
		return
	}
	window := defaultWindow
	for k, vs := range r.URL.Query() {
		if k != "window" || len(vs) != 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown or repeated parameter %q (known: window)", clip(k)))
			return
		}
		d, err := time.ParseDuration(vs[0])
		if err != nil || d < time.Minute || d > maxWindow {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("window %q: a duration from 1m to 168h", clip(vs[0])))
			return
		}
		window = d
	}
	if !acc.Sees(id) {
		writeError(w, http.StatusNotFound, "unknown device")
		return
	}
	out := deviceJSON{DeviceID: strconv.FormatUint(id, 10), Track: []fixJSON{}, Speed: []pointJSON{}, Battery: []pointJSON{}, Alerts: []alertJSON{}}
	end := s.opts.Now()
	if err := s.opts.Devices.Ready(); err != nil {
		out.StateError = "the view is catching up with the table"
	} else {
		st, found, err := s.opts.Devices.Get(id)
		switch {
		case err != nil:
			s.log.Error("console: device state", "device_id", id, "err", err)
			out.StateError = "the state could not be read; the process's log says why"
		case !found:
			writeError(w, http.StatusNotFound, "unknown device")
			return
		default:
			b, err := views.MarshalDevice(id, &st)
			if err != nil {
				s.log.Error("console: device state", "device_id", id, "err", err)
				out.StateError = "the state could not be encoded"
				break
			}
			out.State = rawJSON(b)
			if st.LastSeenMs != 0 {
				end = time.UnixMilli(int64(st.LastSeenMs))
			}
		}
	}
	out.From, out.To = end.Add(-window).UTC(), end.Add(time.Millisecond).UTC()
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if s.opts.Store == nil {
		out.HistoryError = "no store configured: history is not available here"
	} else if err := s.history(ctx, id, &out); err != nil {
		s.log.Error("console: device history", "device_id", id, "err", err)
		out.HistoryError = "the store could not be read; the process's log says why"
	}
	switch {
	case s.opts.Kafka == nil || s.opts.AlertsTopic == "":
		out.AlertsError = "no alerts topic configured"
	default:
		alerts, err := s.alerts(ctx, id)
		if err != nil {
			s.log.Error("console: device alerts", "device_id", id, "err", err)
			out.AlertsError = "the alerts could not be read; the process's log says why"
		}
		out.Alerts = alerts
	}
	writeJSON(w, http.StatusOK, out)
}

// rawJSON is JSON already encoded.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// history fills the track, speed and battery of the window from the store.
func (s *Server) history(ctx context.Context, id uint64, out *deviceJSON) error {
	rows, err := s.opts.Store.Readings(ctx, sinks.Query{DeviceID: id, From: out.From, To: out.To, Limit: maxRows})
	if err != nil {
		return err
	}
	out.Readings = len(rows)
	for i := range rows {
		rd := &rows[i]
		switch rd.Type {
		case protocol.TypeGPS:
			out.Track = append(out.Track, fixJSON{T: int64(rd.TimeMs), Lat: rd.LatDeg, Lon: rd.LonDeg, SpeedKmh: rd.SpeedKmh})
			out.Speed = append(out.Speed, pointJSON{T: int64(rd.TimeMs), V: rd.SpeedKmh})
		case protocol.TypeBattery:
			out.Battery = append(out.Battery, pointJSON{T: int64(rd.TimeMs), V: rd.BatteryV})
		}
	}
	out.Track, out.Speed, out.Battery = thin(out.Track), thin(out.Speed), thin(out.Battery)
	return nil
}

// thin keeps at most maxPoints of xs, evenly spread, the last one always.
func thin[T any](xs []T) []T {
	if len(xs) <= maxPoints {
		return xs
	}
	out := make([]T, 0, maxPoints)
	for i := range maxPoints - 1 {
		out = append(out, xs[i*len(xs)/maxPoints])
	}
	return append(out, xs[len(xs)-1])
}

// alerts reads the device's newest alerts from its partition of the alerts
// topic, newest first.
func (s *Server) alerts(ctx context.Context, id uint64) ([]alertJSON, error) {
	topic := s.opts.AlertsTopic
	var parts int32
	for _, t := range s.opts.Topology.Topics {
		if t.Name == topic {
			parts = t.Partitions
		}
	}
	if parts <= 0 {
		return []alertJSON{}, fmt.Errorf("console: alerts topic %s is not declared", topic)
	}
	key := strconv.FormatUint(id, 10)
	found, err := readTail(ctx, *s.opts.Kafka, topic, topology.Partition([]byte(key), parts), alertScan, func(m *sarama.ConsumerMessage) bool {
		return string(m.Key) == key
	})
	out := []alertJSON{}
	// Alerts are at least once: a stage that replays a record raises its
	// alerts again, equal to the first. Each is listed once.
	seen := map[records.Alert]bool{}
	for i := len(found) - 1; i >= 0 && len(out) < maxAlerts; i-- {
		a, derr := records.AlertCodec{}.Decode(found[i].Value)
		if derr != nil || a.DeviceID != id || seen[a] {
			continue
		}
		seen[a] = true
		aj := alertJSON{T: int64(a.TimeMs), Kind: a.Kind.String()}
		switch a.Kind {
		case records.AlertEvent:
			aj.Event, aj.Severity = protocol.EventCode(a.EventCode).String(), a.Severity
		case records.AlertCoolant:
			aj.CoolantC = a.CoolantC
		}
		out = append(out, aj)
	}
	return out, err
}

// readTail reads up to n of the newest records of one partition and
// returns those keep accepts, oldest first.
func readTail(ctx context.Context, k topology.Kafka, topic string, partition int32, n int64, keep func(*sarama.ConsumerMessage) bool) ([]*sarama.ConsumerMessage, error) {
	cfg := kafkaclient.Config(k)
	cfg.Consumer.MaxWaitTime = 20 * time.Millisecond
	client, err := sarama.NewClient(k.Brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("console: connect: %w", err)
	}
	defer client.Close()
	oldest, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("console: oldest offset of %s/%d: %w", topic, partition, err)
	}
	next, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
	if err != nil {
		return nil, fmt.Errorf("console: newest offset of %s/%d: %w", topic, partition, err)
	}
	from := max(oldest, next-n)
	if from >= next {
		return nil, nil
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("console: consumer: %w", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, partition, from)
	if err != nil {
		return nil, fmt.Errorf("console: read %s/%d: %w", topic, partition, err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for {
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("console: read %s/%d: %w", topic, partition, ctx.Err())
		case perr := <-pc.Errors():
			if perr != nil {
				return out, fmt.Errorf("console: read %s/%d: %w", topic, partition, perr)
			}
		case m, ok := <-pc.Messages():
			if !ok {
				return out, errors.New("console: partition reader closed")
			}
			if keep(m) {
				out = append(out, m)
			}
			if m.Offset >= next-1 {
				return out, nil
			}
		}
	}
}
