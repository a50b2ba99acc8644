package topology

import (
	"errors"
	"fmt"

	"github.com/watershed-io/watershed/topology/internal/gokabind"
)

// Plan is a built topology: its declaration finalized once (retry topics
// and companion groups, loop partitions) and checked. It never changes:
// Validate, Describe, EnsureTopics and the Runner read it.
type Plan struct {
	t *Topology
}

// ErrBuilt is wrapped by the problem of a declaration made after Build:
// the plan is sealed, and the declaration is ignored.
var ErrBuilt = errors.New("declared after Build")

// Build ends the declaration: it finalizes the retry topics and companion
// groups and the loop topics' partitions once, checks the whole topology
// (see Validate), and returns the sealed plan. Declaring anything after
// Build is ignored and reported (ErrBuilt) by every later Build and
// Validate. Build may be called again: it returns the same plan.
func (t *Topology) Build() (*Plan, error) {
	t.buildMu.Lock()
	defer t.buildMu.Unlock()
	if !t.sealed {
		t.sealed = true
		problems := append([]error(nil), t.declErrs...)
		problems = append(problems, t.finalizeRetries()...)
		problems = append(problems, t.check()...)
		if len(problems) > 0 {
			t.buildErr = &ValidationError{Problems: problems}
		} else {
			t.built = &Plan{t: t}
		}
	}
	if len(t.lateErrs) > 0 {
		problems := append([]error(nil), t.lateErrs...)
		var v *ValidationError
		if errors.As(t.buildErr, &v) {
			problems = append(append([]error(nil), v.Problems...), problems...)
		}
		return nil, &ValidationError{Problems: problems}
	}
	return t.built, t.buildErr
}

// open reports whether the topology still takes declarations; after Build
// it records the late declaration what as a problem.
func (t *Topology) open(format string, args ...any) bool {
	if !t.sealed {
		return true
	}
	t.lateErrs = append(t.lateErrs, fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrBuilt))
	return false
}

// Name returns the topology's name.
func (pl *Plan) Name() string { return pl.t.name }

// Groups returns the names of the processor groups in declaration order,
// companion retry groups included.
func (pl *Plan) Groups() []string { return pl.t.Groups() }

// Topics returns the names of every topic, sorted.
func (pl *Plan) Topics() []string { return pl.t.Topics() }

// DeadLetterTopic returns the full name of the dead-letter topic.
func (pl *Plan) DeadLetterTopic() string { return pl.t.deadLetter }

// Describe returns the plan's description.
func (pl *Plan) Describe() Description { return pl.t.describe() }

// Select returns the plan's processor groups of the given names (all when
// none is named), in declaration order; a name may omit the prefix. An
// unknown name is an error wrapping ErrUnknownGroup.
func (pl *Plan) Select(groups []string) ([]*Processor, error) { return pl.t.Select(groups) }

// Bind is for the framework's own test driver (package
// topology/topologytest), which runs groups on goka's tester: req is a
// request of a package internal to the framework, which Bind fills with
// the named group's goka binding (its very callbacks). Code outside the
// framework cannot make one, and Bind refuses any other value, so that
// goka stays out of this package's API.
func (pl *Plan) Bind(req any) error {
	r, ok := req.(*gokabind.Request)
	if !ok || r == nil {
		return fmt.Errorf("topology: Bind takes a request of the framework's test driver, not %T", req)
	}
	procs, err := pl.Select([]string{r.Group})
	if err != nil {
		return err
	}
	r.Binding = gokaBinding{procs[0]}
	return nil
}
