package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// TestKubernetesOTelDaemonSetMatchesCLI parses the OTLP/Prometheus variant
// of the DaemonSet: its args are a valid `boxtap watch` command line that
// writes no JSON, and the port it serves metrics on is the one its
// Prometheus annotations and container port name.
func TestKubernetesOTelDaemonSetMatchesCLI(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "kubernetes", "daemonset-otel.yaml")
	var ds *k8sObject
	for _, o := range readManifests(t, path) {
		if o.Kind == "DaemonSet" {
			ds = &o
		}
	}
	if ds == nil || len(ds.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("no DaemonSet with one container in daemonset-otel.yaml")
	}
	args := ds.Spec.Template.Spec.Containers[0].Args
	var cmd struct {
		Watch watchCmd `cmd:""`
	}
	parser, err := kong.New(&cmd, kong.Name("boxtap"), kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(args); err != nil {
		t.Fatalf("args %v: %v", args, err)
	}
	w := cmd.Watch
	if w.Output != "none" || w.OTLPEndpoint == "" || w.MetricsAddr == "" {
		t.Errorf("want --output none, --otlp-endpoint and --metrics-addr; got %+v", w.telemetryFlags)
	}
	// Annotations and ports are not in k8sObject: read them on their own.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod struct {
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []struct {
						Ports []struct {
							ContainerPort int `yaml:"containerPort"`
						} `yaml:"ports"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	docs := strings.Split(string(data), "\n---\n")
	if err := yaml.Unmarshal([]byte(docs[len(docs)-1]), &pod); err != nil {
		t.Fatal(err)
	}
	ann := pod.Spec.Template.Metadata.Annotations
	port := ann["prometheus.io/port"]
	if ann["prometheus.io/scrape"] != "true" || port == "" || !strings.HasSuffix(w.MetricsAddr, ":"+port) {
		t.Errorf("annotations %v do not scrape --metrics-addr %s", ann, w.MetricsAddr)
	}
	if cs := pod.Spec.Template.Spec.Containers; len(cs) != 1 || len(cs[0].Ports) != 1 || "9464" != port || cs[0].Ports[0].ContainerPort != 9464 {
		t.Errorf("container ports %+v, annotation port %q: want 9464 both", cs, port)
	}
}
