// Command crdversions adds the versions keyferry still serves beside the one its Go types
// declare (api/v1beta1) to the generated CRDs, with the very same schema, so the None
// conversion strategy is exact and no conversion webhook is needed. Run by `make manifests`
// after controller-gen.
//
// The storage version moves in two releases, as Kubernetes moves its own: a release first
// serves the new version beside the stored one (so a rollback to it still knows every
// version stored), and only the next one stores the new version, after which the manager
// migrates stored objects (controllers/storage). StorageVersion says which one stores now.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"sigs.k8s.io/yaml"
)

const (
	// TypesVersion is the version controller-gen writes from api/v1beta1.
	TypesVersion = "v1beta1"
	// StorageVersion is the version the API server stores (see the package comment).
	StorageVersion = "v1alpha1"
)

// older lists the versions served beside TypesVersion, deprecated, with its schema.
var older = []string{"v1alpha1"}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdversions DIR (the CRDs controller-gen wrote)")
		os.Exit(2)
	}
	files, err := filepath.Glob(filepath.Join(os.Args[1], "*.yaml"))
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no CRD in %s", os.Args[1])
	}
	for _, f := range files {
		if err != nil {
			break
		}
		err = rewrite(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crdversions:", err)
		os.Exit(1)
	}
}

func rewrite(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	out, err := addVersions(crd)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("---\n"), b...), 0o644)
}

// addVersions returns crd with the older versions added in front of TypesVersion (which
// must be the only version controller-gen wrote) and the storage flag on StorageVersion.
func addVersions(crd map[string]any) (map[string]any, error) {
	spec, _ := crd["spec"].(map[string]any)
	versions, _ := spec["versions"].([]any)
	if len(versions) != 1 {
		return nil, fmt.Errorf("want the one version of the Go types, found %d", len(versions))
	}
	typed, _ := versions[0].(map[string]any)
	if typed["name"] != TypesVersion {
		return nil, fmt.Errorf("the Go types' version is %v, want %s", typed["name"], TypesVersion)
	}
	kind, _ := spec["names"].(map[string]any)["kind"].(string)
	all := make([]any, 0, len(older)+1)
	for _, v := range older {
		c, err := deepCopy(typed)
		if err != nil {
			return nil, err
		}
		c["name"] = v
		c["deprecated"] = true
		c["deprecationWarning"] = fmt.Sprintf("keyferry.dev/%s %s is deprecated: use keyferry.dev/%s (the same fields; see docs/install.md#api-versions)", v, kind, TypesVersion)
		all = append(all, c)
	}
	all = append(all, typed)
	names := append(slices.Clone(older), TypesVersion)
	if !slices.Contains(names, StorageVersion) {
		return nil, fmt.Errorf("storage version %s is not served", StorageVersion)
	}
	for i, v := range all {
		v.(map[string]any)["storage"] = names[i] == StorageVersion
	}
	spec["versions"] = all
	return crd, nil
}

func deepCopy(m map[string]any) (map[string]any, error) {
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	var c map[string]any
	err = yaml.Unmarshal(b, &c)
	return c, err
}
