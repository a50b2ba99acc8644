package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
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

// Every flag of every command is documented in the README, in its
// command's section.
func TestReadmeDocumentsEveryFlag(t *testing.T) {
	doc := readme(t)
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
			if !strings.Contains(section, "`--"+m[1]+"`") {
				t.Errorf("README's watershed %s section lacks --%s", name, m[1])
			}
		}
	}
}
