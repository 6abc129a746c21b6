package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/keyferry/keyferry/hack/internal/ociimage"
)

func testOptions(t *testing.T, version string) options {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	helm := os.Getenv("HELM")
	if helm == "" {
		helm = filepath.Join(root, "bin", "helm")
	}
	cdx := os.Getenv("CYCLONEDX")
	if cdx == "" {
		cdx = filepath.Join(root, "bin", "cyclonedx-gomod")
	}
	// The tree under test may carry this session's edits: the clean-tree check has a test
	// of its own.
	return options{version: version, out: filepath.Join(t.TempDir(), "dist"), root: root, repository: "registry.example/keyferry",
		helm: helm, cyclonedx: cdx, caFile: ociimage.CAPath, allowDirty: true}
}

// The refusals come before any build: a version that is not semver, a dirty tree, a
// version the CHANGELOG does not describe.
func TestReleaseRefuses(t *testing.T) {
	for _, v := range []string{"", "0.2.0", "v0.2", "v1", "v0.2.0+build.5", "latest", "v0.2.0.1"} {
		o := testOptions(t, v)
		if _, err := release(o); err == nil || !strings.Contains(err.Error(), "not semver") {
			t.Errorf("version %q: %v", v, err)
		}
	}
	if _, err := release(testOptions(t, "v9.9.9")); err == nil || !strings.Contains(err.Error(), "no section") {
		t.Errorf("a version without a CHANGELOG section: %v", err)
	}
	// A dirty tree: a repository with an uncommitted file.
	repo := t.TempDir()
	for _, args := range [][]string{{"init", "-q"}, {"-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"}} {
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "edit.go"), []byte("package x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, "v0.2.0")
	o.root, o.allowDirty = repo, false
	if _, err := release(o); err == nil || !strings.Contains(err.Error(), "dirty") {
		t.Errorf("a dirty tree: %v", err)
	}
}

// A release is complete and reproducible: two runs give the same index digests; each
// index holds linux/amd64 and linux/arm64; the chart pins the manager by digest, with the
// release as version and appVersion; the SBOM lists the modules the manager links; every
// file is in checksums.txt with its sha256.
func TestReleaseIsCompleteAndReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds six images twice")
	}
	a, err := release(testOptions(t, "v0.2.0"))
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, "v0.2.0")
	b, err := release(o)
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range a.Images {
		if b.Images[name] != d || !strings.HasPrefix(d, "sha256:") {
			t.Errorf("%s: digests %s and %s for the same commit and version", name, d, b.Images[name])
		}
	}
	if len(a.Images) != 3 {
		t.Errorf("images %v", a.Images)
	}

	lp, err := layout.FromPath(filepath.Join(o.out, "images"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 3 {
		t.Fatalf("%d entries in the layout, want 3", len(im.Manifests))
	}
	for _, desc := range im.Manifests {
		idx, err := top.ImageIndex(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		for _, d := range m.Manifests {
			platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != d.Platform.Architecture || cf.Config.User != "65532:65532" {
				t.Errorf("%s: config %s as %q", desc.Annotations["org.opencontainers.image.ref.name"], cf.Architecture, cf.Config.User)
			}
		}
		if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("%s: platforms %v", desc.Annotations["org.opencontainers.image.ref.name"], platforms)
		}
	}

	values, chart := chartFiles(t, filepath.Join(o.out, "keyferry-0.2.0.tgz"))
	if !strings.Contains(values, `digest: "`+b.Images["keyferry"]+`"`) || !strings.Contains(values, "repository: registry.example/keyferry") {
		t.Errorf("the chart's values do not pin the manager by digest:\n%s", values)
	}
	if !strings.Contains(chart, "version: 0.2.0") || !strings.Contains(chart, "appVersion: v0.2.0") {
		t.Errorf("Chart.yaml:\n%s", chart)
	}

	raw, err := os.ReadFile(filepath.Join(o.out, "keyferry-v0.2.0.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sbom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct {
			Name, Version string
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &sbom); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range sbom.Components {
		names = append(names, c.Name)
	}
	if sbom.BOMFormat != "CycloneDX" || !slices.Contains(names, "sigs.k8s.io/controller-runtime") || !slices.Contains(names, "k8s.io/client-go") {
		t.Errorf("SBOM %s with %d components: %v", sbom.BOMFormat, len(names), names)
	}

	sums := map[string]string{}
	f, err := os.Open(filepath.Join(o.out, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, path, _ := strings.Cut(sc.Text(), "  ")
		sums[path] = sum
	}
	n := 0
	_ = filepath.Walk(o.out, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || info.Name() == "checksums.txt" {
			return err
		}
		rel, _ := filepath.Rel(o.out, path)
		data, _ := os.ReadFile(path)
		h := sha256.Sum256(data)
		if sums[rel] != hex.EncodeToString(h[:]) {
			t.Errorf("checksums.txt: %s is %q, the file's sha256 is %x", rel, sums[rel], h)
		}
		n++
		return nil
	})
	if n != len(sums) || n < 8 {
		t.Errorf("%d files, %d checksums", n, len(sums))
	}
	notes, _ := os.ReadFile(filepath.Join(o.out, "CHANGELOG.md"))
	if !strings.HasPrefix(string(notes), "## [v0.2.0]") || strings.Contains(string(notes), "v0.1.0") {
		t.Errorf("release notes:\n%s", notes)
	}
}

// chartFiles reads values.yaml and Chart.yaml from a packaged chart.
func chartFiles(t *testing.T, tgz string) (values, chart string) {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		switch h.Name {
		case "keyferry/values.yaml":
			values = string(b)
		case "keyferry/Chart.yaml":
			chart = string(b)
		}
	}
	return values, chart
}
