package main

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// metaOf returns the object metadata of a decoded object.
func metaOf(obj any) *metav1.ObjectMeta {
	return obj.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta)
}

// workload is a pod template and where it comes from.
type workload struct {
	obj      object
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim
}

// workloadOf returns the pod template of a Deployment, StatefulSet or Job.
func workloadOf(o object) (workload, bool) {
	switch v := o.obj.(type) {
	case *appsv1.Deployment:
		return workload{obj: o, selector: v.Spec.Selector, template: v.Spec.Template}, true
	case *appsv1.StatefulSet:
		return workload{obj: o, selector: v.Spec.Selector, template: v.Spec.Template, claims: v.Spec.VolumeClaimTemplates}, true
	case *batchv1.Job:
		return workload{obj: o, selector: v.Spec.Selector, template: v.Spec.Template}, true
	}
	return workload{}, false
}

// checkObject checks the rules of one object that its schema does not
// express: required fields, names, selectors, references inside it.
func checkObject(o object) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	m := metaOf(o.obj)
	if m.Name == "" {
		add("metadata.name is required")
	}
	for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
		add("metadata.name %q: %s", m.Name, msg)
	}
	errs = append(errs, checkLabels("metadata.labels", m.Labels)...)
	if w, ok := workloadOf(o); ok {
		errs = append(errs, checkWorkload(w)...)
	}
	switch v := o.obj.(type) {
	case *appsv1.StatefulSet:
		if v.Spec.ServiceName == "" {
			add("spec.serviceName: the headless Service that names the replicas is required")
		}
		oneOf(add, "spec.podManagementPolicy", string(v.Spec.PodManagementPolicy), "", "OrderedReady", "Parallel")
		for _, c := range v.Spec.VolumeClaimTemplates {
			for _, m := range c.Spec.AccessModes {
				oneOf(add, "volumeClaimTemplate "+c.Name+" accessModes", string(m), "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
			}
		}
	case *corev1.ConfigMap:
		for k := range v.Data {
			for _, msg := range validation.IsConfigMapKey(k) {
				add("data key %q: %s", k, msg)
			}
		}
	case *corev1.Secret:
		for k := range v.StringData {
			for _, msg := range validation.IsConfigMapKey(k) {
				add("stringData key %q: %s", k, msg)
			}
		}
	case *corev1.Service:
		if len(v.Spec.Ports) == 0 {
			add("spec.ports: at least one port is required")
		}
		oneOf(add, "spec.type", string(v.Spec.Type), "", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
		for _, p := range v.Spec.Ports {
			oneOf(add, "port "+p.Name+" protocol", string(p.Protocol), "", "TCP", "UDP", "SCTP")
			if p.Port < 1 || p.Port > 65535 {
				add("port %q: %d is not a port number", p.Name, p.Port)
			}
		}
	case *autoscalingv2.HorizontalPodAutoscaler:
		if v.Spec.ScaleTargetRef.Kind == "" || v.Spec.ScaleTargetRef.Name == "" {
			add("spec.scaleTargetRef: kind and name are required")
		}
		if v.Spec.MaxReplicas < 1 || (v.Spec.MinReplicas != nil && *v.Spec.MinReplicas > v.Spec.MaxReplicas) {
			add("spec: minReplicas %v, maxReplicas %d: want 1 <= min <= max", v.Spec.MinReplicas, v.Spec.MaxReplicas)
		}
		if len(v.Spec.Metrics) == 0 {
			add("spec.metrics: none: the autoscaler would scale on nothing")
		}
		for i, m := range v.Spec.Metrics {
			where := fmt.Sprintf("spec.metrics[%d]", i)
			oneOf(add, where+".type", string(m.Type), "Resource", "Pods", "Object", "External", "ContainerResource")
			if m.Type == autoscalingv2.ResourceMetricSourceType {
				if m.Resource == nil {
					add("%s: type Resource needs resource", where)
					continue
				}
				oneOf(add, where+".resource.target.type", string(m.Resource.Target.Type), "Utilization", "Value", "AverageValue")
			}
		}
	case *policyv1.PodDisruptionBudget:
		if (v.Spec.MinAvailable == nil) == (v.Spec.MaxUnavailable == nil) {
			add("spec: give exactly one of minAvailable and maxUnavailable")
		}
		if v.Spec.Selector == nil {
			add("spec.selector is required")
		}
	}
	return errs
}

// checkLabels checks label keys and values.
func checkLabels(where string, l map[string]string) []error {
	var errs []error
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, fmt.Errorf("%s key %q: %s", where, k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, fmt.Errorf("%s %q value %q: %s", where, k, v, msg))
		}
	}
	return errs
}

// checkWorkload checks a pod template and the selector that owns it.
func checkWorkload(w workload) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	_, isJob := w.obj.obj.(*batchv1.Job)
	if w.selector == nil && !isJob {
		add("spec.selector is required")
	}
	if w.selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil {
			add("spec.selector: %v", err)
		} else if !sel.Matches(labels.Set(w.template.Labels)) {
			add("spec.selector %v does not match the pod template's labels %v", sel, w.template.Labels)
		}
	}
	errs = append(errs, checkLabels("spec.template.metadata.labels", w.template.Labels)...)
	spec := w.template.Spec
	switch rp := spec.RestartPolicy; {
	case isJob && rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever:
		add("a Job's restartPolicy must be OnFailure or Never, not %q", rp)
	case !isJob && rp != "" && rp != corev1.RestartPolicyAlways:
		add("restartPolicy %q: a %s's pods must restart Always", rp, w.obj.kind)
	}
	if len(spec.Containers) == 0 {
		add("spec.template.spec.containers: at least one container is required")
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			add("volume %q is declared twice", v.Name)
		}
		volumes[v.Name] = true
	}
	for _, c := range w.claims {
		volumes[c.Name] = true
		if len(c.Spec.AccessModes) == 0 {
			add("volumeClaimTemplate %q: accessModes are required", c.Name)
		}
		if _, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
			add("volumeClaimTemplate %q: resources.requests.storage is required", c.Name)
		}
	}
	for _, c := range spec.Containers {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			add("container name %q: %s", c.Name, msg)
		}
		if c.Image == "" {
			add("container %s: image is required", c.Name)
		}
		oneOf(add, "container "+c.Name+" imagePullPolicy", string(c.ImagePullPolicy), "", "Always", "IfNotPresent", "Never")
		ports := map[string]int32{}
		for _, p := range c.Ports {
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					add("container %s: port name %q: %s", c.Name, p.Name, msg)
				}
				ports[p.Name] = p.ContainerPort
			}
			oneOf(add, "container "+c.Name+" port protocol", string(p.Protocol), "", "TCP", "UDP", "SCTP")
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				add("container %s: containerPort %d is not a port number", c.Name, p.ContainerPort)
			}
		}
		for _, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				add("container %s: env %q: %s", c.Name, e.Name, msg)
			}
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				add("container %s: volumeMount %q names no volume", c.Name, vm.Name)
			}
			if !strings.HasPrefix(vm.MountPath, "/") {
				add("container %s: mountPath %q is not absolute", c.Name, vm.MountPath)
			}
		}
		for name, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
			if p == nil || p.HTTPGet == nil {
				continue
			}
			if !strings.HasPrefix(p.HTTPGet.Path, "/") {
				add("container %s: %s path %q is not absolute", c.Name, name, p.HTTPGet.Path)
			}
			if err := portKnown(p.HTTPGet.Port, ports); err != nil {
				add("container %s: %s: %v", c.Name, name, err)
			}
		}
	}
	return errs
}

// oneOf reports through add when value is not one of the values an
// enumerated field takes (the types are plain strings: decoding cannot).
func oneOf(add func(string, ...any), where, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		add("%s %q: want one of %q", where, value, allowed)
	}
}

// portKnown reports an error when a named port is not among ports.
func portKnown(p intstr.IntOrString, ports map[string]int32) error {
	if p.Type == intstr.String {
		if _, ok := ports[p.StrVal]; !ok {
			return fmt.Errorf("port %q names no container port", p.StrVal)
		}
		return nil
	}
	if p.IntVal < 1 || p.IntVal > 65535 {
		return fmt.Errorf("port %d is not a port number", p.IntVal)
	}
	return nil
}

// crossCheck checks references between objects: Services, budgets and
// autoscalers select or name a workload, named target ports exist, and
// workloads name ConfigMaps and Secrets that are there.
func crossCheck(objs []object) []error {
	var errs []error
	var workloads []workload
	byKindName := map[string]object{}
	for _, o := range objs {
		byKindName[o.kind+"/"+o.name] = o
		if w, ok := workloadOf(o); ok {
			workloads = append(workloads, w)
		}
	}
	selects := func(sel labels.Selector) []workload {
		var got []workload
		for _, w := range workloads {
			if _, isJob := w.obj.obj.(*batchv1.Job); !isJob && sel.Matches(labels.Set(w.template.Labels)) {
				got = append(got, w)
			}
		}
		return got
	}
	for _, o := range objs {
		add := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: "+format, append([]any{o}, args...)...))
		}
		switch v := o.obj.(type) {
		case *corev1.Service:
			ws := selects(labels.SelectorFromSet(v.Spec.Selector))
			if len(ws) == 0 {
				add("selector %v selects no workload's pods", v.Spec.Selector)
			}
			for _, p := range v.Spec.Ports {
				for _, w := range ws {
					if p.TargetPort.Type == intstr.String && !hasPort(w.template.Spec, p.TargetPort.StrVal) {
						add("targetPort %q is no container port of %s", p.TargetPort.StrVal, w.obj)
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if v.Spec.Selector == nil {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(v.Spec.Selector)
			if err != nil {
				add("selector: %v", err)
			} else if len(selects(sel)) == 0 {
				add("selector %v selects no workload's pods", sel)
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := v.Spec.ScaleTargetRef
			if _, ok := byKindName[ref.Kind+"/"+ref.Name]; !ok {
				add("scaleTargetRef %s/%s is not among the manifests", ref.Kind, ref.Name)
			}
		case *appsv1.StatefulSet:
			if svc, ok := byKindName["Service/"+v.Spec.ServiceName]; !ok {
				add("serviceName %q is not among the manifests", v.Spec.ServiceName)
			} else if s := svc.obj.(*corev1.Service); s.Spec.ClusterIP != corev1.ClusterIPNone {
				add("serviceName %q is not a headless Service (clusterIP: None)", v.Spec.ServiceName)
			}
		}
		if w, ok := workloadOf(o); ok {
			errs = append(errs, checkRefs(w, byKindName)...)
		}
	}
	return errs
}

// checkRefs checks that the ConfigMaps and Secrets a pod template names,
// and the keys it takes from them, are among the manifests.
func checkRefs(w workload, byKindName map[string]object) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{w.obj}, args...)...))
	}
	for _, c := range w.template.Spec.Containers {
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				if _, ok := byKindName["ConfigMap/"+ef.ConfigMapRef.Name]; !ok {
					add("container %s: envFrom ConfigMap %q is not among the manifests", c.Name, ef.ConfigMapRef.Name)
				}
			}
		}
	}
	for _, v := range w.template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		o, ok := byKindName["Secret/"+v.Secret.SecretName]
		if !ok {
			add("volume %s: Secret %q is not among the manifests", v.Name, v.Secret.SecretName)
			continue
		}
		s := o.obj.(*corev1.Secret)
		for _, it := range v.Secret.Items {
			_, inData := s.Data[it.Key]
			_, inString := s.StringData[it.Key]
			if !inData && !inString {
				add("volume %s: Secret %q has no key %q", v.Name, s.Name, it.Key)
			}
		}
	}
	return errs
}

// hasPort reports whether a pod declares a container port named name.
func hasPort(spec corev1.PodSpec, name string) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}
