package settings_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/settings"
)

// The secret of these tests; no output may hold it.
const hunter = "hunter2-s3cr3t"

var token = settings.Secret("token", "the API token")

func secretSections() []settings.Section {
	return []settings.Section{
		{Name: "pipeline", Settings: []settings.Setting{window, count}},
		{Name: "group", Settings: []settings.Setting{name, token}},
	}
}

// bindSecret binds secretSections to a flag set writing its help to help,
// parses args and resolves with env.
func bindSecret(t *testing.T, help io.Writer, args []string, env map[string]string) (*flag.FlagSet, settings.Values) {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(help)
	b := settings.Bind(fs, secretSections(), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	v, err := b.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	return fs, v
}

func noSecret(t *testing.T, where, out string) {
	t.Helper()
	if strings.Contains(out, hunter) || strings.Contains(out, fmt.Sprintf("%x", hunter)) {
		t.Errorf("%s shows the secret: %s", where, out)
	}
}

// A secret comes from a flag, the environment or the config file like any
// setting, and Reveal gives it to the code that uses it.
func TestSecretResolves(t *testing.T) {
	_, v := bindSecret(t, io.Discard, []string{"--token", hunter}, nil)
	if got := token.Get(v).Reveal(); got != hunter {
		t.Errorf("from the flag: %q", got)
	}
	_, v = bindSecret(t, io.Discard, nil, map[string]string{"WATERSHED_TOKEN": hunter})
	if got := token.Get(v).Reveal(); got != hunter {
		t.Errorf("from the environment: %q", got)
	}
	_, v = bindSecret(t, io.Discard, []string{"--config", writeConfig(t, "[group]\ntoken = "+hunter+"\n")}, nil)
	if got := token.Get(v).Reveal(); got != hunter {
		t.Errorf("from the config file: %q", got)
	}
	if got := token.Get(settings.Values{}); got.Reveal() != "" || got.String() != "" {
		t.Errorf("the default secret is %q", got.Reveal())
	}
}

// --help (and the flag package's usage after a bad flag) shows no value
// of a secret, given or not.
func TestSecretNotInHelp(t *testing.T) {
	var help bytes.Buffer
	fs, _ := bindSecret(t, &help, []string{"--token", hunter}, map[string]string{"WATERSHED_TOKEN": hunter})
	fs.PrintDefaults()
	fs.Usage()
	if err := fs.Parse([]string{"--nope"}); err == nil {
		t.Fatal("an unknown flag parsed")
	}
	out := help.String()
	noSecret(t, "--help", out)
	_, line, _ := strings.Cut(out, "-token value")
	line, _, _ = strings.Cut(line, "\n  -")
	if !strings.Contains(line, "the API token; secret:") || strings.Contains(line, "(default") {
		t.Errorf("help of the secret:\n%s", out)
	}
	if f := fs.Lookup("token"); f.DefValue != "" || f.Value.String() != "" {
		t.Errorf("the flag shows %q (default %q)", f.Value.String(), f.DefValue)
	}
}

// The generated reference marks a secret and shows no default for it.
func TestSecretNotInReference(t *testing.T) {
	if sp := token.Spec(); !sp.Secret || sp.Default != "" || sp.Type != "secret" {
		t.Errorf("spec %+v", sp)
	}
	var ref bytes.Buffer
	if err := settings.WriteReference(&ref, secretSections()); err != nil {
		t.Fatal(err)
	}
	noSecret(t, "the reference", ref.String())
	if !strings.Contains(ref.String(), "| `--token` | `WATERSHED_TOKEN` | secret |  | the API token; secret:") {
		t.Errorf("reference:\n%s", ref.String())
	}
}

// Logs show a secret, alone or among the settings, redacted.
func TestSecretNotInLogs(t *testing.T) {
	_, v := bindSecret(t, io.Discard, []string{"--token", hunter, "--name", "visible"}, nil)
	for _, h := range []func(io.Writer) slog.Handler{
		func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
		func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
	} {
		var out bytes.Buffer
		log := slog.New(h(&out))
		log.Info("start", "token", token.Get(v), "settings", v)
		log.With("settings", v).Info("again", slog.Any("v", token.Get(v)), slog.Group("g", "token", token.Get(v)))
		noSecret(t, "the log", out.String())
		if !strings.Contains(out.String(), "[redacted]") || !strings.Contains(out.String(), "visible") {
			t.Errorf("log: %s", out.String())
		}
	}
}

// A printed configuration (Values, a secret, a struct holding them, with
// any verb or as JSON) and the errors of a config file show no secret.
func TestSecretNotPrinted(t *testing.T) {
	_, v := bindSecret(t, io.Discard, []string{"--token", hunter, "--name", "visible"}, nil)
	s := token.Get(v)
	holder := struct {
		Settings settings.Values
		Token    settings.SecretValue
		hidden   settings.SecretValue
	}{v, s, s}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		for _, x := range []any{v, s, holder, &holder, []any{s}, map[string]any{"t": s}} {
			noSecret(t, verb, fmt.Sprintf(verb, x))
		}
	}
	if got := v.String(); !strings.Contains(got, "token=[redacted]") || !strings.Contains(got, "name=visible") {
		t.Errorf("Values.String = %q", got)
	}
	j, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	noSecret(t, "JSON", string(j))
	// A malformed line of a section with a secret may be the secret's.
	for _, text := range []string{"[group]\ntoken " + hunter + "\n", "[group]\n" + hunter + "\n"} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		b := settings.Bind(fs, secretSections(), func(string) (string, bool) { return "", false })
		if err := fs.Parse([]string{"--config", writeConfig(t, text)}); err != nil {
			t.Fatal(err)
		}
		_, err := b.Resolve()
		if err == nil {
			t.Fatalf("%q resolved", text)
		}
		noSecret(t, "a config error", err.Error())
	}
}
