// Command image builds keyferry's container images without a Docker engine (see
// hack/internal/ociimage), as an image archive that `docker load` and `ctr images import`
// accept.
//
//	go run ./hack/image -cmd ./cmd/manager -tag keyferry:dev -version v0.1.0 -out bin/keyferry.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/keyferry/keyferry/hack/internal/ociimage"
)

type options struct {
	cmd, tag, version, out, caFile string
}

func main() {
	var o options
	flag.StringVar(&o.cmd, "cmd", "./cmd/manager", "Go package of the image's one binary")
	flag.StringVar(&o.tag, "tag", "keyferry:dev", "image reference written into the archive")
	flag.StringVar(&o.version, "version", "dev", "version stamped into the binary")
	flag.StringVar(&o.out, "out", "bin/keyferry.tar", "archive to write")
	flag.StringVar(&o.caFile, "ca-file", ociimage.CAPath, "CA bundle to ship (Debian's ca-certificates)")
	flag.Parse()
	digest, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s %s\n", o.out, o.tag, digest)
}

func build(o options) (v1.Hash, error) {
	img, err := ociimage.Build(o.cmd, o.version, "amd64", o.caFile)
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
