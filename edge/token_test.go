package edge

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func bearerV2(t *testing.T, secret []byte, id uint64, expires time.Time, gen uint32) string {
	t.Helper()
	tok, err := TokenV2(secret, id, expires, gen)
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

// writeRevocations replaces the revocation file at path, with a fresh
// modification time, and waits until the edge has loaded it.
func writeRevocations(t *testing.T, f *fixture, path, content string) {
	t.Helper()
	before := metric(t, f.reg, "watershed_edge_revocation_reloads_total", "result", "ok")
	replaceFile(t, path, content)
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, f.reg, "watershed_edge_revocation_reloads_total", "result", "ok") == before {
		if time.Now().After(deadline) {
			t.Fatal("the edge did not reload the changed revocation file")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// replaceFile replaces the file at path whole, as docs/security.md advises.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestTokenV2(t *testing.T) {
	revPath := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(revPath, []byte("# none yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *Options) {
		o.RevocationFile = revPath
		o.RevocationCheckInterval = 10 * time.Millisecond
	}, nil)
	const id = 4242
	pkg := testPackage(t, id, false)
	later := testNow.Add(720 * time.Hour)
	expect := func(name, auth string, code int, reason string) {
		t.Helper()
		before := metric(t, f.reg, "watershed_edge_rejected_total", "reason", reason)
		r := f.post(t, pkg, auth)
		if r.code != code {
			t.Errorf("%s: %s, want %d", name, describe(r), code)
		}
		if reason != "" {
			if got := metric(t, f.reg, "watershed_edge_rejected_total", "reason", reason); got != before+1 {
				t.Errorf("%s: rejected_total{reason=%s} = %v, want %v", name, reason, got, before+1)
			}
		}
	}
	valid := bearerV2(t, testSecret, id, later, 0)
	if n := len(strings.TrimPrefix(valid, "Bearer ")); n != 67 || v2TokenLen != 67 {
		t.Errorf("token of %d characters, want %d", n, v2TokenLen)
	}
	expect("valid", valid, http.StatusAccepted, "")
	expect("under the previous secret", bearerV2(t, testPrevSecret, id, later, 0), http.StatusAccepted, "")
	expect("expired", bearerV2(t, testSecret, id, testNow.Add(-time.Second), 0), http.StatusUnauthorized, reasonExpiredToken)
	expect("expiring this second", bearerV2(t, testSecret, id, testNow.Truncate(time.Second), 0), http.StatusUnauthorized, reasonExpiredToken)
	expect("another device's", bearerV2(t, testSecret, id+1, later, 0), http.StatusUnauthorized, reasonBadToken)
	expect("another secret", bearerV2(t, []byte("some-other-fleet-secret-0123456789"), id, later, 0), http.StatusUnauthorized, reasonBadToken)

	// Tampering: every field is under the MAC, and the MAC is checked whole.
	raw := strings.TrimPrefix(valid, "Bearer ")
	parsed, ok := parseV2(strings.TrimPrefix(raw, v2Prefix))
	if !ok || parsed.deviceID != id || parsed.expires != later.Unix() || parsed.generation != 0 {
		t.Fatalf("parseV2(%q) = %+v, %v", raw, parsed, ok)
	}
	for _, pos := range []int{3, 14, 20, 30, 66} { // device id, expiry, generation, MAC, MAC's end
		b := []byte(raw)
		b[pos] = 'A' // another base64url character
		if raw[pos] == 'A' {
			b[pos] = 'B'
		}
		expect(fmt.Sprintf("tampered at %d", pos), "Bearer "+string(b), http.StatusUnauthorized, reasonBadToken)
	}
	expect("truncated", "Bearer "+raw[:len(raw)-1], http.StatusUnauthorized, reasonBadToken)
	expect("padded", "Bearer "+raw+"=", http.StatusUnauthorized, reasonBadToken)

	// Revocation: the whole device, then generations below 3, then none,
	// each picked up from the changed file without a restart.
	gen3 := bearerV2(t, testSecret, id, later, 3)
	writeRevocations(t, f, revPath, "4242  # lost vehicle\n")
	expect("revoked device, v2", valid, http.StatusUnauthorized, reasonRevokedToken)
	expect("revoked device, v1", bearerFor(testSecret, id), http.StatusUnauthorized, reasonRevokedToken)
	expect("revoked device, new generation", gen3, http.StatusUnauthorized, reasonRevokedToken)
	expect("another device", bearerV2(t, testSecret, id+7, later, 0), http.StatusUnauthorized, reasonBadToken) // its token does not fit pkg's id
	writeRevocations(t, f, revPath, "4242 3\n")
	expect("generation 0 under a minimum of 3", valid, http.StatusUnauthorized, reasonRevokedToken)
	expect("v1 under a minimum of 3", bearerFor(testSecret, id), http.StatusUnauthorized, reasonRevokedToken)
	expect("generation 3", gen3, http.StatusAccepted, "")
	writeRevocations(t, f, revPath, "")
	expect("un-revoked", valid, http.StatusAccepted, "")

	// A file that does not parse keeps the entries in force.
	replaceFile(t, revPath, "4242\n")
	if err := f.edge.ReloadRevocations(); err != nil { // as on SIGHUP
		t.Fatal(err)
	}
	expect("revoked on SIGHUP", valid, http.StatusUnauthorized, reasonRevokedToken)
	replaceFile(t, revPath, "4242 not-a-generation\n")
	if err := f.edge.ReloadRevocations(); err == nil {
		t.Error("a malformed revocation file was loaded")
	}
	expect("still revoked after a malformed file", valid, http.StatusUnauthorized, reasonRevokedToken)
	if got := metric(t, f.reg, "watershed_edge_revocation_reloads_total", "result", "error"); got < 1 {
		t.Errorf("revocation_reloads_total{result=error} = %v", got)
	}
}

func TestV1TokensCountedAndRefusable(t *testing.T) {
	f := newFixture(t, nil, nil)
	const id = 31
	if r := f.post(t, testPackage(t, id, false), bearerFor(testSecret, id)); r.code != http.StatusAccepted {
		t.Fatalf("v1 token: %s", describe(r))
	}
	if got := metric(t, f.reg, "watershed_edge_v1_tokens_total", "", ""); got != 1 {
		t.Errorf("watershed_edge_v1_tokens_total = %v, want 1", got)
	}
	off := newFixture(t, func(o *Options) { o.RefuseV1Tokens = true }, nil)
	if r := off.post(t, testPackage(t, id, false), bearerFor(testSecret, id)); r.code != http.StatusUnauthorized {
		t.Errorf("v1 token with v1 refused: %s, want 401", describe(r))
	}
	if got := metric(t, off.reg, "watershed_edge_rejected_total", "reason", reasonV1Refused); got != 1 {
		t.Errorf("rejected_total{reason=%s} = %v, want 1", reasonV1Refused, got)
	}
	if r := off.post(t, testPackage(t, id, false), bearerV2(t, testSecret, id, testNow.Add(time.Hour), 0)); r.code != http.StatusAccepted {
		t.Errorf("v2 token with v1 refused: %s, want 202", describe(r))
	}
}

func TestRevocationFileFormat(t *testing.T) {
	m, err := parseRevocations([]byte("# comment\n\n12\n13 4\n13 2\n  14\t7 # trailing\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]uint64{12: revokedAll, 13: 4, 14: 7}
	if len(m) != len(want) {
		t.Fatalf("%v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("device %d: %d, want %d", k, m[k], v)
		}
	}
	for _, bad := range []string{"0\n", "x\n", "12 -1\n", "12 4294967296\n", "12 3 4\n"} {
		if _, err := parseRevocations([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestTokenV2RefusesExpiriesItCannotHold(t *testing.T) {
	for _, exp := range []time.Time{time.Unix(0, 0), time.Unix(1<<32, 0)} {
		if _, err := TokenV2(testSecret, 1, exp, 0); err == nil {
			t.Errorf("expiry %v accepted", exp)
		}
	}
}

// A changed revocation file is loaded by the watcher only once it stayed
// the same for one check: one caught while rewritten in place (truncated)
// is not loaded. A forced reload (SIGHUP) loads at once.
func TestChangedRevocationFileLoadsOnceSettled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked")
	replaceFile(t, path, "5\n")
	r, err := newRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil { // the first step of an in-place rewrite
		t.Fatal(err)
	}
	if loaded, err := r.reload(false); loaded || err != nil {
		t.Fatalf("first check of a changed file: loaded %v, %v; want it pending", loaded, err)
	}
	if r.minGeneration(5) != revokedAll {
		t.Fatal("device 5 un-revoked by a file caught mid-rewrite")
	}
	replaceFile(t, path, "5\n6 2\n")
	if loaded, _ := r.reload(false); loaded {
		t.Fatal("loaded on its first sight")
	}
	if loaded, err := r.reload(false); !loaded || err != nil || r.minGeneration(6) != 2 {
		t.Fatalf("second check of a settled file: loaded %v, %v, device 6 at %d", loaded, err, r.minGeneration(6))
	}
	replaceFile(t, path, "")
	if loaded, err := r.reload(true); !loaded || err != nil || r.minGeneration(5) != 0 {
		t.Fatalf("forced reload: loaded %v, %v, device 5 at %d", loaded, err, r.minGeneration(5))
	}
}
