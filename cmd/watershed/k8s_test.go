package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// k8sObject is the part of a Kubernetes manifest document that the
// consistency check reads; deploy/k8s/validate checks the rest against the
// API types.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas       *int `yaml:"replicas"`
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
						Items      []struct {
							Key  string `yaml:"key"`
							Path string `yaml:"path"`
						} `yaml:"items"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *k8sProbe  `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe  `yaml:"readinessProbe"`
	VolumeMounts   []k8sMount `yaml:"volumeMounts"`
}

type k8sMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// readK8s reads every document of deploy/k8s/*.yaml.
func readK8s(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob("../../deploy/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	var objs []k8sObject
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind != "" {
				objs = append(objs, o)
			}
		}
	}
	return objs
}

// The Kubernetes manifests ask of the binary only what it offers
// (subcommands, flags, environment variables, secret files), run every
// processor group of the topology in a StatefulSet with a volume, a budget
// and two replicas or more, probe and scrape the listeners the processes
// open, and autoscale the edge.
func TestK8sManifestsAgreeWithTheBinary(t *testing.T) {
	objs := readK8s(t)
	byKind := map[string]map[string]k8sObject{}
	for _, o := range objs {
		if byKind[o.Kind] == nil {
			byKind[o.Kind] = map[string]k8sObject{}
		}
		byKind[o.Kind][o.Metadata.Name] = o
	}
	common := []string{"WATERSHED_LOG_LEVEL", "WATERSHED_DATA_DIR"}
	cmds := commands()
	groupsRun := map[string]int{}
	subsRun := map[string]bool{}
	for _, o := range objs {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" && o.Kind != "Job" {
			continue
		}
		where := o.Kind + " " + o.Metadata.Name
		tmpl := o.Spec.Template
		for _, c := range tmpl.Spec.Containers {
			if !strings.HasPrefix(c.Image, "watershed:") {
				continue
			}
			if len(c.Command) > 0 {
				t.Errorf("%s: container %s overrides the image's entrypoint; give args", where, c.Name)
			}
			if len(c.Args) == 0 {
				t.Errorf("%s: container %s has no args (a watershed command)", where, c.Name)
				continue
			}
			sub := c.Args[0]
			if _, ok := cmds[sub]; !ok {
				t.Errorf("%s: watershed has no %q command", where, sub)
				continue
			}
			subsRun[sub] = true
			h := help(t, sub)
			flags := flagName.FindAllStringSubmatch(h, -1)
			known := func(f string) bool {
				return slices.ContainsFunc(flags, func(m []string) bool { return m[1] == f })
			}
			// Secret files the flags name, and where they are mounted.
			mounted := map[string]bool{}
			for _, vm := range c.VolumeMounts {
				for _, v := range tmpl.Spec.Volumes {
					if v.Name != vm.Name || v.Secret == nil {
						continue
					}
					for _, it := range v.Secret.Items {
						if _, ok := byKind["Secret"][v.Secret.SecretName].StringData[it.Key]; ok {
							mounted[path.Join(vm.MountPath, it.Path)] = true
						}
					}
				}
			}
			for i, a := range c.Args[1:] {
				f, ok := strings.CutPrefix(a, "--")
				if !ok {
					continue
				}
				f, val, hasVal := strings.Cut(f, "=")
				if !hasVal && i+2 < len(c.Args) {
					val = c.Args[i+2]
				}
				if !known(f) {
					t.Errorf("%s: watershed %s has no flag --%s", where, sub, f)
				}
				if f == "groups" {
					for _, g := range strings.Split(val, ",") {
						groupsRun[g] += max(ptrOr(o.Spec.Replicas, 1), 1)
					}
					if o.Kind != "StatefulSet" {
						t.Errorf("%s runs groups %s: a group keeps table state, run it in a StatefulSet", where, val)
					}
				}
				if strings.HasSuffix(f, "-file") && !mounted[val] {
					t.Errorf("%s: --%s %s is no file of a mounted Secret (mounted: %v)", where, f, val, mounted)
				}
			}
			// Environment variables, set one by one or from ConfigMaps.
			envs := envName.FindAllString(h, -1)
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef == nil {
					continue
				}
				cm, ok := byKind["ConfigMap"][ef.ConfigMapRef.Name]
				if !ok {
					t.Errorf("%s: no ConfigMap %s", where, ef.ConfigMapRef.Name)
				}
				for k, v := range cm.Data {
					env[k] = v
				}
			}
			for k, v := range env {
				if !slices.Contains(envs, k) && !slices.Contains(common, k) {
					t.Errorf("%s: watershed %s does not read %s", where, sub, k)
				}
				if strings.Contains(strings.ToLower(k), "secret") || strings.HasSuffix(k, "_KEY") || strings.HasSuffix(k, "_PASSWORD") {
					t.Errorf("%s: secret %s=%q in the environment: mount it as a file (--*-file)", where, k, v)
				}
			}
			if o.Kind == "Job" {
				continue
			}
			checkListeners(t, where, c, env, tmpl.Metadata.Annotations)
			if o.Kind == "StatefulSet" {
				dataDir := env["WATERSHED_DATA_DIR"]
				ok := false
				for _, vm := range c.VolumeMounts {
					for _, claim := range o.Spec.VolumeClaimTemplates {
						ok = ok || (vm.MountPath == dataDir && claim.Metadata.Name == vm.Name)
					}
				}
				if dataDir == "" || !ok {
					t.Errorf("%s: WATERSHED_DATA_DIR %q is not a persistent volume of its volumeClaimTemplates", where, dataDir)
				}
				if !hasBudget(byKind["PodDisruptionBudget"], tmpl.Metadata.Labels) {
					t.Errorf("%s: no PodDisruptionBudget selects its pods", where)
				}
			}
		}
	}
	// Every group of the topology runs (in a StatefulSet: checked above).
	checkGroupsRun(t, "deploy/k8s", groupsRun)
	for _, sub := range []string{"ingest", "view", "run", "topology"} {
		if !subsRun[sub] {
			t.Errorf("no workload runs watershed %s", sub)
		}
	}
	// The edge scales on its own.
	scaled := false
	for _, h := range byKind["HorizontalPodAutoscaler"] {
		d, ok := byKind[h.Spec.ScaleTargetRef.Kind][h.Spec.ScaleTargetRef.Name]
		if ok && len(d.Spec.Template.Spec.Containers) > 0 && slices.Equal(d.Spec.Template.Spec.Containers[0].Args[:1], []string{"ingest"}) {
			scaled = true
		}
	}
	if !scaled {
		t.Error("no HorizontalPodAutoscaler scales the ingest edge")
	}
}

// checkListeners checks a long-running process's ports, probes and
// scrape annotations against the listeners its environment opens: the
// operators' listener is scraped, a public listener is probed (a
// processor group, without one, is probed on the operators' listener).
func checkListeners(t *testing.T, where string, c k8sContainer, env, annotations map[string]string) {
	t.Helper()
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	_, opsPort, err := net.SplitHostPort(env["WATERSHED_OPS_ADDR"])
	if err != nil {
		t.Errorf("%s: no operators' listener (WATERSHED_OPS_ADDR %q)", where, env["WATERSHED_OPS_ADDR"])
		return
	}
	if ports["ops"] != opsPort {
		t.Errorf("%s: container port ops is %q, the operators' listener is on %s", where, ports["ops"], opsPort)
	}
	if annotations["prometheus.io/scrape"] != "true" || annotations["prometheus.io/port"] != opsPort || annotations["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: Prometheus annotations %v do not scrape /metrics on the operators' port %s", where, annotations, opsPort)
	}
	if v, ok := env["WATERSHED_CONSOLE_ADDR"]; ok {
		_, port, err := net.SplitHostPort(v)
		if err != nil || ports["console"] != port || port == opsPort {
			t.Errorf("%s: WATERSHED_CONSOLE_ADDR %q: want the container port console (%q), apart from the operators' %s", where, v, ports["console"], opsPort)
		}
	}
	probed := "ops"
	for _, k := range []string{"WATERSHED_INGEST_ADDR", "WATERSHED_VIEW_ADDR"} {
		if v, ok := env[k]; ok {
			_, port, err := net.SplitHostPort(v)
			if err != nil || ports["http"] != port || port == opsPort {
				t.Errorf("%s: %s %q: want the container port http (%q), apart from the operators' %s", where, k, v, ports["http"], opsPort)
			}
			probed = "http"
		}
	}
	for _, p := range []struct {
		probe *k8sProbe
		path  string
	}{{c.LivenessProbe, "/healthz"}, {c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != probed {
			t.Errorf("%s: want a probe of %s on port %s, have %+v", where, p.path, probed, p.probe)
		}
	}
}

// hasBudget reports whether a PodDisruptionBudget selects pods labelled l.
func hasBudget(pdbs map[string]k8sObject, l map[string]string) bool {
	for _, p := range pdbs {
		sel := p.Spec.Selector.MatchLabels
		if len(sel) == 0 {
			continue
		}
		all := true
		for k, v := range sel {
			all = all && l[k] == v
		}
		if all {
			return true
		}
	}
	return false
}

func ptrOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}
