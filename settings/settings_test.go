package settings_test

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/watershed-io/watershed/settings"
)

// level is a text setting's type.
type level int

func (l level) MarshalText() ([]byte, error) { return []byte(strings.Repeat("+", int(l))), nil }

func (l *level) UnmarshalText(b []byte) error {
	if strings.Trim(string(b), "+") != "" {
		return io.ErrUnexpectedEOF
	}
	*l = level(len(b))
	return nil
}

var (
	window = settings.Duration("window", time.Hour, "the window")
	count  = settings.Int("count", 3, "the count")
	ratio  = settings.Float("ratio", 0.5, "the ratio")
	name   = settings.String("name", "n", "the name")
	lvl    = settings.Text[level]("level", 1, "the level")
)

func sections() []settings.Section {
	return []settings.Section{
		{Name: "pipeline", Settings: []settings.Setting{window, count}},
		{Name: "group", Settings: []settings.Setting{ratio, name, lvl}},
	}
}

// resolve binds the sections to a flag set, parses args and resolves with
// env as the environment.
func resolve(t *testing.T, args []string, env map[string]string) (settings.Values, error) {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b := settings.Bind(fs, sections(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return b.Resolve()
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A flag wins over the environment, which wins over the config file,
// which wins over the default.
func TestPrecedence(t *testing.T) {
	conf := writeConfig(t, "# the file\n[pipeline]\nwindow = 2h\ncount = 4\n\n[group]\nratio = 0.25\nname = from file\nlevel = +++\n")
	v, err := resolve(t, []string{"--config", conf, "--window", "3h"}, map[string]string{"WATERSHED_WINDOW": "5h", "WATERSHED_COUNT": "6"})
	if err != nil {
		t.Fatal(err)
	}
	if window.Get(v) != 3*time.Hour || count.Get(v) != 6 || ratio.Get(v) != 0.25 || name.Get(v) != "from file" || lvl.Get(v) != 3 {
		t.Errorf("got window %v count %d ratio %v name %q level %d", window.Get(v), count.Get(v), ratio.Get(v), name.Get(v), lvl.Get(v))
	}
	// The file may come from the environment too; without anything, defaults.
	v, err = resolve(t, nil, map[string]string{"WATERSHED_CONFIG": conf})
	if err != nil || count.Get(v) != 4 {
		t.Errorf("WATERSHED_CONFIG: count %d, %v", count.Get(v), err)
	}
	v, err = resolve(t, nil, nil)
	if err != nil || window.Get(v) != time.Hour || lvl.Get(v) != 1 || name.Get(v) != "n" {
		t.Errorf("defaults: %v %d %q %v", window.Get(v), lvl.Get(v), name.Get(v), err)
	}
	if count.Get(settings.Values{}) != 3 || lvl.Get(settings.Values{}) != 1 {
		t.Error("the zero Values is not the defaults")
	}
}

// Malformed values and unknown keys are errors that say where they are.
func TestMistakes(t *testing.T) {
	for text, want := range map[string]string{
		"[pipeline]\nwindow = soon\n":      "c.conf:2: window = \"soon\": not a duration",
		"[pipeline]\nratio = 1\n":          `c.conf:2: [pipeline] has no setting "ratio" (it has: window, count)`,
		"[nope]\n":                         "c.conf:1: unknown section [nope] (known: pipeline, group)",
		"count = 1\n":                      "c.conf:1: count outside a [section]",
		"[pipeline]\ncount\n":              `c.conf:2: "count": want key = value`,
		"[pipeline]\ncount=1\ncount = 2\n": "c.conf:3: count set again (first on line 2)",
		"[group]\nlevel = -\n":             `c.conf:2: level = "-": not a text`,
	} {
		_, err := resolve(t, []string{"--config", writeConfig(t, text)}, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %q, got %v", text, want, err)
		}
	}
	if _, err := resolve(t, nil, map[string]string{"WATERSHED_RATIO": "half"}); err == nil || !strings.Contains(err.Error(), `WATERSHED_RATIO="half": not a float`) {
		t.Errorf("a malformed variable: %v", err)
	}
	if _, err := resolve(t, []string{"--config", "/nonexistent/c.conf"}, nil); err == nil {
		t.Error("a missing config file is no error")
	}
	if err := settings.Check(append(sections(), settings.Section{Name: "group", Settings: []settings.Setting{settings.Int("count", 1, ""), settings.Int("config", 1, "")}})); err == nil ||
		!strings.Contains(err.Error(), "section [group] declared twice") || !strings.Contains(err.Error(), `"count" is declared by [pipeline] and by [group]`) || !strings.Contains(err.Error(), "the config file's flag") {
		t.Errorf("Check: %v", err)
	}
}

// The help of a setting names its variable and its config key; the
// reference is a table per section.
func TestHelpAndReference(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var help bytes.Buffer
	fs.SetOutput(&help)
	settings.Bind(fs, sections(), nil)
	fs.PrintDefaults()
	for _, want := range []string{"-ratio float", "the ratio (env WATERSHED_RATIO; ratio in [group] of --config) (default 0.5)", "-config string", "(default 1h0m0s)"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, help.String())
		}
	}
	var ref bytes.Buffer
	if err := settings.WriteReference(&ref, sections()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ref.String(), "`[group]`\n\n| flag | environment | type | default | meaning |") || !strings.Contains(ref.String(), "| `--level` | `WATERSHED_LEVEL` | text | `+` | the level |") {
		t.Errorf("reference:\n%s", ref.String())
	}
}
