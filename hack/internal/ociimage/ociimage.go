// Package ociimage builds keyferry's container images without a Docker engine: a static
// Go binary, the CA certificates of Debian's ca-certificates, user 65532, nothing else (no
// shell). The same sources give the same image digest: the binary is built with -trimpath
// and no VCS stamp, and every file of the layer has a fixed time and owner. Used by
// hack/image (archives for the local node) and hack/release (multi-platform indexes).
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// What every keyferry image is, as the Dockerfile's final stage says (a test holds the
// two together).
const (
	User      = "65532:65532"
	CAPath    = "/etc/ssl/certs/ca-certificates.crt"
	versionLD = "github.com/keyferry/keyferry/internal/version.Version"
)

// Build builds pkg for arch and assembles its image (entry /<last element of pkg>).
func Build(pkg, version, arch, caFile string) (v1.Image, error) {
	dir, err := os.MkdirTemp("", "keyferry-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bin")
	if err := GoBuild(pkg, version, arch, bin, ""); err != nil {
		return nil, err
	}
	return Assemble(bin, Entry(pkg), caFile, arch)
}

// Entry is where the image of pkg holds its binary.
func Entry(pkg string) string { return "/" + filepath.Base(filepath.Clean(pkg)) }

// Epoch is every file's and the image's time: a fixed one keeps the digest a function of
// the contents.
var Epoch = time.Unix(0, 0).UTC()

// GoBuild builds a static linux binary for arch in the module at dir ("" for the current
// directory), as the Dockerfile's builder stage does (for amd64).
func GoBuild(pkg, version, arch, out, dir string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X "+versionLD+"="+version, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOTOOLCHAIN=local")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// Assemble makes the image for arch: one layer holding the binary at entry and the CA
// bundle, run as user 65532 from /.
func Assemble(binary, entry, caFile, arch string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificates (install Debian's ca-certificates): %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar(entry, bin, ca))), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: Epoch}
	cf.Config.Entrypoint = []string{entry}
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cf)
}

// layerTar is the layer's files, in a fixed order with fixed times and root ownership.
func layerTar(entry string, bin, ca []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(p string) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: Epoch, Format: tar.FormatPAX})
	}
	file := func(p string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: Epoch, Format: tar.FormatPAX})
		_, _ = tw.Write(data)
	}
	dir("etc")
	dir("etc/ssl")
	dir("etc/ssl/certs")
	file(CAPath[1:], 0o644, ca)
	file(entry[1:], 0o755, bin)
	_ = tw.Close()
	return buf.Bytes()
}
