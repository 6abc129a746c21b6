// Package argocd holds keyferry's Argo CD resource customizations (health checks and the
// refresh action) in the layout of Argo CD's resource_customizations; this test replays
// their health_test.yaml and action_test.yaml the way Argo CD's own test does.
package argocd

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keyferry/keyferry/internal/dev/luascript"
)

var kinds = []string{"SecretBinding", "VaultConnection", "ClusterVaultConnection", "ClusterSecretBinding", "SecretPush", "RefreshReceiver"}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestHealthChecks(t *testing.T) {
	var first []byte
	for _, kind := range kinds {
		dir := filepath.Join("keyferry.dev", kind)
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		// One health rule for every kind: the copies must not drift apart.
		if first == nil {
			first = script
		} else if string(script) != string(first) {
			t.Errorf("%s/health.lua differs from SecretBinding's", kind)
		}
		var cases struct {
			Tests []struct {
				HealthStatus luascript.Health `json:"healthStatus"`
				InputPath    string           `json:"inputPath"`
			} `json:"tests"`
		}
		readYAML(t, filepath.Join(dir, "health_test.yaml"), &cases)
		if len(cases.Tests) == 0 {
			t.Fatalf("%s: no health tests", kind)
		}
		for _, tc := range cases.Tests {
			var obj map[string]any
			readYAML(t, filepath.Join(dir, tc.InputPath), &obj)
			got, err := luascript.RunHealth(string(script), obj)
			if err != nil {
				t.Fatalf("%s %s: %v", kind, tc.InputPath, err)
			}
			if got != tc.HealthStatus {
				t.Errorf("%s %s: %+v, want %+v", kind, tc.InputPath, got, tc.HealthStatus)
			}
		}
	}
}

func TestRefreshAction(t *testing.T) {
	dir := filepath.Join("keyferry.dev", "SecretBinding", "actions")
	var cases struct {
		DiscoveryTests []struct {
			InputPath string `json:"inputPath"`
			Result    []struct {
				Name string `json:"name"`
			} `json:"result"`
		} `json:"discoveryTests"`
		ActionTests []struct {
			Action    string `json:"action"`
			InputPath string `json:"inputPath"`
		} `json:"actionTests"`
	}
	readYAML(t, filepath.Join(dir, "action_test.yaml"), &cases)
	discovery, err := os.ReadFile(filepath.Join(dir, "discovery.lua"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases.DiscoveryTests {
		var obj map[string]any
		readYAML(t, filepath.Join(dir, tc.InputPath), &obj)
		got, err := luascript.RunAction(string(discovery), obj)
		if err != nil {
			t.Fatal(err)
		}
		actions, _ := got.(map[string]any)
		for _, want := range tc.Result {
			if _, ok := actions[want.Name]; !ok {
				t.Errorf("discovery offers %v, want %s", actions, want.Name)
			}
		}
	}
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	for _, tc := range cases.ActionTests {
		script, err := os.ReadFile(filepath.Join(dir, tc.Action, "action.lua"))
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		readYAML(t, filepath.Join(dir, tc.InputPath), &obj)
		out, err := luascript.RunAction(string(script), obj)
		if err != nil {
			t.Fatal(err)
		}
		meta, _ := out.(map[string]any)["metadata"].(map[string]any)
		annotations, _ := meta["annotations"].(map[string]any)
		v, _ := annotations["keyferry.dev/refresh"].(string)
		if !stamp.MatchString(v) || v == "argocd-1" {
			t.Errorf("refresh annotation %q, want a new UTC timestamp", v)
		}
		if meta["name"] != "app" {
			t.Errorf("the action lost the object: %v", meta)
		}
	}
}
