package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// good is a small valid manifest that each case breaks in one place.
const good = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: web:1
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
          resources:
            requests:
              memory: 128Mi
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: http
`

// validate runs the validator on one file holding manifest.
func validate(t *testing.T, manifest string) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{path}, &out, &errb)
	return code, errb.String()
}

func TestValidManifestPasses(t *testing.T) {
	if code, errs := validate(t, good); code != 0 {
		t.Fatalf("exit %d on a valid manifest:\n%s", code, errs)
	}
}

// Each broken manifest fails, with a message that names the problem.
func TestBrokenManifestsFail(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"misspelled field", "containerPort: 8080", "containerPrt: 8080", `unknown field "spec.template.spec.containers[0].ports[0].containerPrt"`},
		{"misspelled top-level field", "  replicas: 2", "  replica: 2", `unknown field "spec.replica"`},
		{"wrong type", "replicas: 2", `replicas: "two"`, "replicas"},
		{"bad quantity", "memory: 128Mi", "memory: 128Mo", "quantities must match"},
		{"duplicate key", "  replicas: 2", "  replicas: 2\n  replicas: 3", "replicas"},
		{"unknown kind", "kind: Service", "kind: Servce", `unknown apiVersion "v1" and kind "Servce"`},
		{"selector does not match", "      app: web\n  template", "      app: api\n  template", "does not match the pod template's labels"},
		{"probe names no port", "              port: http\n", "              port: htp\n", `port "htp" names no container port`},
		{"enum value", "containerPort: 8080", "containerPort: 8080\n              protocol: TPC", `protocol "TPC"`},
		{"no image", "          image: web:1\n", "", "image is required"},
		{"bad name", "  name: web\nspec:\n  replicas", "  name: Web_1\nspec:\n  replicas", `metadata.name "Web_1"`},
		{"service targets no port", "targetPort: http", "targetPort: web", `targetPort "web" is no container port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(good, tc.from, tc.to, 1)
			if broken == good {
				t.Fatalf("the case changes nothing: %q not in the manifest", tc.from)
			}
			code, errs := validate(t, broken)
			if code != 1 {
				t.Fatalf("exit %d, want 1; output:\n%s", code, errs)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, errs)
			}
		})
	}
}

// The project's manifests pass.
func TestProjectManifestsPass(t *testing.T) {
	files, err := filepath.Glob("../*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	var out, errb bytes.Buffer
	if code := run(files, &out, &errb); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errb.String())
	}
}
