package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The grafana service of docker-compose.yml mounts the provisioning and
// the dashboards of deploy/grafana where Grafana and the dashboard provider
// look for them, and its data source is the compose Prometheus. (The
// dashboards' queries are checked in deploy/grafana.)
func TestComposeProvisionsGrafana(t *testing.T) {
	var cf composeFile
	readYAML(t, "../../docker-compose.yml", &cf)
	g, ok := cf.Services["grafana"]
	if !ok {
		t.Fatal("no grafana service")
	}
	if !strings.HasPrefix(g.Image, "grafana/grafana:") || strings.HasSuffix(g.Image, ":latest") {
		t.Errorf("grafana image %q: want grafana/grafana at a pinned version", g.Image)
	}
	mounts := map[string]string{} // container path -> repository folder
	for _, v := range g.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("grafana volume %q: want host:container[:ro]", v)
			continue
		}
		mounts[parts[1]] = parts[0]
		if _, err := os.Stat(filepath.Join("../..", parts[0])); err != nil {
			t.Errorf("grafana mounts %s, which is not in the repository: %v", parts[0], err)
		}
	}
	if mounts["/etc/grafana/provisioning"] != "./deploy/grafana/provisioning" {
		t.Errorf("grafana mounts %q at /etc/grafana/provisioning, want ./deploy/grafana/provisioning", mounts["/etc/grafana/provisioning"])
	}
	// The dashboard provider reads the folder the dashboards are mounted at.
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "../../deploy/grafana/provisioning/dashboards/watershed.yml", &prov)
	if len(prov.Providers) == 0 {
		t.Fatal("no dashboard provider")
	}
	for _, p := range prov.Providers {
		if mounts[p.Options.Path] != "./deploy/grafana/dashboards" {
			t.Errorf("the dashboard provider reads %s, where grafana mounts %q, want ./deploy/grafana/dashboards", p.Options.Path, mounts[p.Options.Path])
		}
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		rel, ok := strings.CutPrefix(home, prov.Providers[0].Options.Path+"/")
		if _, err := os.Stat(filepath.Join("../../deploy/grafana/dashboards", rel)); !ok || err != nil {
			t.Errorf("home dashboard %s is not a provisioned dashboard", home)
		}
	}
	// The data source is the compose Prometheus, on the port it listens on.
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, "../../deploy/grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("want one prometheus data source, have %+v", ds.Datasources)
	}
	u, err := url.Parse(ds.Datasources[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	prom, ok := cf.Services[u.Hostname()]
	if !ok || !strings.HasPrefix(prom.Image, "prom/prometheus:") {
		t.Errorf("data source %s: no Prometheus service %q", u, u.Hostname())
	}
	if !slices.ContainsFunc(prom.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+u.Port()) }) {
		t.Errorf("data source %s: Prometheus listens on %v", u, prom.Ports)
	}
	if !strings.Contains(fmt.Sprint(g.DependsOn), u.Hostname()) {
		t.Errorf("grafana does not depend on %s", u.Hostname())
	}
}

// readYAML decodes the YAML file at path into v.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
