package timewindows_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/examples/timewindows"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/topologytest"
)

func declare() (*topology.Topology, topology.Stream[timewindows.Reading]) {
	t := topology.New("sensors")
	readings := topology.NewStream(t, "readings", codecs.JSON[timewindows.Reading]{}, topology.External("sensors")).
		TimedBy(func(_ string, r timewindows.Reading) (time.Time, bool) { return r.At, true })
	return t, readings
}

var ten = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func TestHourly(t *testing.T) {
	topo, readings := declare()
	counts, windows := timewindows.Hourly(topo, readings)
	d := topologytest.New(t, topo)
	for _, m := range []int{5, 30, 59, 65, 69} { // 65 and 69: the next hour
		topologytest.Send(d, readings, "s1", timewindows.Reading{At: ten.Add(time.Duration(m) * time.Minute)})
	}
	if got := topologytest.Read(d, counts); len(got) != 0 {
		t.Fatalf("emitted within the grace: %+v", got)
	}
	if w := topologytest.Windows(d, windows, "s1", ten, ten.Add(2*time.Hour)); len(w) != 2 || w[0].Value != 3 || w[1].Value != 2 {
		t.Fatalf("windows %+v", w)
	}
	topologytest.Send(d, readings, "s1", timewindows.Reading{At: ten.Add(70 * time.Minute)})
	got := topologytest.Read(d, counts)
	if len(got) != 1 || got[0].Key != "s1" || got[0].Value.Count != 3 || !got[0].Value.Start.Equal(ten) {
		t.Fatalf("emitted %+v, want s1's 10:00 count of 3", got)
	}
}

func TestSilent(t *testing.T) {
	topo, readings := declare()
	alerts := timewindows.Silent(topo, readings)
	d := topologytest.New(t, topo)
	d.SetWall(ten)
	topologytest.Send(d, readings, "s1", timewindows.Reading{})
	d.AdvanceWall(9 * time.Minute)
	topologytest.Send(d, readings, "s1", timewindows.Reading{}) // moves the timer to 10:19
	d.AdvanceWall(9 * time.Minute)
	if got := topologytest.Read(d, alerts); len(got) != 0 {
		t.Fatalf("alerted early: %+v", got)
	}
	d.AdvanceWall(time.Minute)
	d.AdvanceWall(time.Hour)
	got := topologytest.Read(d, alerts)
	if len(got) != 1 || got[0].Key != "s1" || !got[0].Value.LastSeen.Equal(ten.Add(9*time.Minute)) {
		t.Fatalf("alerts %+v, want one for s1 last seen at 10:09", got)
	}
}

// docs/time.md shows this package's code verbatim; this keeps them equal.
func TestPageShowsThisCode(t *testing.T) {
	page, err := os.ReadFile("../../docs/time.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hourly.go", "silent.go", "join.go", "lookup.go"} {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(page), "```go\n"+string(src)+"```") {
			t.Errorf("docs/time.md does not show %s as it is; paste it again", name)
		}
	}
}

func TestJoinAndLookup(t *testing.T) {
	topo, readings := declare()
	sensorRows := topology.NewStream(topo, "sensors", codecs.JSON[timewindows.Sensor]{}, topology.External("inventory"))
	siteRows := topology.NewStream(topo, "sites", codecs.JSON[timewindows.Site]{}, topology.External("inventory"))
	located := timewindows.Locate(topo, readings, timewindows.Latest(topo, "sensor-table", sensorRows, codecs.JSON[timewindows.Sensor]{}))
	named := timewindows.Name(topo, located, timewindows.Latest(topo, "site-table", siteRows, codecs.JSON[timewindows.Site]{}))
	d := topologytest.New(t, topo)
	topologytest.Send(d, sensorRows, "s1", timewindows.Sensor{Site: "north"})
	topologytest.Send(d, sensorRows, "s2", timewindows.Sensor{Site: "south"})
	topologytest.Send(d, siteRows, "north", timewindows.Site{Name: "North gate"})
	topologytest.Send(d, readings, "s1", timewindows.Reading{At: ten, Value: 1})
	topologytest.Send(d, readings, "s2", timewindows.Reading{At: ten, Value: 2})
	topologytest.Send(d, readings, "s3", timewindows.Reading{At: ten, Value: 3}) // no sensor row: dropped
	got := topologytest.Read(d, named)
	if len(got) != 2 || got[0].Key != "s1" || got[0].Value.Site != "north" || got[0].Value.SiteName != "North gate" || got[0].Value.Value != 1 ||
		got[1].Key != "s2" || got[1].Value.Site != "south" || got[1].Value.SiteName != "unknown" || got[1].Value.Value != 2 {
		t.Fatalf("named %+v, want s1 at North gate and s2 at an unknown site", got)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// The bar: each example takes no more lines than its Kafka
// Streams equivalent. A line counts when it is in the function's body and
// holds code: blank lines, comments and the signature do not count (nor,
// in Kafka Streams, do imports and the value classes).
func TestExamplesAreAsShortAsKafkaStreams(t *testing.T) {
	for _, c := range []struct {
		file, fn string
		max      int
	}{{"hourly.go", "Hourly", 15}, {"silent.go", "Silent", 20}, {"join.go", "Locate", 3}} {
		n := bodyLines(t, c.file, c.fn)
		if n > c.max {
			t.Errorf("%s takes %d lines, Kafka Streams %d", c.fn, n, c.max)
		}
		t.Logf("%s: %d lines (Kafka Streams: %d)", c.fn, n, c.max)
	}
}

// bodyLines counts the lines of function fn's body in file that hold code.
func bodyLines(t *testing.T, file, fn string) int {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn || fd.Body == nil {
			continue
		}
		body := string(src[fset.Position(fd.Body.Lbrace).Offset+1 : fset.Position(fd.Body.Rbrace).Offset])
		n := 0
		for _, line := range strings.Split(body, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "//") {
				n++
			}
		}
		return n
	}
	t.Fatalf("%s has no function %s", file, fn)
	return 0
}
