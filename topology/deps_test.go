package topology_test

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// deps lists the packages pkg depends on (go list -deps, tests excluded),
// and the module's path.
func deps(t *testing.T, pkg string) (module string, out []string) {
	t.Helper()
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	list, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.TrimSpace(string(mod)), strings.Fields(string(list))
}

// TestFrameworkStandsAlone holds the framework to importing nothing of the
// application built on it: no package of the module outside topology/.
func TestFrameworkStandsAlone(t *testing.T) {
	for _, pkg := range []string{".", "./topologytest"} {
		module, list := deps(t, pkg)
		for _, d := range list {
			if strings.HasPrefix(d, module+"/") && d != module+"/topology" && !strings.HasPrefix(d, module+"/topology/") {
				t.Errorf("%s depends on %s, a package of the application", pkg, d)
			}
		}
	}
}

// TestFrameworkCoreHasNoPrometheus holds the core to its hooks: metrics
// reach Prometheus through topology/promhooks only.
func TestFrameworkCoreHasNoPrometheus(t *testing.T) {
	_, list := deps(t, ".")
	for _, d := range list {
		if strings.HasPrefix(d, "github.com/prometheus/") {
			t.Errorf("topology depends on %s", d)
		}
	}
}

// TestExportedAPINamesNoGokaOrSarama holds goka's and sarama's types out of
// topology's exported API, as go doc shows it: sarama's configurations are
// topology/kafkaclient's.
func TestExportedAPINamesNoGokaOrSarama(t *testing.T) {
	out, err := exec.Command("go", "doc", "-all", ".").Output()
	if err != nil {
		t.Fatalf("go doc: %v", err)
	}
	typ := regexp.MustCompile(`\b(goka|sarama|storage)\.[A-Z]`)
	for _, line := range strings.Split(string(out), "\n") {
		if typ.MatchString(line) {
			t.Errorf("the exported API names a goka or sarama type: %s", strings.TrimSpace(line))
		}
	}
}
