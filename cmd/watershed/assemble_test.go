package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/codecs/protocol"
	"github.com/watershed-io/watershed/codecs/records"
	"github.com/watershed-io/watershed/embedded"
	"github.com/watershed-io/watershed/examples/speeding"
	"github.com/watershed-io/watershed/internal/poll"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/topology"
	"github.com/watershed-io/watershed/topology/kafkaclient"
)

// withSpeeding is the binary's registry with the guide's example group
// added, as its one line in groups.go would add it. The binary itself does
// not run the example.
func withSpeeding() *assembly.Registry { return registry().With(speeding.Group()) }

// run runs a command on reg and returns its exit code, stdout and stderr.
func runOn(ctx context.Context, reg *assembly.Registry, args ...string) (int, string, string) {
	var out, errb syncBuffer
	code := dispatchWith(ctx, reg, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// An added group is in `watershed topology`, with its table and topic; the
// binary's own registry does not hold the example.
func TestAddedGroupIsInTheTopology(t *testing.T) {
	code, out, errs := runOn(context.Background(), withSpeeding(), "topology")
	if code != 0 {
		t.Fatalf("topology exited %d: %s", code, errs)
	}
	for _, want := range []string{"speeding", speeding.Topic, "speeding-table", "count and report GPS readings over the speed limit"} {
		if !strings.Contains(out, want) {
			t.Errorf("watershed topology does not show %q:\n%s", want, out)
		}
	}
	_, plain, _ := runOn(context.Background(), registry(), "topology")
	if strings.Contains(plain, speeding.Topic) {
		t.Errorf("the binary's own topology runs the example group:\n%s", plain)
	}
}

// The added group's setting is a flag with its variable in the help of
// every command that declares the pipeline, and in the README reference
// the registry generates.
func TestAddedGroupSettingsInEveryCommand(t *testing.T) {
	reg := withSpeeding()
	for _, args := range [][]string{{"run"}, {"demo"}, {"bench"}, {"topology"}, {"view"}, {"tail"}, {"dlq", "list"}, {"dlq", "replay"}} {
		_, out, errs := runOn(context.Background(), reg, append(args, "-h")...)
		h := out + errs
		for _, want := range []string{"-speeding-limit-kmh", "WATERSHED_SPEEDING_LIMIT_KMH", "[speeding] of --config", "-dedupe-window", "-config"} {
			if !strings.Contains(h, want) {
				t.Errorf("watershed %s -h lacks %q", strings.Join(args, " "), want)
			}
		}
	}
	if ref := settingsReference(t, reg); !strings.Contains(ref, "`[speeding]`") || !strings.Contains(ref, "`--speeding-limit-kmh` | `WATERSHED_SPEEDING_LIMIT_KMH` | float | `130`") {
		t.Errorf("the generated settings reference lacks the group's setting:\n%s", ref)
	}
}

// A command refuses a setting's malformed value wherever it comes from,
// and a config file's unknown key.
func TestSettingsAreChecked(t *testing.T) {
	reg := withSpeeding()
	t.Setenv("WATERSHED_SPEEDING_LIMIT_KMH", "fast")
	if code, _, errs := runOn(context.Background(), reg, "topology"); code != 2 || !strings.Contains(errs, `WATERSHED_SPEEDING_LIMIT_KMH="fast": not a float`) {
		t.Errorf("topology with a malformed variable exited %d: %s", code, errs)
	}
	t.Setenv("WATERSHED_SPEEDING_LIMIT_KMH", "90")
	conf := filepath.Join(t.TempDir(), "watershed.conf")
	if err := os.WriteFile(conf, []byte("[speeding]\nspeeding-limit = 90\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runOn(context.Background(), reg, "topology", "--config", conf); code != 2 || !strings.Contains(errs, `[speeding] has no setting "speeding-limit"`) {
		t.Errorf("topology with an unknown key exited %d: %s", code, errs)
	}
}

// produce writes one record to topic, partitioned as the topology does.
func produce(t *testing.T, k topology.Kafka, topic, key string, value []byte) {
	t.Helper()
	p, err := sarama.NewSyncProducer(k.Brokers, kafkaclient.ProducerConfig(k))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)}); err != nil {
		t.Fatal(err)
	}
}

// tailLines parses tail's output.
func tailLines(t *testing.T, out string) []tailLine {
	t.Helper()
	var lines []tailLine
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l tailLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("tail printed a line that is not JSON: %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

func gpsAt(device uint64, at uint64, kmh float64) records.Reading {
	return records.Reading{DeviceID: device, TimeMs: at, Type: protocol.TypeGPS, SpeedKmh: kmh}
}

// `watershed run --groups speeding` runs the added group alone on a
// broker, with its setting from the command line, and `watershed tail`
// prints its output decoded; a record its codec refuses is an error line
// and tail goes on.
func TestAddedGroupRunsAndTailShowsIt(t *testing.T) {
	b, err := embedded.Start(embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	runAndTail(t, b.Addrs(), "")
}

// runAndTail runs the added group on brokers with prefix and checks its
// output and tail's, as TestAddedGroupRunsAndTailShowsIt says.
func runAndTail(t *testing.T, addrs []string, prefix string) {
	k := topology.Kafka{Brokers: addrs}
	brokers := strings.Join(addrs, ",")
	reg := withSpeeding()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var runErr syncBuffer
	go func() {
		done <- dispatchWith(ctx, reg, []string{"run", "--brokers", brokers, "--groups", "speeding", "--partitions", "2",
			"--data-dir", t.TempDir(), "--ops-addr", "", "--speeding-limit-kmh", "100", "--prefix", prefix}, nil, &syncBuffer{}, &runErr)
	}()
	// The run creates the topics it needs.
	admin, err := sarama.NewClusterAdmin(k.Brokers, kafkaclient.Config(k))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	err = poll.Until(ctx, time.Minute, 50*time.Millisecond, func() error {
		topics, err := admin.ListTopics()
		if err != nil {
			return err
		}
		if _, ok := topics[prefix+speeding.Topic]; !ok {
			return os.ErrNotExist
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the run did not create %s: %v\n%s", speeding.Topic, err, runErr.String())
	}
	rs, err := records.ReadingsCodec{}.Encode(records.Readings{DeviceID: 7, Items: []records.Reading{gpsAt(7, 1, 120), gpsAt(7, 2, 90), gpsAt(7, 3, 140)}})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, k, prefix+processors.TopicNormalized, "7", rs)

	// The topic before the prefix, with the prefix given.
	code, out, errs := runOn(ctx, reg, "tail", "--brokers", brokers, "--prefix", prefix, "--from-beginning", "--max", "2", "--timeout", "90s", speeding.Topic)
	if code != 0 {
		t.Fatalf("tail exited %d: %s\nrun: %s", code, errs, runErr.String())
	}
	lines := tailLines(t, out)
	if len(lines) != 2 {
		t.Fatalf("tail printed %d lines, want 2:\n%s", len(lines), out)
	}
	var speeds []float64
	for _, l := range lines {
		ev, _ := l.Value.(map[string]any)
		if l.Topic != prefix+speeding.Topic || l.Key != "7" || ev["device_id"] != "7" {
			t.Errorf("tail line %+v: want a speeding event of device 7", l)
		}
		speeds = append(speeds, ev["speed_kmh"].(float64))
	}
	// 120 km/h is speeding only under the limit given on the command line.
	if !(speeds[0] == 120 && speeds[1] == 140) {
		t.Errorf("speeding events at %v km/h, want 120 and 140 (limit 100)", speeds)
	}

	// A record the topic's codec refuses, between two good ones.
	produce(t, k, prefix+processors.TopicNormalized, "9", []byte("not readings"))
	produce(t, k, prefix+processors.TopicNormalized, "9", rs)
	// The full name, flags after it.
	code, out, errs = runOn(ctx, reg, "tail", "--brokers", brokers, "--prefix", prefix, prefix+processors.TopicNormalized, "--from-beginning", "--max", "3", "--timeout", "60s")
	if code != 0 {
		t.Fatalf("tail exited %d: %s", code, errs)
	}
	if lines := tailLines(t, out); len(lines) != 2 || lines[0].Value == nil || lines[1].Value == nil {
		t.Errorf("tail printed %d decoded lines, want the 2 good records:\n%s", len(lines), out)
	}
	if !strings.Contains(errs, "not a records.Readings") || !strings.Contains(errs, `(key "9")`) {
		t.Errorf("tail's error line does not name the refused record:\n%s", errs)
	}
	// An undeclared topic is refused with the declared ones.
	if code, _, errs := runOn(ctx, reg, "tail", "--brokers", brokers, "--prefix", prefix, "telemetry.nothing"); code != 2 || !strings.Contains(errs, prefix+speeding.Topic) {
		t.Errorf("tail of an undeclared topic exited %d: %s", code, errs)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Errorf("run exited %d: %s", code, runErr.String())
	}
}

// `watershed demo` runs the added group with the rest of the pipeline and
// prints the tail command that shows its output, which does.
func TestDemoRunsAndShowsAddedGroup(t *testing.T) {
	reg := withSpeeding()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- dispatchWith(ctx, reg, []string{"demo", "--devices", "10", "--rate", "40", "--faults=false", "--partitions", "2",
			"--ingest-addr", "127.0.0.1:0", "--view-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0",
			"--data-dir", t.TempDir(), "--speeding-limit-kmh", "20"}, nil, &out, &errb)
	}()
	var tailCmd []string
	err := poll.Until(ctx, 2*time.Minute, 50*time.Millisecond, func() error {
		for _, l := range strings.Split(out.String(), "\n") {
			if cmd, ok := strings.CutPrefix(strings.TrimSpace(l), "output       watershed "); ok {
				tailCmd = strings.Fields(cmd)
				return nil
			}
		}
		return os.ErrNotExist
	})
	if err != nil {
		cancel()
		<-done
		t.Fatalf("the demo printed no output line: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if tailCmd[0] != "tail" || tailCmd[len(tailCmd)-1] != speeding.Topic {
		t.Fatalf("the demo's output line is %q, want a tail of %s", tailCmd, speeding.Topic)
	}
	code, tailed, errs := runOn(ctx, reg, append(tailCmd[:len(tailCmd)-1], "--max", "3", "--timeout", "2m", speeding.Topic)...)
	if code != 0 {
		t.Fatalf("%v exited %d: %s", tailCmd, code, errs)
	}
	lines := tailLines(t, tailed)
	if len(lines) != 3 {
		t.Errorf("tail printed %d events, want 3:\n%s", len(lines), tailed)
	}
	for _, l := range lines {
		ev, _ := l.Value.(map[string]any)
		if kmh, _ := ev["speed_kmh"].(float64); kmh <= 20 {
			t.Errorf("demo's speeding event %+v is not over the limit given to the demo", l)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo exited %d: %s", code, errb.String())
	}
}

// The compose check takes its groups from the registry: a compose file
// that does not run the added group is refused naming it, and one that
// runs it (with its setting in the environment) is accepted, which the
// binary's own registry refuses as an unknown group.
func TestComposeCheckAcceptsAddedGroup(t *testing.T) {
	reg := withSpeeding()
	cf := readCompose(t)
	scraped := readScrapes(t)
	if got := strings.Join(composeProblems(t, reg, cf, scraped), "\n"); !strings.Contains(got, "group speeding runs 0 replicas in docker-compose.yml") {
		t.Errorf("a compose file without the added group passes:\n%s", got)
	}
	svc := cf.Services["alerts"]
	svc.Command = []string{"run", "--groups", "speeding"}
	svc.Environment = maps.Clone(svc.Environment)
	svc.Environment["WATERSHED_SPEEDING_LIMIT_KMH"] = "110"
	cf.Services["speeding"] = svc
	scraped["speeding"] = scraped["alerts"]
	if got := composeProblems(t, reg, cf, scraped); len(got) != 0 {
		t.Errorf("a compose file running the added group is refused:\n%s", strings.Join(got, "\n"))
	}
	got := strings.Join(composeProblems(t, registry(), cf, scraped), "\n")
	if !strings.Contains(got, `runs unknown group "speeding"`) || !strings.Contains(got, "does not read WATERSHED_SPEEDING_LIMIT_KMH") {
		t.Errorf("the binary's registry accepts a group it does not have:\n%s", got)
	}
}

// Every command that declares the pipeline declares it from the registry
// it is given: none builds its own.
func TestNoCommandDeclaresItsOwnPipeline(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(src, []byte("processors.New(")) {
			t.Errorf("%s declares the pipeline with processors.New instead of the registry", f)
		}
	}
}

// tail shows a table's deletion as null and a topic without a declared
// codec (a loop or retry topic) in hex.
func TestTailRecordForms(t *testing.T) {
	a, err := registry().Build(processors.Config{}, settings.Values{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	table, err := a.Topic("device-state-table")
	if err != nil || !table.Table {
		t.Fatalf("device-state-table: %+v, %v", table, err)
	}
	loop, err := a.Topic("dedupe-loop")
	if err != nil || loop.Decode != nil {
		t.Fatalf("dedupe-loop: %+v, %v", loop, err)
	}
	for _, c := range []struct {
		topic assembly.Topic
		value []byte
		want  string
	}{
		{table, nil, `"value":null`},
		{loop, []byte{1, 2}, `"value_hex":"0102"`},
	} {
		out.Reset()
		if err := printRecord(enc, c.topic, &sarama.ConsumerMessage{Topic: c.topic.Name, Key: []byte("7"), Value: c.value}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("%s: %s, want %s", c.topic.Name, out.String(), c.want)
		}
	}
	if err := printRecord(enc, table, &sarama.ConsumerMessage{Topic: table.Name, Key: []byte("7"), Value: []byte{0xff}}); err == nil ||
		!strings.Contains(err.Error(), "not a records.DeviceState") {
		t.Errorf("a refused table value: %v", err)
	}
}

// The guide's registration step shows groups.go as it is, with the
// example's line added.
func TestGuideShowsTheRegistration(t *testing.T) {
	guide, err := os.ReadFile("../../docs/adding-a-processor.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("groups.go")
	if err != nil {
		t.Fatal(err)
	}
	const head = "func registry() *assembly.Registry {\n\treturn assembly.New(\n"
	if !bytes.Contains(src, []byte(head)) {
		t.Fatalf("groups.go no longer declares the registry as the guide shows:\n%s", src)
	}
	if !bytes.Contains(guide, []byte("```go\n"+head+"\t\tspeeding.Group(),\n\t)\n}\n```")) {
		t.Error("docs/adding-a-processor.md does not show the registration as groups.go has it")
	}
}
