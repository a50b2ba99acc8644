package views

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/topology"
)

// Source is where the server reads device states from.
type Source interface {
	// Get returns the state of a device and whether there is one.
	Get(deviceID uint64) (records.DeviceState, bool, error)
	// Ready returns nil when the source is caught up and its answers are
	// current, and an error saying why not otherwise.
	Ready() error
}

// ErrNotReady is wrapped by the errors of (*ViewSource).Ready.
var ErrNotReady = errors.New("views: device-state view not ready")

// ViewSource is a Source reading a goka view of the device-state table,
// which is keyed by device id in decimal.
type ViewSource struct {
	view *topology.View[records.DeviceState]
}

// NewViewSource returns a Source reading view. The caller runs the view.
func NewViewSource(view *topology.View[records.DeviceState]) *ViewSource {
	return &ViewSource{view: view}
}

// Get returns the state stored under the device's decimal id. A stored
// state naming another device is an error.
func (s *ViewSource) Get(deviceID uint64) (records.DeviceState, bool, error) {
	st, ok, err := s.view.Get(strconv.FormatUint(deviceID, 10))
	if err != nil {
		return records.DeviceState{}, false, fmt.Errorf("views: get device %d: %w", deviceID, err)
	}
	if !ok {
		return records.DeviceState{}, false, nil
	}
	if st.DeviceID != deviceID {
		return records.DeviceState{}, false, fmt.Errorf("views: state stored under device %d is device %d's", deviceID, st.DeviceID)
	}
	return st, true, nil
}

// Ready returns nil once the view has caught up with its table for the
// first time; before, it returns an error wrapping ErrNotReady. Afterwards
// the view keeps answering from its local copy while it reconnects or
// catches up again (during a broker restart or a rebalance); Current says
// whether it lags.
func (s *ViewSource) Ready() error {
	if !s.view.Serving() {
		return fmt.Errorf("%w: catching up with the table", ErrNotReady)
	}
	return nil
}

// Current returns nil when the view follows its table now, and an error
// wrapping ErrNotReady while it lags (recovering or reconnecting). Servers
// report it on /readyz, so that a load balancer prefers current servers,
// while the API itself keeps answering.
func (s *ViewSource) Current() error {
	if err := s.Ready(); err != nil {
		return err
	}
	if !s.view.Recovered() {
		return fmt.Errorf("%w: lagging behind the table (recovering)", ErrNotReady)
	}
	if !s.view.Running() {
		return fmt.Errorf("%w: lagging behind the table (reconnecting)", ErrNotReady)
	}
	return nil
}
