package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// watershed view refuses keys shorter than 24 characters, from the
// environment or a keys file, saying where and not what.
func TestViewRefusesShortKeys(t *testing.T) {
	for _, name := range []string{"WATERSHED_VIEW_KEY", "WATERSHED_VIEW_KEY_FILE", "WATERSHED_VIEW_KEYS_FILE", "WATERSHED_FLEETS_FILE",
		"WATERSHED_KAFKA_BROKERS", "WATERSHED_KAFKA_SASL_USER", "WATERSHED_KAFKA_SASL_PASSWORD", "WATERSHED_OPS_ADDR"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	const short = "sh0rt-key-x"
	if err := os.WriteFile(keys, []byte("# keys\nlong-enough-key-0123456789abc *\n"+short+" 1001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := runView(context.Background(), registry(), append([]string{"--brokers", "127.0.0.1:1"}, args...), strings.NewReader(""), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("--keys-file", keys); code != 2 || !strings.Contains(out, keys+" line 3") || !strings.Contains(out, "shorter than 24") || strings.Contains(out, short) {
		t.Errorf("short key in the keys file: exit %d, %q; want 2 naming the line, not the key", code, out)
	}
	t.Setenv("WATERSHED_VIEW_KEY", short)
	if code, out := run(); code != 2 || !strings.Contains(out, "full-scope key (11 characters)") || strings.Contains(out, short) {
		t.Errorf("short key in the environment: exit %d, %q; want 2 without the key", code, out)
	}
}

// watershed view --history-store opens its store before it asks Kafka: an
// unknown kind is exit 2, a missing local store exit 1, with the reason.
func TestViewHistoryStore(t *testing.T) {
	for _, name := range []string{"WATERSHED_VIEW_KEYS_FILE", "WATERSHED_FLEETS_FILE", "WATERSHED_KAFKA_SASL_USER", "WATERSHED_HISTORY_STORE", "WATERSHED_OPS_ADDR"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	t.Setenv("WATERSHED_VIEW_KEY", "long-enough-key-0123456789abc")
	for _, c := range []struct {
		store, want string
		code        int
	}{
		{"nowhere", "--history-store nowhere: unknown store", 2},
		{"local", "no local store in", 1},
	} {
		var out, errb bytes.Buffer
		code := runView(context.Background(), registry(), []string{"--brokers", "127.0.0.1:1", "--data-dir", t.TempDir(), "--ops-addr", "",
			"--history-store", c.store}, strings.NewReader(""), &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("--history-store %s: exit %d, %q; want %d with %q", c.store, code, errb.String(), c.code, c.want)
		}
	}
}
