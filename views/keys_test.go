package views

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const keyFile = `# view API keys
# key                 scope
ops-0123456789abcdef  *          # operators see everything

north-team-key        fleet:north
mixed-key             fleet:south,1001  3001
   indented-key	      2001
`

const fleetFile = `# device fleet
1001 north
1002 north   # spare
2001 south
`

func TestParseKeys(t *testing.T) {
	k, err := ParseKeys("keys", strings.NewReader(keyFile), "fleets", strings.NewReader(fleetFile))
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 4 {
		t.Errorf("%d keys, want 4", k.Len())
	}
	for key, want := range map[string][]uint64{
		"ops-0123456789abcdef": {1001, 1002, 2001, 3001, 4001},
		"north-team-key":       {1001, 1002},
		"mixed-key":            {1001, 2001, 3001},
		"indented-key":         {2001},
	} {
		sc := k.lookup(key)
		if sc == nil {
			t.Errorf("key %s not found", key)
			continue
		}
		for _, id := range []uint64{1001, 1002, 2001, 3001, 4001} {
			in := false
			for _, w := range want {
				in = in || w == id
			}
			if got := k.sees(sc, id); got != in {
				t.Errorf("key %s sees %d: %v, want %v", key, id, got, in)
			}
		}
	}
	for _, wrong := range []string{"", "ops", "ops-0123456789abcdeF", "*", "north", "#"} {
		if k.lookup(wrong) != nil {
			t.Errorf("%q accepted as a key", wrong)
		}
	}
}

func TestParseKeysErrors(t *testing.T) {
	for _, c := range []struct {
		name, keys, fleets, want string
	}{
		{"no scope", "# c\nkey1\n", "", "keys line 2: want KEY SCOPE"},
		{"bad device", "key1 12x\n", "", "keys line 1: a scope item of 3 characters"},
		{"negative device", "key1 -1\n", "", "keys line 1"},
		{"leading zero", "key1 0100\n", "", "keys line 1"},
		{"star and more", "key1 *,1001\n", "", `keys line 1: "*" must be the whole scope`},
		{"star twice", "key1 * *\n", "", `keys line 1: "*" must be the whole scope`},
		{"stray comma", "key1 1001,\n", "", "keys line 1: empty scope item"},
		{"unknown fleet", "key1 fleet:west\n", "1001 north\n", `keys line 1: fleet "west" has no devices`},
		{"fleet without file", "key1 fleet:north\n", "", `keys line 1: fleet "north" has no devices`},
		{"empty fleet name", "key1 fleet:\n", "", "keys line 1: empty fleet name"},
		{"duplicate key", "key1 *\n\nkey1 1001\n", "", "keys line 3: key already given on line 1"},
		{"bad key character", "ke\"y 1001\n", "", "keys line 1: key has a character"},
		{"key of =", "== *\n", "", "keys line 1: key of only"},
		{"no keys", "# nothing\n\n", "", "keys: no keys"},
		{"fleet file fields", "key1 *\n", "1001\n", "fleets line 1: want DEVICE_ID FLEET, got 1 fields"},
		{"fleet file three fields", "key1 *\n", "1001 north south\n", "fleets line 1: want DEVICE_ID FLEET"},
		{"fleet file bad id", "key1 *\n", "x north\n", "fleets line 1"},
		{"fleet file bad name", "key1 *\n", "1001 no/rth\n", "fleets line 1: fleet name"},
		{"fleet file duplicate", "key1 *\n", "1001 north\n# c\n1001 north\n", "fleets line 3: device 1001 already listed on line 1"},
	} {
		var fleets *strings.Reader
		if c.fleets != "" {
			fleets = strings.NewReader(c.fleets)
		}
		var err error
		if fleets != nil {
			_, err = ParseKeys("keys", strings.NewReader(c.keys), "fleets", fleets)
		} else {
			_, err = ParseKeys("keys", strings.NewReader(c.keys), "", nil)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestKeyErrorsHideKeys(t *testing.T) {
	const secret = "s3cr3t-value-ab\x01"
	_, err := ParseKeys("keys", strings.NewReader(secret+" *\n"), "", nil)
	if err == nil || strings.Contains(err.Error(), "s3cr") {
		t.Errorf("error %v: want one without the key", err)
	}
	_, err = NewKeys(map[string]Scope{"s3cr3t-value-ab": {}}, nil)
	if err == nil || strings.Contains(err.Error(), "s3cr") {
		t.Errorf("error %v: want one without the key", err)
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	kp, fp := filepath.Join(dir, "keys"), filepath.Join(dir, "fleets")
	if err := os.WriteFile(kp, []byte(keyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fp, []byte(fleetFile), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKeys(kp, fp)
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 4 {
		t.Errorf("%d keys", k.Len())
	}
	if _, err := LoadKeys(kp, ""); err == nil || !strings.Contains(err.Error(), kp+" line 5") {
		t.Errorf("without fleets: error %v, want one naming %s line 5", err, kp)
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing"), fp); err == nil {
		t.Error("missing key file: no error")
	}
	if _, err := LoadKeys(kp, filepath.Join(dir, "missing")); err == nil {
		t.Error("missing fleet file: no error")
	}
}

func TestFullScopeKey(t *testing.T) {
	k, err := FullScopeKey("env-key")
	if err != nil {
		t.Fatal(err)
	}
	sc := k.lookup("env-key")
	if sc == nil || !k.sees(sc, 0) || !k.sees(sc, 1<<64-1) {
		t.Error("full-scope key does not see every device")
	}
	for _, bad := range []string{"", " ", "a b", "key\n", "ключ", "==="} {
		if _, err := FullScopeKey(bad); err == nil {
			t.Errorf("FullScopeKey(%q): no error", bad)
		}
	}
	for _, good := range []string{"a", "abc==", "A-Z._~+/9"} {
		if _, err := FullScopeKey(good); err != nil {
			t.Errorf("FullScopeKey(%q): %v", good, err)
		}
	}
}

func TestNewKeysErrors(t *testing.T) {
	fleets := map[uint64]string{1: "north"}
	for name, c := range map[string]struct {
		scopes map[string]Scope
		fleets map[uint64]string
	}{
		"empty scope":    {map[string]Scope{"k": {}}, fleets},
		"all and more":   {map[string]Scope{"k": {All: true, Devices: []uint64{1}}}, fleets},
		"unknown fleet":  {map[string]Scope{"k": {Fleets: []string{"south"}}}, fleets},
		"bad fleet name": {map[string]Scope{"k": {Devices: []uint64{1}}}, map[uint64]string{1: "a b"}},
		"bad key":        {map[string]Scope{"k k": {All: true}}, nil},
	} {
		if _, err := NewKeys(c.scopes, c.fleets); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestMerge(t *testing.T) {
	env, err := FullScopeKey("env-key")
	if err != nil {
		t.Fatal(err)
	}
	file, err := ParseKeys("keys", strings.NewReader(keyFile), "fleets", strings.NewReader(fleetFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := file.Merge(env)
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 5 {
		t.Errorf("%d keys, want 5", m.Len())
	}
	if sc := m.lookup("north-team-key"); sc == nil || !m.sees(sc, 1002) || m.sees(sc, 2001) {
		t.Error("merged fleet scope wrong")
	}
	if _, err := m.Merge(env); err == nil {
		t.Error("key in both: no error")
	}
	other, err := NewKeys(map[string]Scope{"x": {Fleets: []string{"west"}}}, map[uint64]string{1001: "west"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.Merge(other); err == nil {
		t.Error("device in two fleets: no error")
	}
}
