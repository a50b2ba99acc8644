package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const vectorDir = "../../codecs/protocol/testdata/vectors"

func runDecodeT(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runDecode(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestDecodeVectorsHex feeds every vector as hex on stdin.
func TestDecodeVectorsHex(t *testing.T) {
	hexes, err := filepath.Glob(filepath.Join(vectorDir, "*.hex"))
	if err != nil || len(hexes) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	for _, hf := range hexes {
		name := strings.TrimSuffix(filepath.Base(hf), ".hex")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(hf)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(hf, ".hex") + ".json")
			if err != nil {
				t.Fatal(err)
			}
			code, out, errs := runDecodeT(t, string(in), "--hex")
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			sameJSON(t, []byte(out), want)
		})
	}
}

// TestDecodeFileAndWhitespace reads a binary package from a file, and the
// same package as hex broken over lines with spaces from stdin.
func TestDecodeFileAndWhitespace(t *testing.T) {
	hexText, err := os.ReadFile(filepath.Join(vectorDir, "v2-all-types.hex"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(vectorDir, "v2-all-types.json"))
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := hex.DecodeString(strings.TrimSpace(string(hexText)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pkg.bin")
	if err := os.WriteFile(path, pkg, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runDecodeT(t, "", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	sameJSON(t, []byte(out), want)

	var spaced strings.Builder
	for i, c := range strings.TrimSpace(string(hexText)) {
		spaced.WriteRune(c)
		if i%2 == 1 {
			spaced.WriteString(" ")
		}
		if i%32 == 31 {
			spaced.WriteString("\r\n\t")
		}
	}
	code, out, errs = runDecodeT(t, spaced.String(), "--hex")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	sameJSON(t, []byte(out), want)
}

func TestDecodeReject(t *testing.T) {
	in, err := os.ReadFile(filepath.Join(vectorDir, "header-crc.hex"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runDecodeT(t, string(in), "--hex")
	if code != 0 {
		t.Fatalf("a rejected package exits %d, want 0", code)
	}
	sameJSON(t, []byte(out), []byte(`{"reject": "header_crc"}`))
	// Random bytes are a package too, a rejected one.
	code, out, _ = runDecodeT(t, "hello")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	sameJSON(t, []byte(out), []byte(`{"reject": "bad_magic"}`))
}

func TestDecodeUnreadableInput(t *testing.T) {
	cases := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"bad hex digit", "5753zz", []string{"--hex"}},
		{"odd hex length", "575", []string{"--hex"}},
		{"missing file", "", []string{filepath.Join(t.TempDir(), "absent")}},
		{"unknown flag", "", []string{"--nope"}},
		{"two files", "", []string{"a", "b"}},
	}
	for _, c := range cases {
		code, out, errs := runDecodeT(t, c.stdin, c.args...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2", c.name, code)
		}
		if out != "" || errs == "" {
			t.Errorf("%s: stdout %q, stderr %q: want only an error on stderr", c.name, out, errs)
		}
	}
}
