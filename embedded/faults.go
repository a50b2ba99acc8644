package embedded

import "github.com/twmb/franz-go/pkg/kfake"

// Fault makes the broker answer the requests the faults match with their
// errors (see kfake.Fault), so that a test can refuse, say, the produce
// requests of one topic once. Remove the returned handle's faults to end
// them before their count runs out.
func (b *Broker) Fault(faults ...kfake.Fault) *kfake.FaultHandle {
	return b.cluster.Fault(faults...)
}
