package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest document.
type object struct {
	where string // file and document number, for messages
	kind  string
	name  string
	obj   any // a pointer to the k8s.io/api type of kind
}

func (o object) String() string { return fmt.Sprintf("%s: %s %s", o.where, o.kind, o.name) }

// newObject returns a pointer to the API type of apiVersion and kind, or
// nil when the validator does not know it (then it is an error: the
// manifests use only these kinds).
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "v1 Service":
		return &corev1.Service{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "batch/v1 Job":
		return &batchv1.Job{}
	}
	return nil
}

// decodeFile splits raw into its YAML documents and decodes each strictly
// into its API type, then checks it alone.
func decodeFile(path string, raw []byte) ([]object, []error) {
	var objs []object
	var errs []error
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		where := fmt.Sprintf("%s#%d", path, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			break
		}
		if isEmpty(doc) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		obj := newObject(tm.APIVersion, tm.Kind)
		if obj == nil {
			errs = append(errs, fmt.Errorf("%s: unknown apiVersion %q and kind %q", where, tm.APIVersion, tm.Kind))
			continue
		}
		// Strict: duplicate keys, wrong types and unknown fields (named
		// by their path) fail.
		if err := decodeStrict(doc, obj); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", where, tm.Kind, err))
			continue
		}
		o := object{where: where, kind: tm.Kind, name: metaOf(obj).Name, obj: obj}
		objs = append(objs, o)
		for _, e := range checkObject(o) {
			errs = append(errs, fmt.Errorf("%s: %w", o, e))
		}
	}
	return objs, errs
}

// decodeStrict decodes a YAML document into obj as the API server's
// strict field validation does.
func decodeStrict(doc []byte, obj any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// isEmpty reports whether doc holds only comments and blank lines.
func isEmpty(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}
