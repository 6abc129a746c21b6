package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/keyferry/keyferry/hack/internal/ociimage"
)

// dockerfileFinal reads the USER and ENTRYPOINT of the Dockerfile's last stage.
func dockerfileFinal(t *testing.T) (user string, entrypoint []string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "FROM "):
			user, entrypoint = "", nil
		case strings.HasPrefix(line, "USER "):
			user = strings.TrimSpace(strings.TrimPrefix(line, "USER "))
		case strings.HasPrefix(line, "ENTRYPOINT "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ENTRYPOINT ")), &entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT is not exec form: %v", err)
			}
		}
	}
	return user, entrypoint
}

func testImage(t *testing.T) ([]byte, string) {
	t.Helper()
	dir := t.TempDir()
	bin, ca := filepath.Join(dir, "manager"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(bin, []byte("\x7fELF binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Assemble(bin, "/manager", ca, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarball.Write(name.MustParseReference("keyferry:test"), img, &buf); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), d.String()
}

// The image and the Dockerfile cannot drift: same user, same entrypoint; and the image
// holds the binary and the CA bundle, nothing else (no shell).
func TestImageMatchesTheDockerfile(t *testing.T) {
	archive, _ := testImage(t)
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(archive)), nil }, nil)
	if err != nil {
		t.Fatalf("the archive does not load as a docker image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantUser, wantEntry := dockerfileFinal(t)
	if cf.Config.User != wantUser || !slices.Equal(cf.Config.Entrypoint, wantEntry) {
		t.Fatalf("image runs %v as %q; the Dockerfile runs %v as %q", cf.Config.Entrypoint, cf.Config.User, wantEntry, wantUser)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Fatalf("platform %s/%s", cf.OS, cf.Architecture)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var files []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(ociimage.Epoch) {
			t.Errorf("%s: owner %d:%d, time %s", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		if h.Typeflag == tar.TypeReg {
			files = append(files, h.Name)
		}
	}
	want := []string{"etc/ssl/certs/ca-certificates.crt", "manager"}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want exactly %v (no shell, nothing else)", files, want)
	}
}

// The same inputs give the same digest.
func TestImageIsReproducible(t *testing.T) {
	_, a := testImage(t)
	_, b := testImage(t)
	if a != b {
		t.Fatalf("digests %s and %s for the same inputs", a, b)
	}
}
