package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/watershed-io/watershed/assembly"
	"github.com/watershed-io/watershed/processors"
	"github.com/watershed-io/watershed/settings"
	"github.com/watershed-io/watershed/views"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   any               `yaml:"depends_on"`
	Deploy      struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

var (
	composeDefault = regexp.MustCompile(`^\$\{[A-Z0-9_]+:-(.*)\}$`)
	envName        = regexp.MustCompile(`WATERSHED_[A-Z0-9_]+`)
	flagName       = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
)

// help returns the -h text of a subcommand of the binary.
func help(t *testing.T, name string) string {
	t.Helper()
	return helpOf(registry(), name)
}

// helpOf returns the -h text of a subcommand on registry reg.
func helpOf(reg *assembly.Registry, name string) string {
	var out, errb bytes.Buffer
	dispatchWith(context.Background(), reg, []string{name, "-h"}, strings.NewReader(""), &out, &errb)
	return out.String() + errb.String()
}

// checkGroupsRun checks that where runs every group of the binary's
// registry with at least two replicas, and no other group.
func checkGroupsRun(t *testing.T, where string, groupsRun map[string]int) {
	t.Helper()
	for _, p := range groupProblems(t, registry(), where, groupsRun) {
		t.Error(p)
	}
}

// groupProblems says where where does not run every group of the registry
// with at least two replicas, or runs another group; groupsRun counts the
// replicas of each group it runs. Added groups are the registry's, so a
// deployment file that runs an added group is accepted.
func groupProblems(t *testing.T, reg *assembly.Registry, where string, groupsRun map[string]int) []string {
	t.Helper()
	a, err := reg.Build(processors.Config{}, settings.Values{})
	if err != nil {
		t.Fatal(err)
	}
	groups := a.Topology.Groups()
	var out []string
	for _, g := range groups {
		if groupsRun[g] < 2 {
			out = append(out, fmt.Sprintf("group %s runs %d replicas in %s, want 2 or more", g, groupsRun[g], where))
		}
	}
	for g := range groupsRun {
		if !slices.Contains(groups, g) {
			out = append(out, fmt.Sprintf("%s runs unknown group %q", where, g))
		}
	}
	sort.Strings(out)
	return out
}

// readCompose parses docker-compose.yml.
func readCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	return cf
}

// docker-compose.yml parses, and what it asks of the binary is what the
// binary offers: subcommands, flags, environment variables, groups, ports.
func TestComposeAgreesWithTheBinary(t *testing.T) {
	for _, p := range composeProblems(t, registry(), readCompose(t), readScrapes(t)) {
		t.Error(p)
	}
}

// composeProblems checks a compose file, and the ports Prometheus scrapes
// its services on, against the binary built with registry reg.
func composeProblems(t *testing.T, reg *assembly.Registry, cf composeFile, scraped map[string]string) []string {
	t.Helper()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, s := range []string{"kafka", "cassandra", "prometheus", "grafana", "ingest", "view"} {
		if _, ok := cf.Services[s]; !ok {
			bad("no %s service", s)
		}
	}
	// Variables every command reads besides its flags' own.
	common := []string{"WATERSHED_LOG_LEVEL", "WATERSHED_DATA_DIR"}
	groupsRun := map[string]int{}
	cmds := commands()
	opsPorts := map[string]string{}
	for name, svc := range cf.Services {
		if svc.Image != "watershed:latest" {
			continue
		}
		if len(svc.Command) == 0 {
			bad("%s: no command", name)
			continue
		}
		sub := svc.Command[0]
		if _, ok := cmds[sub]; !ok {
			bad("%s: watershed has no %q command", name, sub)
			continue
		}
		h := helpOf(reg, sub)
		flags := flagName.FindAllStringSubmatch(h, -1)
		known := func(f string) bool {
			return slices.ContainsFunc(flags, func(m []string) bool { return m[1] == f })
		}
		for i, a := range svc.Command[1:] {
			if f, ok := strings.CutPrefix(a, "--"); ok && !known(f) {
				bad("%s: watershed %s has no flag --%s", name, sub, f)
			}
			if a == "--groups" {
				for _, g := range strings.Split(svc.Command[i+2], ",") {
					groupsRun[g] += max(svc.Deploy.Replicas, 1)
				}
			}
		}
		envs := envName.FindAllString(h, -1)
		for k := range svc.Environment {
			if !slices.Contains(envs, k) && !slices.Contains(common, k) {
				bad("%s: watershed %s does not read %s", name, sub, k)
			}
		}
		if sub == "topology" {
			continue
		}
		// Every long-running process has an operators' listener, which
		// Prometheus scrapes and nothing publishes; a public listener, when
		// there is one, is what the published ports and the health check
		// use (a processor group, without one, is checked on the
		// operators' listener).
		_, opsPort, err := net.SplitHostPort(svc.Environment["WATERSHED_OPS_ADDR"])
		if err != nil {
			bad("%s: no operators' listener address in its environment (WATERSHED_OPS_ADDR %q)", name, svc.Environment["WATERSHED_OPS_ADDR"])
			continue
		}
		opsPorts[name] = opsPort
		checked := opsPort
		for _, k := range []string{"WATERSHED_INGEST_ADDR", "WATERSHED_VIEW_ADDR"} {
			if v, ok := svc.Environment[k]; ok {
				_, port, err := net.SplitHostPort(v)
				if err != nil || port == opsPort {
					bad("%s: %s %q: want a port of its own", name, k, v)
				}
				checked = port
			}
		}
		if len(svc.Healthcheck.Test) == 0 {
			bad("%s: no health check", name)
		} else if u, err := url.Parse(svc.Healthcheck.Test[len(svc.Healthcheck.Test)-1]); err != nil || u.Port() != checked || u.Path != "/readyz" {
			bad("%s: health check %v does not ask /readyz on port %s", name, svc.Healthcheck.Test, checked)
		}
		public := []string{checked}
		if v, ok := svc.Environment["WATERSHED_CONSOLE_ADDR"]; ok {
			_, port, err := net.SplitHostPort(v)
			if err != nil || port == opsPort || port == checked {
				bad("%s: WATERSHED_CONSOLE_ADDR %q: want a port of its own", name, v)
			}
			public = append(public, port)
		}
		for _, p := range svc.Ports {
			if !slices.ContainsFunc(public, func(port string) bool { return strings.HasSuffix(p, ":"+port) }) || checked == opsPort {
				bad("%s: publishes %s; only a public listener's port (not the operators' %s) may be published", name, p, opsPort)
			}
		}
		// Trial defaults of secrets (${VAR:-default}) pass the length
		// rules of the commands that take them.
		if m := composeDefault.FindStringSubmatch(svc.Environment[views.KeyEnv]); m != nil && len(m[1]) < views.MinKeyLength {
			bad("%s: the default view key %q is shorter than %d characters: watershed view refuses it", name, m[1], views.MinKeyLength)
		}
	}
	problems = append(problems, groupProblems(t, reg, "docker-compose.yml", groupsRun)...)
	// Prometheus scrapes every watershed process on its port.
	for name, port := range opsPorts {
		if scraped[name] != port {
			bad("prometheus scrapes %s on %q, it serves /metrics on its operators' listener, port %s", name, scraped[name], port)
		}
	}
	return problems
}

// readScrapes returns the port deploy/prometheus/prometheus.yml scrapes
// each compose service on.
func readScrapes(t *testing.T) map[string]string {
	t.Helper()
	prom, err := os.ReadFile("../../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var pc struct {
		Scrape []struct {
			DNS []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(prom, &pc); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	scraped := map[string]string{}
	for _, sc := range pc.Scrape {
		for _, d := range sc.DNS {
			for _, n := range d.Names {
				scraped[n] = fmt.Sprint(d.Port)
			}
		}
	}
	return scraped
}
