package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// plantedSecrets are distinctive values for every secret the binary reads;
// none may appear in anything it prints.
var plantedSecrets = map[string]string{
	"WATERSHED_DEVICE_SECRET":          "planted-device-secret-7f3a9c1e5b2d4f60",
	"WATERSHED_PREVIOUS_DEVICE_SECRET": "planted-previous-secret-0d8e6b4a2c1f9e37",
	"WATERSHED_VIEW_KEY":               "planted-view-key-5c7e9a1b3d2f4e6a8c",
	"WATERSHED_KAFKA_SASL_PASSWORD":    "planted-kafka-password-9b1d3f5a7c2e4b6d",
	"WATERSHED_CASSANDRA_PASSWORD":     "planted-cassandra-password-2e4c6a8b0d1f3a5c",
}

// plantedKeyFileKey is a view key planted in a keys file, with an error on
// a later line so that loading it fails.
const plantedKeyFileKey = "planted-keys-file-key-3a5c7e9b1d2f4a6c8e0b"

// secretInvocations are, per command, argument lists that end in an error
// after the secrets were read (on top of -h, --help and a bogus flag, which
// every command gets).
var secretInvocations = map[string][][]string{
	"ingest": {
		{},
		{"--brokers", "127.0.0.1:1", "--max-inflight-bytes", "1"},
		{"--brokers", "127.0.0.1:1", "--kafka-sasl-mechanism", "PLAIN"},
		{"--brokers", "127.0.0.1:1", "--max-requests", "0"},
	},
	"view": {
		{},
		{"--brokers", "127.0.0.1:1", "--max-requests", "0"},
		{"--brokers", "127.0.0.1:1", "--keys-file", "KEYSFILE"},
		{"--brokers", "127.0.0.1:1", "--kafka-sasl-mechanism", "PLAIN"},
	},
	"run": {
		{},
		{"--brokers", "127.0.0.1:1", "--groups", "sink", "--store", "cassandra"},
		{"--brokers", "127.0.0.1:1", "--kafka-sasl-mechanism", "PLAIN"},
		{"--brokers", "127.0.0.1:1", "--groups", "nope"},
	},
	"demo":        {{"--partitions", "0"}, {"--rate", "-1"}},
	"simulate":    {{"--faults", "maybe"}},
	"dlq":         {{"list"}, {"stats", "--since", "whenever"}, {"show"}, {"replay", "--brokers", "127.0.0.1:1", "--kafka-sasl-mechanism", "PLAIN"}},
	"readings":    {{"--device", "1", "--store", "cassandra"}, {"--device", "x"}},
	"bench":       {{"--faults", "some"}, {"--messages-per-package", "many"}},
	"topology":    {{"--plan"}, {"--create", "--brokers", "127.0.0.1:1", "--kafka-sasl-mechanism", "PLAIN"}},
	"healthcheck": {{}, {"http://127.0.0.1:1/readyz"}},
	"decode":      {{"/nonexistent/package"}},
}

// plantSecrets sets every secret's environment variable (how == "env") or
// its _FILE variable naming a file that holds it (how == "file"), a user
// for each password so that the passwords are used, and a keys file; it
// returns the keys file's path.
func plantSecrets(t *testing.T, how string) string {
	t.Helper()
	dir := t.TempDir()
	for env, v := range plantedSecrets {
		t.Setenv(env, "")
		t.Setenv(env+"_FILE", "")
		os.Unsetenv(env)
		os.Unsetenv(env + "_FILE")
		switch how {
		case "env":
			t.Setenv(env, v)
		case "file":
			p := filepath.Join(dir, strings.ToLower(env))
			if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv(env+"_FILE", p)
		}
	}
	t.Setenv("WATERSHED_KAFKA_SASL_USER", "planted-user")
	t.Setenv("WATERSHED_CASSANDRA_USER", "planted-user")
	t.Setenv("WATERSHED_LOG_LEVEL", "debug")
	keys := filepath.Join(dir, "keys")
	body := plantedKeyFileKey + " *\n" + plantedSecrets["WATERSHED_VIEW_KEY"] + "x fleet:nowhere\n"
	if err := os.WriteFile(keys, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return keys
}

// No secret, from the environment or from a file, appears in any
// command's usage text (-h, --help, a bogus flag) or error output.
func TestSecretsAreNeverPrinted(t *testing.T) {
	names := make([]string, 0)
	for name := range commands() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, how := range []string{"env", "file"} {
		t.Run(how, func(t *testing.T) {
			keys := plantSecrets(t, how)
			for _, name := range names {
				runs := [][]string{{"-h"}, {"--help"}, {"--no-such-flag"}}
				runs = append(runs, secretInvocations[name]...)
				for _, args := range runs {
					args = append([]string{name}, args...)
					for i, a := range args {
						if a == "KEYSFILE" {
							args[i] = keys
						}
					}
					ctx, cancel := context.WithCancel(context.Background())
					cancel() // nothing may start for long
					var out, errb bytes.Buffer
					dispatch(ctx, args, strings.NewReader(""), &out, &errb)
					printed := out.String() + errb.String()
					if printed == "" {
						t.Errorf("watershed %s printed nothing; the test expects usage or an error", strings.Join(args, " "))
					}
					for env, v := range plantedSecrets {
						if strings.Contains(printed, v) {
							t.Errorf("watershed %s prints the secret of %s:\n%s", strings.Join(args, " "), env, printed)
						}
					}
					if strings.Contains(printed, plantedKeyFileKey) {
						t.Errorf("watershed %s prints a key of the keys file:\n%s", strings.Join(args, " "), printed)
					}
				}
			}
		})
	}
}
