// Package crd_test holds keyferry's CRDs to what an upgrade needs: every CRD stays under
// the size client-side apply can carry, and nothing a previous release's objects (or the
// manifests users keep in Git) rely on is taken away within an API version.
package crd_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// maxCRDBytes is what `kubectl apply` (client-side) can carry: it copies the whole object
// into the last-applied annotation, and annotations are limited to 256 KiB in all. ESO's
// CRDs outgrew it and needed server-side apply; keyferry's stay well under, with room.
const maxCRDBytes = 256 << 10

func readCRD(t *testing.T, raw []byte, what string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return crd
}

func TestEveryCRDFitsClientSideApply(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("bases", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no CRDs in config/crd/bases")
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		// Half the limit: the annotation holds the object as JSON, beside the others.
		if st.Size() > maxCRDBytes/2 {
			t.Errorf("%s is %d bytes: over half of the %d bytes kubectl apply's annotation can hold (trim descriptions or split the kind)", f, st.Size(), maxCRDBytes)
		}
	}
}

// previous reads hack/release/previous: the version and commit upgrades start from.
func previous(t *testing.T) (version, commit string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "hack", "release", "previous"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			return f[0], f[1]
		}
	}
	t.Fatal("hack/release/previous names no version and commit")
	return "", ""
}

// An upgrade from the previous release keeps every CRD, every served version and, within
// each version, every field, enum value and relaxation: a removed field, a narrowed enum, a
// new required field, a tightened bound or a new or changed CEL rule needs a new API version.
func TestCRDsStayCompatibleWithThePreviousRelease(t *testing.T) {
	version, commit := previous(t)
	out, err := exec.Command("git", "-C", filepath.Join("..", ".."), "ls-tree", "--name-only", commit, "config/crd/bases/").Output()
	if err != nil {
		t.Fatalf("the previous release's commit %s (%s) is not in this clone: fetch its history (git fetch --unshallow): %v", commit, version, err)
	}
	old := strings.Fields(string(out))
	if len(old) == 0 {
		t.Fatalf("no CRDs at %s", commit)
	}
	for _, path := range old {
		raw, err := exec.Command("git", "-C", filepath.Join("..", ".."), "show", commit+":"+path).Output()
		if err != nil {
			t.Fatal(err)
		}
		was := readCRD(t, raw, version+" "+path)
		nowRaw, err := os.ReadFile(filepath.Join("bases", filepath.Base(path)))
		if err != nil {
			t.Errorf("%s: the CRD of %s is gone (objects of it would be lost)", version, was.Name)
			continue
		}
		now := readCRD(t, nowRaw, path)
		for _, prob := range compatible(was, now) {
			t.Errorf("%s since %s: %s", was.Name, version, prob)
		}
	}
}

// compatible lists what now takes away from was.
func compatible(was, now *apiextensionsv1.CustomResourceDefinition) []string {
	var probs []string
	for _, v := range was.Spec.Versions {
		if !v.Served {
			continue
		}
		i := slices.IndexFunc(now.Spec.Versions, func(n apiextensionsv1.CustomResourceDefinitionVersion) bool { return n.Name == v.Name })
		if i < 0 || !now.Spec.Versions[i].Served {
			probs = append(probs, fmt.Sprintf("version %s is no longer served (manifests and clients using it break)", v.Name))
			continue
		}
		nv := now.Spec.Versions[i]
		if v.Schema == nil || nv.Schema == nil {
			continue
		}
		probs = append(probs, schemaCompatible(v.Name, v.Schema.OpenAPIV3Schema, nv.Schema.OpenAPIV3Schema)...)
	}
	return probs
}

func schemaCompatible(path string, was, now *apiextensionsv1.JSONSchemaProps) []string {
	if was == nil {
		return nil
	}
	if now == nil {
		return []string{path + ": removed (objects that set it would fail validation or lose it)"}
	}
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, path+": "+fmt.Sprintf(format, args...)) }
	if was.Type != now.Type {
		add("type %q became %q", was.Type, now.Type)
	}
	if len(now.Enum) > 0 {
		for _, e := range was.Enum {
			if !slices.ContainsFunc(now.Enum, func(n apiextensionsv1.JSON) bool { return string(n.Raw) == string(e.Raw) }) {
				add("enum value %s removed (objects holding it would be refused)", e.Raw)
			}
		}
		if len(was.Enum) == 0 {
			add("now limited to an enum")
		}
	}
	for _, r := range now.Required {
		if !slices.Contains(was.Required, r) {
			add("%s became required (objects without it would be refused)", r)
		}
	}
	for _, rule := range now.XValidations {
		if !slices.ContainsFunc(was.XValidations, func(o apiextensionsv1.ValidationRule) bool { return o.Rule == rule.Rule }) {
			add("CEL rule %q is new or changed (it may refuse objects the previous release accepted)", rule.Rule)
		}
	}
	tighter := func(what string, old, cur *int64, smallerIsTighter bool) {
		switch {
		case cur == nil:
		case old == nil:
			add("%s %d is new", what, *cur)
		case smallerIsTighter && *cur < *old, !smallerIsTighter && *cur > *old:
			add("%s went from %d to %d", what, *old, *cur)
		}
	}
	tighter("maxLength", was.MaxLength, now.MaxLength, true)
	tighter("maxItems", was.MaxItems, now.MaxItems, true)
	tighter("maxProperties", was.MaxProperties, now.MaxProperties, true)
	tighter("minLength", was.MinLength, now.MinLength, false)
	tighter("minItems", was.MinItems, now.MinItems, false)
	if now.Pattern != "" && now.Pattern != was.Pattern {
		add("pattern %q became %q", was.Pattern, now.Pattern)
	}
	for name, p := range was.Properties {
		var np *apiextensionsv1.JSONSchemaProps
		if n, ok := now.Properties[name]; ok {
			np = &n
		}
		probs = append(probs, schemaCompatible(path+"."+name, &p, np)...)
	}
	if was.Items != nil && was.Items.Schema != nil {
		var ni *apiextensionsv1.JSONSchemaProps
		if now.Items != nil {
			ni = now.Items.Schema
		}
		probs = append(probs, schemaCompatible(path+"[]", was.Items.Schema, ni)...)
	}
	if was.AdditionalProperties != nil && was.AdditionalProperties.Schema != nil {
		var na *apiextensionsv1.JSONSchemaProps
		if now.AdditionalProperties != nil {
			na = now.AdditionalProperties.Schema
		}
		probs = append(probs, schemaCompatible(path+"{}", was.AdditionalProperties.Schema, na)...)
	}
	return probs
}

// The check finds each kind of break (and passes an additive change).
func TestCompatibilityCheckFindsEachBreak(t *testing.T) {
	base := func() *apiextensionsv1.CustomResourceDefinition {
		return readCRD(t, []byte(`
spec:
  versions:
  - name: v1alpha1
    served: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [vault]
            properties:
              vault: {type: string, maxLength: 512}
              policy: {type: string, enum: [Periodic, OnChange]}
              keys: {type: array, items: {type: string}}
            x-kubernetes-validations:
            - rule: "self.vault.size() > 0"
`), "base")
	}
	spec := func(c *apiextensionsv1.CustomResourceDefinition) *apiextensionsv1.JSONSchemaProps {
		s := c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
		return &s
	}
	set := func(c *apiextensionsv1.CustomResourceDefinition, s *apiextensionsv1.JSONSchemaProps) {
		c.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = *s
	}
	for _, tc := range []struct {
		name   string
		change func(*apiextensionsv1.CustomResourceDefinition)
		want   string
	}{
		{"additive", func(c *apiextensionsv1.CustomResourceDefinition) {
			s := spec(c)
			s.Properties["suspend"] = apiextensionsv1.JSONSchemaProps{Type: "boolean"}
			p := s.Properties["policy"]
			p.Enum = append(p.Enum, apiextensionsv1.JSON{Raw: []byte(`"CreatedOnce"`)})
			s.Properties["policy"] = p
			set(c, s)
		}, ""},
		{"removed field", func(c *apiextensionsv1.CustomResourceDefinition) {
			s := spec(c)
			delete(s.Properties, "keys")
			set(c, s)
		}, "spec.keys: removed"},
		{"narrowed enum", func(c *apiextensionsv1.CustomResourceDefinition) {
			s := spec(c)
			p := s.Properties["policy"]
			p.Enum = p.Enum[:1]
			s.Properties["policy"] = p
			set(c, s)
		}, `enum value "OnChange" removed`},
		{"new required field", func(c *apiextensionsv1.CustomResourceDefinition) {
			s := spec(c)
			s.Required = append(s.Required, "policy")
			set(c, s)
		}, "policy became required"},
		{"tightened CEL", func(c *apiextensionsv1.CustomResourceDefinition) {
			s := spec(c)
			s.XValidations[0].Rule = "self.vault.size() > 3"
			set(c, s)
		}, "CEL rule"},
		{"tighter bound", func(c *apiextensionsv1.CustomResourceDefinition) {
			s := spec(c)
			p := s.Properties["vault"]
			n := int64(100)
			p.MaxLength = &n
			s.Properties["vault"] = p
			set(c, s)
		}, "maxLength went from 512 to 100"},
		{"version no longer served", func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Spec.Versions[0].Served = false
		}, "no longer served"},
	} {
		now := base()
		tc.change(now)
		probs := strings.Join(compatible(base(), now), "\n")
		if tc.want == "" && probs != "" || tc.want != "" && !strings.Contains(probs, tc.want) {
			t.Errorf("%s: found %q, want %q", tc.name, probs, tc.want)
		}
	}
}

// Every served version of a CRD has the very same schema, subresources and columns (so the
// None conversion strategy is exact: no conversion webhook), exactly one stores, and the
// one that stores was served by the previous release, so a rollback to it still knows
// every version an object may be stored at (the storage version moves one release after
// the version first ships, see hack/crdversions).
func TestServedVersionsShareOneSchema(t *testing.T) {
	_, commit := previous(t)
	files, _ := filepath.Glob(filepath.Join("bases", "*.yaml"))
	var names []string
	defer func() {
		// The manager migrates, and check-upgrade reads, the CRDs the API package lists.
		if want := kf.CRDNames(); !slices.Equal(sorted(names), sorted(want)) {
			t.Errorf("config/crd/bases holds %v, api lists %v", names, want)
		}
	}()
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := readCRD(t, raw, f)
		names = append(names, crd.Name)
		if c := crd.Spec.Conversion; c != nil && c.Strategy != apiextensionsv1.NoneConverter {
			t.Errorf("%s converts with %s: keyferry serves its versions without a webhook", crd.Name, c.Strategy)
		}
		var storage []string
		first := crd.Spec.Versions[0]
		for _, v := range crd.Spec.Versions {
			if v.Storage {
				storage = append(storage, v.Name)
			}
			if !v.Served {
				t.Errorf("%s %s is not served", crd.Name, v.Name)
			}
			for what, diff := range map[string][2]any{
				"schema":                   {first.Schema, v.Schema},
				"subresources":             {first.Subresources, v.Subresources},
				"additionalPrinterColumns": {first.AdditionalPrinterColumns, v.AdditionalPrinterColumns},
				"selectableFields":         {first.SelectableFields, v.SelectableFields},
			} {
				if !equality.Semantic.DeepEqual(diff[0], diff[1]) {
					t.Errorf("%s: the %s of %s differs from %s's: None conversion would change objects", crd.Name, what, v.Name, first.Name)
				}
			}
		}
		if len(storage) != 1 {
			t.Fatalf("%s stores at %v", crd.Name, storage)
		}
		oldRaw, err := exec.Command("git", "-C", filepath.Join("..", ".."), "show", commit+":config/crd/bases/"+filepath.Base(f)).Output()
		if err != nil {
			continue // a kind the previous release did not have
		}
		was := readCRD(t, oldRaw, "previous "+f)
		if !slices.ContainsFunc(was.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool { return v.Name == storage[0] && v.Served }) {
			t.Errorf("%s stores at %s, which the previous release does not serve: a rollback could not apply its CRD over objects stored at %s (serve it for one release first)", crd.Name, storage[0], storage[0])
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
