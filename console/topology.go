package console

import (
	"context"
	"net/http"
	"time"

	"github.com/watershed-io/watershed/views"
)

// Health of a group on the graph.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
	HealthDown     = "down"
	HealthUnknown  = "unknown"
)

// groupJSON is one group's figures and health on the topology page.
type groupJSON struct {
	*GroupMetrics
	// Partitions is the declared partition count of its inputs.
	Partitions int32  `json:"partitions"`
	Health     string `json:"health"`
	Why        string `json:"why,omitempty"`
}

// topologyJSON is the answer of GET api/topology.
type topologyJSON struct {
	Name            string                `json:"name"`
	DeadLetterTopic string                `json:"dead_letter_topic"`
	Graph           Graph                 `json:"graph"`
	Groups          map[string]*groupJSON `json:"groups"`
	MetricsSource   string                `json:"metrics_source"`
	MetricsError    string                `json:"metrics_error,omitempty"`
	At              time.Time             `json:"at"`
}

func (s *Server) topology(w http.ResponseWriter, r *http.Request, _ views.Access) {
	d := s.opts.Topology
	out := topologyJSON{Name: d.Name, DeadLetterTopic: d.DeadLetterTopic, Graph: s.graph,
		Groups: map[string]*groupJSON{}, MetricsSource: "none configured", At: s.opts.Now().UTC()}
	var figures map[string]*GroupMetrics
	if m := s.opts.Metrics; m != nil {
		out.MetricsSource = m.Source()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		var err error
		figures, err = m.Groups(ctx)
		cancel()
		if err != nil {
			s.log.Warn("console: metrics", "source", m.Source(), "err", err)
			out.MetricsError = "the metrics could not be read; the process's log says why"
		}
	}
	for _, g := range d.Groups {
		parts := int32(0)
		if len(g.Inputs) > 0 {
			for _, t := range d.Topics {
				if t.Name == g.Inputs[0] {
					parts = t.Partitions
				}
			}
		}
		gj := &groupJSON{GroupMetrics: figures[g.Group], Partitions: parts}
		switch {
		case s.opts.Metrics == nil || out.MetricsError != "":
			gj.Health, gj.Why = HealthUnknown, "no metrics"
		default:
			gj.Health, gj.Why = health(gj.GroupMetrics, parts)
		}
		if gj.GroupMetrics == nil {
			gj.GroupMetrics = &GroupMetrics{}
		}
		out.Groups[g.Group] = gj
	}
	writeJSON(w, http.StatusOK, out)
}

// health judges a group from its figures: down when no process runs it or
// none has recovered, degraded when some process is not recovered, its
// partitions are not all owned, or it restarted lately.
func health(m *GroupMetrics, partitions int32) (string, string) {
	switch {
	case m == nil || m.Replicas == 0:
		return HealthDown, "no process runs it"
	case m.Recovered == 0:
		return HealthDown, "no process has recovered its tables"
	case m.Recovered < m.Replicas:
		return HealthDegraded, "some processes are not recovered"
	case m.PartitionsOwned != nil && partitions > 0 && *m.PartitionsOwned < float64(partitions):
		return HealthDegraded, "not every partition is owned"
	case m.RestartedRecently:
		return HealthDegraded, "restarted in the last 5 minutes"
	}
	return HealthOK, ""
}
