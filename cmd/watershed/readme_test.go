package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/settings"
)

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README's picture of the topology is what `watershed topology
// --format mermaid` prints of the declaration.
func TestReadmeShowsTheDeclaredTopology(t *testing.T) {
	var out, errb bytes.Buffer
	if code := dispatch(context.Background(), []string{"topology", "--format", "mermaid"}, nil, &out, &errb); code != 0 {
		t.Fatalf("topology exited %d: %s", code, errb.String())
	}
	if !strings.Contains(readme(t), "```mermaid\n"+out.String()+"```") {
		t.Fatalf("README.md's mermaid block differs from the declared topology; replace it with:\n%s", out.String())
	}
}

var flagLine = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

var update = flag.Bool("update", false, "rewrite the README's generated settings reference")

// settingsReference returns the generated block of the README.
func settingsReference(t *testing.T, reg *assembly.Registry) string {
	t.Helper()
	var b bytes.Buffer
	if err := settings.WriteReference(&b, reg.Sections()); err != nil {
		t.Fatal(err)
	}
	return "<!-- settings:begin -->\n" + b.String() + "<!-- settings:end -->"
}

var settingsBlock = regexp.MustCompile(`(?s)<!-- settings:begin -->.*<!-- settings:end -->`)

// The README's settings reference is the one the declarations generate.
func TestReadmeSettingsReference(t *testing.T) {
	doc := readme(t)
	want := settingsReference(t, registry())
	if !settingsBlock.MatchString(doc) {
		t.Fatal("README.md has no <!-- settings:begin --> ... <!-- settings:end --> block")
	}
	if *update {
		doc = settingsBlock.ReplaceAllLiteralString(doc, want)
		if err := os.WriteFile("../../README.md", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := settingsBlock.FindString(doc); got != want {
		t.Errorf("README.md's settings reference differs from the declarations; run go test ./cmd/watershed -run TestReadmeSettingsReference -update\nwant:\n%s", want)
	}
}

// Every flag of every command is documented in the README, in its
// command's section; a declared setting in the generated settings
// reference, to which the section links.
func TestReadmeDocumentsEveryFlag(t *testing.T) {
	doc := readme(t)
	isSetting := map[string]bool{settings.ConfigFlag: true}
	for _, sec := range registry().Sections() {
		for _, st := range sec.Settings {
			isSetting[st.Spec().Name] = true
		}
	}
	reference := settingsBlock.FindString(doc)
	names := make([]string, 0)
	for name := range commands() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var out, errb bytes.Buffer
		dispatch(context.Background(), []string{name, "-h"}, strings.NewReader(""), &out, &errb)
		start := strings.Index(doc, "### `watershed "+name+"`")
		if start < 0 {
			t.Errorf("README has no section for watershed %s", name)
			continue
		}
		section := doc[start:]
		if end := strings.Index(section[3:], "\n### "); end >= 0 {
			section = section[:end+3]
		}
		for _, m := range flagLine.FindAllStringSubmatch(errb.String()+out.String(), -1) {
			if isSetting[m[1]] {
				if !strings.Contains(section, "(#settings)") {
					t.Errorf("README's watershed %s section does not link the settings it takes (#settings)", name)
				}
				if m[1] != settings.ConfigFlag && !strings.Contains(reference, "`--"+m[1]+"`") {
					t.Errorf("README's settings reference lacks --%s", m[1])
				}
				continue
			}
			if !strings.Contains(section, "`--"+m[1]+"`") {
				t.Errorf("README's watershed %s section lacks --%s", name, m[1])
			}
		}
	}
}
