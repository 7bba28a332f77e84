// k8s-validate reads Kubernetes manifests (multi-document YAML, e.g. `kustomize build` output)
// on stdin and decodes every object strictly into its typed API struct from k8s.io/api: an
// unknown or misspelled field, a duplicate field, a value of the wrong type or an unknown
// apiVersion/kind is an error. It is the offline stand-in for a schema validator such as
// kubeconform, whose schemas we cannot download (tests/ops/overlays.test.ts). Exit code 1 when
// any object is invalid, 2 when the input cannot be read.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The kinds a manifest of ours may use; anything else is refused rather than passed unchecked.
var kinds = map[string]func() any{
	"v1/ConfigMap":                                    func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                       func() any { return &corev1.Secret{} },
	"v1/Service":                                      func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                               func() any { return &corev1.ServiceAccount{} },
	"v1/Namespace":                                    func() any { return &corev1.Namespace{} },
	"v1/PersistentVolumeClaim":                        func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                             func() any { return &appsv1.StatefulSet{} },
	"apps/v1/DaemonSet":                               func() any { return &appsv1.DaemonSet{} },
	"batch/v1/Job":                                    func() any { return &batchv1.Job{} },
	"batch/v1/CronJob":                                func() any { return &batchv1.CronJob{} },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":                    func() any { return &networkingv1.Ingress{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":          func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"rbac.authorization.k8s.io/v1/Role":               func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":        func() any { return &rbacv1.RoleBinding{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	// Prometheus Operator's CRD (its own Go types), for scraping both worker metrics ports.
	"monitoring.coreos.com/v1/PodMonitor": func() any { return &monitoringv1.PodMonitor{} },
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// validate returns the object's name for messages and every problem found in it.
func validate(doc []byte) (string, []string) {
	data, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return "?", []string{fmt.Sprintf("not YAML: %v", err)}
	}
	if strings.TrimSpace(string(data)) == "null" {
		return "", nil
	}
	var h header
	if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &h); err != nil {
		return "?", []string{fmt.Sprintf("not an object: %v", err)}
	}
	id := fmt.Sprintf("%s/%s", h.Kind, h.Metadata.Name)
	newObject, ok := kinds[h.APIVersion+"/"+h.Kind]
	if !ok {
		return id, []string{fmt.Sprintf("unknown apiVersion/kind %q/%q", h.APIVersion, h.Kind)}
	}
	var problems []string
	if h.Metadata.Name == "" {
		problems = append(problems, "metadata.name is empty")
	}
	// Case-sensitive, like the API server: `Replicas` is as wrong as `replicass`.
	strict, err := kjson.UnmarshalStrict(data, newObject(), kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		problems = append(problems, err.Error())
	}
	for _, e := range strict {
		problems = append(problems, e.Error())
	}
	return id, problems
}

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	objects, invalid := 0, 0
	for index := 0; ; index++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "k8s-validate: reading document %d: %v\n", index, err)
			os.Exit(2)
		}
		id, problems := validate(doc)
		if id == "" {
			continue
		}
		objects++
		if len(problems) > 0 {
			invalid++
			for _, p := range problems {
				fmt.Printf("%s (document %d): %s\n", id, index, p)
			}
		}
	}
	if objects == 0 {
		fmt.Fprintln(os.Stderr, "k8s-validate: no objects on stdin")
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "k8s-validate: %d objects, %d invalid\n", objects, invalid)
	if invalid > 0 {
		os.Exit(1)
	}
}
