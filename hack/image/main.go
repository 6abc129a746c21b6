// Command image builds keyferry's container images without a Docker engine: a static Go
// binary, the CA certificates of Debian's ca-certificates, user 65532, nothing else (no
// shell), as an image archive that `docker load` and `ctr images import` accept. The
// same sources give the same image digest: the binary is built with -trimpath and no VCS
// stamp, and every file of the layer has a fixed time and owner.
//
//	go run ./hack/image -cmd ./cmd/manager -tag keyferry:dev -version v0.1.0 -out bin/keyferry.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// What every keyferry image is, as the Dockerfile's final stage says (a test holds the
// two together).
const (
	user      = "65532:65532"
	caPath    = "/etc/ssl/certs/ca-certificates.crt"
	versionLD = "github.com/keyferry/keyferry/internal/version.Version"
)

// epoch is every file's and the image's time: a fixed one keeps the digest a function of
// the contents.
var epoch = time.Unix(0, 0).UTC()

type options struct {
	cmd, tag, version, out, caFile string
}

func main() {
	var o options
	flag.StringVar(&o.cmd, "cmd", "./cmd/manager", "Go package of the image's one binary")
	flag.StringVar(&o.tag, "tag", "keyferry:dev", "image reference written into the archive")
	flag.StringVar(&o.version, "version", "dev", "version stamped into the binary")
	flag.StringVar(&o.out, "out", "bin/keyferry.tar", "archive to write")
	flag.StringVar(&o.caFile, "ca-file", caPath, "CA bundle to ship (Debian's ca-certificates)")
	flag.Parse()
	digest, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s %s\n", o.out, o.tag, digest)
}

func build(o options) (v1.Hash, error) {
	dir, err := os.MkdirTemp("", "keyferry-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bin")
	if err := goBuild(o.cmd, o.version, bin); err != nil {
		return v1.Hash{}, err
	}
	entry := "/" + filepath.Base(filepath.Clean(o.cmd))
	img, err := assemble(bin, entry, o.caFile)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return v1.Hash{}, err
	}
	if err := tarball.WriteToFile(o.out, ref, img); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// goBuild builds a static linux/amd64 binary, as the Dockerfile's builder stage does.
func goBuild(pkg, version, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X "+versionLD+"="+version, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOTOOLCHAIN=local")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// assemble makes the image: one layer holding the binary at entry and the CA bundle, run
// as user 65532 from /.
func assemble(binary, entry, caFile string) (v1.Image, error) {
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
	cf.OS, cf.Architecture, cf.Created = "linux", "amd64", v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{entry}
	cf.Config.User = user
	cf.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cf)
}

// layerTar is the layer's files, in a fixed order with fixed times and root ownership.
func layerTar(entry string, bin, ca []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(p string) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(p string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX})
		_, _ = tw.Write(data)
	}
	dir("etc")
	dir("etc/ssl")
	dir("etc/ssl/certs")
	file(caPath[1:], 0o644, ca)
	file(entry[1:], 0o755, bin)
	_ = tw.Close()
	return buf.Bytes()
}
