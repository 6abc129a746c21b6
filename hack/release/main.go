// Command release writes a keyferry release into a directory, offline and without a
// Docker engine:
//
//   - images/: an OCI image layout holding the manager, dev vault and test app, each an
//     image index for linux/amd64 and linux/arm64 (the same commit and version give the
//     same digests);
//   - bin/: the manager's static binaries, one per platform;
//   - keyferry-<version>.cdx.json: a CycloneDX SBOM of the manager's modules
//     (cyclonedx-gomod, from the amd64 binary's build information);
//   - keyferry-<chart version>.tgz: the Helm chart, version and appVersion the release,
//     its image referenced by digest by default;
//   - CHANGELOG.md: the version's section of the root CHANGELOG.md;
//   - release.json: the version, commit and digests; checksums.txt: sha256 of every file.
//
// It refuses a version that is not vMAJOR.MINOR.PATCH[-PRERELEASE], a dirty tree and a
// version the CHANGELOG does not describe.
//
//	go run ./hack/release -version v0.2.0 -out dist
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/mod/semver"

	"github.com/keyferry/keyferry/hack/internal/ociimage"
)

// Platforms every release image is built for.
var Platforms = []string{"amd64", "arm64"}

// images are what a release ships: name → Go package of the one binary.
var images = []struct{ name, pkg string }{
	{"keyferry", "./cmd/manager"},
	{"keyferry-devvault", "./hack/devvault"},
	{"keyferry-testapp", "./hack/testapp"},
}

type options struct {
	version, out, root string
	repository         string
	helm, cyclonedx    string
	caFile             string
	allowDirty         bool
	// previous: an older commit rebuilt for the upgrade proof (hack/release/previous): no
	// CHANGELOG needed, and a chart from before image.digest pulls by its appVersion tag.
	previous  bool
	platforms []string
}

// Manifest is release.json: what was released, from what.
type Manifest struct {
	Version      string            `json:"version"`
	ChartVersion string            `json:"chartVersion"`
	Commit       string            `json:"commit"`
	Repository   string            `json:"repository"`
	Images       map[string]string `json:"images"` // name → index digest
}

func main() {
	var o options
	flag.StringVar(&o.version, "version", "", "the release, vMAJOR.MINOR.PATCH[-PRERELEASE]")
	flag.StringVar(&o.out, "out", "dist", "directory written (emptied first)")
	flag.StringVar(&o.root, "root", ".", "the repository")
	flag.StringVar(&o.repository, "repository", "keyferry", "image repository the chart pulls from (by digest)")
	flag.StringVar(&o.helm, "helm", "bin/helm", "helm binary")
	flag.StringVar(&o.cyclonedx, "cyclonedx", "bin/cyclonedx-gomod", "cyclonedx-gomod binary")
	flag.StringVar(&o.caFile, "ca-file", ociimage.CAPath, "CA bundle the images ship")
	flag.BoolVar(&o.allowDirty, "allow-dirty", false, "release from a dirty tree (tests only)")
	flag.BoolVar(&o.previous, "previous", false, "rebuild an older commit for the upgrade proof (no CHANGELOG needed; its chart may predate image.digest)")
	platforms := flag.String("platforms", strings.Join(Platforms, ","), "comma-separated architectures (linux)")
	flag.Parse()
	o.platforms = strings.Split(*platforms, ",")
	m, err := release(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	fmt.Printf("released %s (commit %s) into %s: manager %s\n", m.Version, m.Commit, o.out, m.Images["keyferry"])
}

func release(o options) (*Manifest, error) {
	out, err := filepath.Abs(o.out)
	if err != nil {
		return nil, err
	}
	o.out = out
	if !validVersion(o.version) {
		return nil, fmt.Errorf("version %q is not semver vMAJOR.MINOR.PATCH[-PRERELEASE]", o.version)
	}
	commit, err := git(o.root, "rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}
	if !o.allowDirty {
		status, err := git(o.root, "status", "--porcelain")
		if err != nil {
			return nil, err
		}
		if status != "" {
			return nil, fmt.Errorf("the tree is dirty: commit or stash first\n%s", status)
		}
	}
	notes, err := changelogSection(filepath.Join(o.root, "CHANGELOG.md"), o.version)
	if err != nil && o.previous {
		notes, err = "## ["+o.version+"]\n\nRebuilt from "+commit+" for the upgrade proof.\n", nil
	}
	if err != nil {
		return nil, err
	}
	if len(o.platforms) == 0 {
		o.platforms = Platforms
	}
	if err := os.RemoveAll(o.out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.out, "bin"), 0o755); err != nil {
		return nil, err
	}
	m := &Manifest{Version: o.version, ChartVersion: strings.TrimPrefix(o.version, "v"), Commit: commit,
		Repository: o.repository, Images: map[string]string{}}
	lp, err := layout.Write(filepath.Join(o.out, "images"), empty.Index)
	if err != nil {
		return nil, err
	}
	for _, im := range images {
		idx, err := buildIndex(o, im.name, im.pkg)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.name, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		m.Images[im.name] = d.String()
		if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": im.name + ":" + o.version,
			"org.opencontainers.image.version":  o.version,
			"org.opencontainers.image.revision": commit,
		})); err != nil {
			return nil, err
		}
	}
	sbom := filepath.Join(o.out, "keyferry-"+o.version+".cdx.json")
	if out, err := exec.Command(o.cyclonedx, "bin", "-json", "-noserial", "-notimestamp", "-version", o.version,
		"-output", sbom, filepath.Join(o.out, "bin", "manager-linux-amd64")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("SBOM (make cyclonedx): %w\n%s", err, out)
	}
	if err := packageChart(o, m); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.out, "CHANGELOG.md"), []byte(notes), 0o644); err != nil {
		return nil, err
	}
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "release.json"), append(raw, '\n'), 0o644); err != nil {
		return nil, err
	}
	return m, writeChecksums(o.out)
}

// validVersion: v, three numbers, an optional prerelease; no build metadata.
func validVersion(v string) bool {
	return semver.IsValid(v) && semver.Canonical(v) == v
}

// buildIndex builds pkg for every platform (the manager's binaries are kept in bin/) and
// returns their image index.
func buildIndex(o options, name, pkg string) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range o.platforms {
		bin := filepath.Join(o.out, "bin", "manager-linux-"+arch)
		if name != "keyferry" {
			dir, err := os.MkdirTemp("", "keyferry-release-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			bin = filepath.Join(dir, "bin")
		}
		if err := ociimage.GoBuild(pkg, o.version, arch, bin, o.root); err != nil {
			return nil, err
		}
		img, err := ociimage.Assemble(bin, ociimage.Entry(pkg), o.caFile, arch)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx, nil
}

// packageChart packages a copy of the chart whose version and appVersion are the
// release's and whose image is the release's, by digest.
func packageChart(o options, m *Manifest) error {
	dir, err := os.MkdirTemp("", "keyferry-chart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	chart := filepath.Join(dir, "keyferry")
	if err := os.CopyFS(chart, os.DirFS(filepath.Join(o.root, "charts", "keyferry"))); err != nil {
		return err
	}
	// The chart's tests are not part of it.
	_ = os.Remove(filepath.Join(chart, "chart_test.go"))
	values := filepath.Join(chart, "values.yaml")
	raw, err := os.ReadFile(values)
	if err != nil {
		return err
	}
	s := string(raw)
	for old, repl := range map[string]string{
		"\n  repository: keyferry\n": "\n  repository: " + o.repository + "\n",
		"\n  digest: \"\"\n":         "\n  digest: \"" + m.Images["keyferry"] + "\"\n",
	} {
		if !strings.Contains(s, old) {
			if o.previous && strings.Contains(old, "digest") {
				continue // a chart from before image.digest: its tag is the appVersion
			}
			return fmt.Errorf("charts/keyferry/values.yaml: no %q to set", strings.TrimSpace(old))
		}
		s = strings.Replace(s, old, repl, 1)
	}
	if err := os.WriteFile(values, []byte(s), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(o.helm, "package", chart, "--version", m.ChartVersion, "--app-version", m.Version,
		"--destination", o.out).CombinedOutput()
	if err != nil {
		return fmt.Errorf("helm package: %w\n%s", err, out)
	}
	return nil
}

// changelogSection returns the "## vX.Y.Z" (or "## [vX.Y.Z]") section of the changelog.
func changelogSection(path, version string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("CHANGELOG.md: %w", err)
	}
	defer f.Close()
	var b strings.Builder
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			if in {
				break
			}
			head := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(line[3:]))
			in = len(head) > 0 && head[0] == version
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("CHANGELOG.md has no section \"## %s\": write what this release changes first", version)
	}
	return b.String(), sc.Err()
}

// writeChecksums writes checksums.txt: the sha256 of every file under dir, as sha256sum
// prints it (sha256sum -c checksums.txt verifies).
func writeChecksums(dir string) error {
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "checksums.txt" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		lines = append(lines, hex.EncodeToString(h.Sum(nil))+"  "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	return os.WriteFile(filepath.Join(dir, "checksums.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func git(root string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
