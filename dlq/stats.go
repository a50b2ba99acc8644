package dlq

import (
	"context"
	"sort"
	"time"
)

// Stats counts the envelopes a scan matched.
type Stats struct {
	// Topic is the dead-letter topic.
	Topic string `json:"topic"`
	// Total counts the matched envelopes.
	Total int `json:"total"`
	// Undecodable counts records of the topic that are not envelopes.
	Undecodable int `json:"undecodable"`
	// ByReason and ByStage count the envelopes by Reason and by Stage.
	ByReason map[string]int `json:"by_reason"`
	ByStage  map[string]int `json:"by_stage"`
	// ByStageReason counts by stage and reason together, sorted by stage
	// then reason.
	ByStageReason []StageReasonCount `json:"by_stage_reason"`
	// OldestFailure and NewestFailure are the earliest and latest
	// LastFailure of the envelopes (zero when there are none).
	OldestFailure time.Time `json:"oldest_failure,omitzero"`
	NewestFailure time.Time `json:"newest_failure,omitzero"`
}

// StageReasonCount is the number of envelopes with one stage and reason.
type StageReasonCount struct {
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// Stats counts the envelopes that f matches (f.Limit bounds them too).
func (q *Queue) Stats(ctx context.Context, f Filter) (Stats, error) {
	return q.StatsEach(ctx, f, nil)
}

// StatsEach is Stats that also hands each matched record to each (when
// not nil), so that a caller counts more (by time, say) in the same scan.
func (q *Queue) StatsEach(ctx context.Context, f Filter, each func(*Record)) (Stats, error) {
	s := Stats{Topic: q.topic, ByReason: map[string]int{}, ByStage: map[string]int{}}
	type sr struct{ stage, reason string }
	both := map[sr]int{}
	st, err := q.Scan(ctx, f, func(r Record) error {
		e := &r.Envelope
		s.Total++
		s.ByReason[e.Reason]++
		s.ByStage[e.Stage]++
		both[sr{e.Stage, e.Reason}]++
		if each != nil {
			each(&r)
		}
		if s.OldestFailure.IsZero() || e.LastFailure.Before(s.OldestFailure) {
			s.OldestFailure = e.LastFailure
		}
		if e.LastFailure.After(s.NewestFailure) {
			s.NewestFailure = e.LastFailure
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	s.Undecodable = st.Undecodable
	for k, n := range both {
		s.ByStageReason = append(s.ByStageReason, StageReasonCount{Stage: k.stage, Reason: k.reason, Count: n})
	}
	sort.Slice(s.ByStageReason, func(i, j int) bool {
		a, b := s.ByStageReason[i], s.ByStageReason[j]
		if a.Stage != b.Stage {
			return a.Stage < b.Stage
		}
		return a.Reason < b.Reason
	})
	return s, nil
}
