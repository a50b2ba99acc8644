package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// maxSecretFileBytes bounds what is read of a secret file: a secret is
// short, and a path such as /dev/zero must not hang the start.
const maxSecretFileBytes = 64 << 10

// secretFlag is a secret and where it may come from, in this order: the
// flag --NAME (visible to every user of the machine: warned about), the
// flag --NAME-file (a file holding it), the environment variable ENV, the
// environment variable ENV_FILE (a file holding it), the default. The
// value never becomes a flag default, so usage texts cannot print it, and
// errors name only where it came from.
type secretFlag struct {
	name, env, what string
	def             string
	value, file     string
	valueSet        bool
	fileSet         bool
}

// newSecretFlag registers --name and --name-file on fs. what names the
// secret in messages ("device secret"); usage says what it is for; def is
// the value when no source gives one (shown in the usage only when it is
// not empty: demo defaults are documented, not secret).
func newSecretFlag(fs *flag.FlagSet, name, env, what, usage, def string) *secretFlag {
	s := &secretFlag{name: name, env: env, what: what, def: def}
	where := fmt.Sprintf("; from env %s, a file (--%s-file, env %s_FILE) or this flag (then visible to the machine's other users)", env, name, env)
	if def != "" {
		where += fmt.Sprintf(" (default %q)", def)
	}
	fs.Func(name, usage+where, func(v string) error {
		s.value, s.valueSet = v, true
		return nil
	})
	fs.Func(name+"-file", fmt.Sprintf("`file` holding the %s (env %s_FILE)", what, env), func(v string) error {
		s.file, s.fileSet = v, true
		return nil
	})
	return s
}

// resolve returns the secret, or "" when no source gives one. A secret
// given as a flag value draws a warning on log (which may be nil).
func (s *secretFlag) resolve(log *slog.Logger) (string, error) {
	if s.valueSet && s.fileSet {
		return "", fmt.Errorf("--%s and --%s-file: give one", s.name, s.name)
	}
	if s.valueSet {
		if log != nil && s.value != "" {
			log.Warn("a secret was given on the command line, where the machine's other users can read it; prefer the environment or a file",
				"flag", "--"+s.name, "env", s.env, "file_flag", "--"+s.name+"-file")
		}
		return s.value, nil
	}
	if s.fileSet {
		return readSecretFile("--"+s.name+"-file", s.file)
	}
	v, vok := os.LookupEnv(s.env)
	f, fok := os.LookupEnv(s.env + "_FILE")
	switch {
	case vok && v != "" && fok && f != "":
		return "", fmt.Errorf("%s and %s_FILE are both set: give one", s.env, s.env)
	case vok && v != "":
		return v, nil
	case fok && f != "":
		return readSecretFile(s.env+"_FILE", f)
	}
	return s.def, nil
}

// readSecretFile reads a secret from path (named by source in errors),
// without its line end. An empty file is an error. Errors never hold the
// file's content.
func readSecretFile(source, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", source, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", source, err)
	}
	if len(b) > maxSecretFileBytes {
		return "", fmt.Errorf("%s %s: over %d bytes; not a secret file", source, path, maxSecretFileBytes)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s %s: empty", source, path)
	}
	if strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("%s %s: more than one line", source, path)
	}
	return v, nil
}

// errNoSecret says that a required secret has no source.
func errNoSecret(s *secretFlag) error {
	return fmt.Errorf("no %s: set %s, %s_FILE, --%s-file or --%s", s.what, s.env, s.env, s.name, s.name)
}
