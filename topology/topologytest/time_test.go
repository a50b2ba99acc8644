package topologytest_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

// fatalTB is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does.
type fatalTB struct {
	*testing.T
	fatal chan string
}

func (f fatalTB) Fatalf(format string, args ...any) {
	f.fatal <- fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Windows fails the test for a handle it cannot answer for (an aggregate
// not declared, a group the driver does not run) instead of answering "no
// windows".
func TestWindowsOfAWrongHandleFails(t *testing.T) {
	topo := topology.New("wrong")
	in := topology.NewStream(topo, "in", codecs.String{}, topology.WithPartitions(1), topology.External("test"))
	var hs []topology.Windowed[int]
	for _, g := range []string{"ran", "idle"} {
		hs = append(hs, topology.Aggregate(topo.Processor(g), in, topology.Tumbling(time.Hour), func() int { return 0 },
			func(_, _ string, n int) int { return n + 1 }, codecs.JSON[int]{}))
	}
	tb := fatalTB{T: t, fatal: make(chan string, 1)}
	d := topologytest.NewWith(tb, topo, topologytest.Options{Groups: []string{"ran"}})
	topologytest.SendAt(d, in, "a", time.Now(), "x")
	if ws := topologytest.Windows(d, hs[0], "a", time.Unix(0, 0), time.Now().Add(time.Hour)); len(ws) != 1 {
		t.Errorf("windows of the group run: %+v", ws)
	}
	for name, h := range map[string]topology.Windowed[int]{"idle": hs[1], "undeclared": {}} {
		go func() {
			topologytest.Windows(d, h, "a", time.Unix(0, 0), time.Now())
			tb.fatal <- ""
		}()
		if msg := <-tb.fatal; !strings.Contains(msg, "topologytest: windows") {
			t.Errorf("Windows of the %s handle did not fail the test (%q)", name, msg)
		}
	}
}
