// Package settings lets a processor package declare its settings once (a
// name, a default and a help text) and have every command that declares it
// offer them alike: as a flag --NAME, as the environment variable
// WATERSHED_NAME (upper case, '-' as '_') and as the key NAME in the
// processor's [section] of a config file (--config). A flag given on the
// command line wins over the environment, which wins over the config file,
// which wins over the default.
//
// The config file is lines of "key = value" under "[section]" headers;
// blank lines and lines starting with '#' are ignored, and every section and
// key must be a declared one, so that a typo is an error and not a default:
//
//	[pipeline]
//	dedupe-window = 12h
//
//	[speeding]
//	speeding-limit-kmh = 110
//
// A setting declared with Secret (a password, an API key, a token) never
// shows its value: --help and the reference show no default, and its value
// (a SecretValue) and any Values holding it print "[redacted]" through fmt,
// slog and text encodings.
//
// Declarations are values (a Var is immutable); the values a command
// resolves live in the Values it returns, so nothing here is package state.
package settings

import (
	"bufio"
	"bytes"
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ConfigFlag is the flag (and, upper-cased, WATERSHED_CONFIG the
// environment variable) that names the config file.
const ConfigFlag = "config"

// Spec describes one setting.
type Spec struct {
	// Name is the flag's name and the key in the config file.
	Name string
	// Env is the environment variable.
	Env string
	// Type names the value's type in help texts: int, float, duration,
	// string or text.
	Type string
	// Default is the default's text.
	Default string
	// Help says what the setting does.
	Help string
	// Secret marks a setting whose value is never shown (see Secret).
	Secret bool
}

// Setting is a declared setting; Var is the only implementation.
type Setting interface {
	// Spec returns the setting's description.
	Spec() Spec
	bind(fs *flag.FlagSet, usage string) func() any
	parse(s string) (any, error)
	defaultValue() any
}

// Var is a setting whose values are of type T.
type Var[T any] struct {
	spec    Spec
	def     T
	parseFn func(string) (T, error)
	bindFn  func(fs *flag.FlagSet, p *T, name string, def T, usage string)
}

// EnvName returns the environment variable of a setting name:
// "dedupe-window" is WATERSHED_DEDUPE_WINDOW.
func EnvName(name string) string {
	return "WATERSHED_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func newVar[T any](typ, name string, def T, defText, help string, parse func(string) (T, error),
	bind func(fs *flag.FlagSet, p *T, name string, def T, usage string)) Var[T] {
	return Var[T]{
		spec:    Spec{Name: name, Env: EnvName(name), Type: typ, Default: defText, Help: help},
		def:     def,
		parseFn: parse,
		bindFn:  bind,
	}
}

// Int declares an integer setting.
func Int(name string, def int, help string) Var[int] {
	return newVar("int", name, def, strconv.Itoa(def), help, strconv.Atoi,
		func(fs *flag.FlagSet, p *int, n string, d int, u string) { fs.IntVar(p, n, d, u) })
}

// Float declares a floating-point setting.
func Float(name string, def float64, help string) Var[float64] {
	return newVar("float", name, def, strconv.FormatFloat(def, 'g', -1, 64), help,
		func(s string) (float64, error) { return strconv.ParseFloat(s, 64) },
		func(fs *flag.FlagSet, p *float64, n string, d float64, u string) { fs.Float64Var(p, n, d, u) })
}

// Duration declares a duration setting (time.ParseDuration's form).
func Duration(name string, def time.Duration, help string) Var[time.Duration] {
	return newVar("duration", name, def, def.String(), help, time.ParseDuration,
		func(fs *flag.FlagSet, p *time.Duration, n string, d time.Duration, u string) {
			fs.DurationVar(p, n, d, u)
		})
}

// String declares a string setting.
func String(name, def, help string) Var[string] {
	return newVar("string", name, def, def, help, func(s string) (string, error) { return s, nil },
		func(fs *flag.FlagSet, p *string, n string, d string, u string) { fs.StringVar(p, n, d, u) })
}

// Text declares a setting of a type that reads and writes itself as text
// (encoding.TextUnmarshaler and TextMarshaler), such as processors.Fusion.
func Text[T encoding.TextMarshaler, P interface {
	*T
	encoding.TextUnmarshaler
}](name string, def T, help string) Var[T] {
	defText, err := def.MarshalText()
	if err != nil {
		defText = []byte(fmt.Sprint(def))
	}
	return newVar("text", name, def, string(defText), help,
		func(s string) (T, error) {
			var v T
			err := P(&v).UnmarshalText([]byte(s))
			return v, err
		},
		func(fs *flag.FlagSet, p *T, n string, d T, u string) { fs.TextVar(P(p), n, d, u) })
}

// Secret declares a secret setting: a password, an API key, a token. It has
// no default (an empty SecretValue when not given), and neither --help nor
// the reference nor a printed SecretValue or Values shows its value.
func Secret(name, help string) Var[SecretValue] {
	v := newVar("secret", name, SecretValue{}, "", help+"; secret: prefer the environment or the config file, as a flag is visible to the machine's other users",
		func(s string) (SecretValue, error) { return NewSecret(s), nil },
		func(fs *flag.FlagSet, p *SecretValue, n string, _ SecretValue, u string) { fs.Var(secretFlag{p}, n, u) })
	v.spec.Secret = true
	return v
}

// redacted is what a secret prints as.
const redacted = "[redacted]"

// SecretValue is the value of a secret setting. It prints as "[redacted]"
// (or as nothing when empty) whichever way it is printed: fmt with any
// verb, slog, encoding.TextMarshaler (so JSON). Reveal returns the value.
type SecretValue struct {
	// v is behind a pointer so that even a printer that reads unexported
	// fields by reflection (fmt on a struct holding a Values) shows an
	// address, not the secret.
	v *string
}

// NewSecret returns the secret value s (for Var.With and tests).
func NewSecret(s string) SecretValue { return SecretValue{v: &s} }

// Reveal returns the secret, for the code that uses it.
func (s SecretValue) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// String returns "[redacted]", or "" when the secret is empty.
func (s SecretValue) String() string {
	if s.Reveal() == "" {
		return ""
	}
	return redacted
}

// Format prints String for every verb, %#v and %x included.
func (s SecretValue) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// LogValue keeps the secret out of logs.
func (s SecretValue) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the secret out of text and JSON encodings.
func (s SecretValue) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// secretFlag is the flag of a secret setting: its String is always empty,
// so that the flag package shows no default and never echoes a value.
type secretFlag struct{ p *SecretValue }

func (f secretFlag) String() string { return "" }

func (f secretFlag) Set(s string) error {
	*f.p = NewSecret(s)
	return nil
}

// Spec returns the setting's description.
func (v Var[T]) Spec() Spec { return v.spec }

// Default returns the setting's default value.
func (v Var[T]) Default() T { return v.def }

// Get returns the setting's value in vals, or its default when vals does
// not hold it (the zero Values holds nothing: every setting is its default).
func (v Var[T]) Get(vals Values) T {
	if x, ok := vals.m[v.spec.Name].(T); ok {
		return x
	}
	return v.def
}

// With returns vals with the setting set to x (tests and callers that
// build values without flags).
func (v Var[T]) With(vals Values, x T) Values {
	m := make(map[string]any, len(vals.m)+1)
	for k, val := range vals.m {
		m[k] = val
	}
	m[v.spec.Name] = x
	return Values{m: m}
}

func (v Var[T]) bind(fs *flag.FlagSet, usage string) func() any {
	p := new(T)
	v.bindFn(fs, p, v.spec.Name, v.def, usage)
	return func() any { return *p }
}

func (v Var[T]) parse(s string) (any, error) {
	x, err := v.parseFn(s)
	if err != nil {
		return nil, err
	}
	return x, nil
}

func (v Var[T]) defaultValue() any { return v.def }

// Values are the resolved settings of one command. The zero value holds
// none, so every Get returns its default. Printed (fmt, slog) they show
// every setting as name=value, secrets redacted.
type Values struct {
	m map[string]any
}

// String returns the settings as "name=value" pairs sorted by name, the
// values of secret settings redacted.
func (v Values) String() string {
	var b strings.Builder
	for i, name := range v.names() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", name, v.m[name])
	}
	return b.String()
}

// LogValue logs the settings as a group, the values of secret settings
// redacted.
func (v Values) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(v.m))
	for _, name := range v.names() {
		attrs = append(attrs, slog.Any(name, v.m[name]))
	}
	return slog.GroupValue(attrs...)
}

func (v Values) names() []string {
	names := make([]string, 0, len(v.m))
	for name := range v.m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Section is the settings of one part of a program: the pipeline's, or one
// processor group's. Its name heads its part of the config file.
type Section struct {
	Name     string
	Settings []Setting
}

// Check reports settings declared twice, or with an empty name, across
// sections, and sections named twice.
func Check(sections []Section) error {
	var errs []error
	names := map[string]string{}
	seen := map[string]bool{}
	for _, s := range sections {
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("settings: section [%s] declared twice", s.Name))
		}
		seen[s.Name] = true
		for _, st := range s.Settings {
			n := st.Spec().Name
			switch {
			case n == "" || strings.ContainsAny(n, " =[]#"):
				errs = append(errs, fmt.Errorf("settings: [%s] declares a setting named %q", s.Name, n))
			case names[n] != "":
				errs = append(errs, fmt.Errorf("settings: %q is declared by [%s] and by [%s]", n, names[n], s.Name))
			case n == ConfigFlag:
				errs = append(errs, fmt.Errorf("settings: [%s] declares %q, the config file's flag", s.Name, n))
			default:
				names[n] = s.Name
			}
		}
	}
	return errors.Join(errs...)
}

// Binding is the settings bound to one command's flags.
type Binding struct {
	fs       *flag.FlagSet
	sections []Section
	flags    map[string]func() any
	config   *string
	lookup   func(string) (string, bool)
}

// Bind adds a flag for every setting of sections, and --config, to fs.
// After fs.Parse, Resolve returns their values. lookupEnv reads the
// environment (nil: os.LookupEnv).
func Bind(fs *flag.FlagSet, sections []Section, lookupEnv func(string) (string, bool)) *Binding {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	b := &Binding{fs: fs, sections: sections, flags: map[string]func() any{}, lookup: lookupEnv}
	b.config = fs.String(ConfigFlag, "", "config file: a [section] per processor group (and [pipeline]) of key = value lines, the keys being these settings' flag names; flags and then the environment win over it (env "+EnvName(ConfigFlag)+")")
	for _, s := range sections {
		for _, st := range s.Settings {
			sp := st.Spec()
			usage := fmt.Sprintf("%s (env %s; %s in [%s] of --config)", sp.Help, sp.Env, sp.Name, s.Name)
			b.flags[sp.Name] = st.bind(fs, usage)
		}
	}
	return b
}

// Resolve returns every bound setting's value: the flag when given, else
// the environment variable, else the config file's entry, else the
// default. Malformed values are errors naming where they came from.
func (b *Binding) Resolve() (Values, error) {
	given := map[string]bool{}
	b.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	path := *b.config
	if !given[ConfigFlag] {
		if v, ok := b.lookup(EnvName(ConfigFlag)); ok {
			path = v
		}
	}
	var file map[string]map[string]entry
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Values{}, fmt.Errorf("config file: %w", err)
		}
		if file, err = parseConfig(path, raw, b.sections); err != nil {
			return Values{}, err
		}
	}
	vals := Values{m: map[string]any{}}
	var errs []error
	for _, s := range b.sections {
		for _, st := range s.Settings {
			sp := st.Spec()
			if given[sp.Name] {
				vals.m[sp.Name] = b.flags[sp.Name]()
				continue
			}
			if text, ok := b.lookup(sp.Env); ok {
				v, err := st.parse(text)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s=%s: not a %s: %w", sp.Env, shown(sp, text), sp.Type, err))
					continue
				}
				vals.m[sp.Name] = v
				continue
			}
			if e, ok := file[s.Name][sp.Name]; ok {
				v, err := st.parse(e.value)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s:%d: %s = %s: not a %s: %w", path, e.line, sp.Name, shown(sp, e.value), sp.Type, err))
					continue
				}
				vals.m[sp.Name] = v
				continue
			}
			vals.m[sp.Name] = st.defaultValue()
		}
	}
	return vals, errors.Join(errs...)
}

// shown is how an error quotes a setting's text: never a secret's.
func shown(sp Spec, text string) string {
	if sp.Secret {
		return redacted
	}
	return strconv.Quote(text)
}

type entry struct {
	value string
	line  int
}

// parseConfig reads a config file, refusing unknown sections and keys.
func parseConfig(path string, raw []byte, sections []Section) (map[string]map[string]entry, error) {
	known := map[string][]string{}
	secret := map[string]bool{} // sections with a secret setting
	var sectionNames []string
	for _, s := range sections {
		sectionNames = append(sectionNames, s.Name)
		for _, st := range s.Settings {
			known[s.Name] = append(known[s.Name], st.Spec().Name)
			secret[s.Name] = secret[s.Name] || st.Spec().Secret
		}
	}
	out := map[string]map[string]entry{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["):
			name, ok := strings.CutSuffix(strings.TrimPrefix(line, "["), "]")
			name = strings.TrimSpace(name)
			if !ok {
				return nil, fmt.Errorf("%s:%d: %q: want [section]", path, n, line)
			}
			if _, ok := known[name]; !ok && !slices.Contains(sectionNames, name) {
				return nil, fmt.Errorf("%s:%d: unknown section [%s] (known: %s)", path, n, name, strings.Join(sectionNames, ", "))
			}
			section = name
			if out[section] == nil {
				out[section] = map[string]entry{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			key, value = strings.TrimSpace(key), strings.TrimSpace(value)
			if !ok || key == "" {
				if secret[section] {
					// The malformed line may be a secret's.
					return nil, fmt.Errorf("%s:%d: want key = value", path, n)
				}
				return nil, fmt.Errorf("%s:%d: %q: want key = value", path, n, line)
			}
			if section == "" {
				return nil, fmt.Errorf("%s:%d: %s outside a [section]", path, n, key)
			}
			if !slices.Contains(known[section], key) {
				return nil, fmt.Errorf("%s:%d: [%s] has no setting %q (it has: %s)", path, n, section, key, strings.Join(known[section], ", "))
			}
			if prev, dup := out[section][key]; dup {
				return nil, fmt.Errorf("%s:%d: %s set again (first on line %d)", path, n, key, prev.line)
			}
			out[section][key] = entry{value: value, line: n}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// WriteReference writes the markdown reference of sections: a table per
// section with each setting's flag, environment variable, type, default and
// help. The README holds it, generated.
func WriteReference(w io.Writer, sections []Section) error {
	var b strings.Builder
	for i, s := range sections {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "`[%s]`\n\n", s.Name)
		b.WriteString("| flag | environment | type | default | meaning |\n|---|---|---|---|---|\n")
		for _, st := range s.Settings {
			sp := st.Spec()
			fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s | %s |\n", sp.Name, sp.Env, sp.Type, shownDefault(sp.Default), strings.ReplaceAll(sp.Help, "|", "\\|"))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func shownDefault(d string) string {
	if d == "" {
		return ""
	}
	return "`" + d + "`"
}
