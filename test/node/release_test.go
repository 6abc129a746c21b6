//go:build node || upgrade || soak

package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/keyferry/keyferry/internal/dev/devcert"
	"github.com/keyferry/keyferry/internal/dev/localnode"
)

// published is a release pushed to the node's registry.
type published struct {
	host, caFile      string
	chart, version    string
	repository, image string // the manager's repository, and its index digest
}

// testRegistry is an OCI registry (go-containerregistry's) served over TLS on the host's
// end of the node's veth, with a CA made here that the node's containerd is given.
type testRegistry struct {
	host, caFile string
	transport    *http.Transport
}

func startRegistry() (*testRegistry, error) {
	ca, err := devcert.NewCA("keyferry-registry-ca")
	if err != nil {
		return nil, err
	}
	pair, err := ca.Serving("registry", nil, []net.IP{net.ParseIP(localnode.HostIP)})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return nil, err
	}
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", net.JoinHostPort(localnode.HostIP, "0"))
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: registry.New(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	r := &testRegistry{host: l.Addr().String(), caFile: filepath.Join(node.Dir(), "registry-ca.crt")}
	if err := os.WriteFile(r.caFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := node.TrustRegistry(r.host, ca.CertPEM); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	r.transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return r, nil
}

// publishRelease pushes the release in dir (make release's output) to a new registry.
func publishRelease(root, dir string) (*published, error) {
	r, err := startRegistry()
	if err != nil {
		return nil, err
	}
	return r.publish(root, dir)
}

// publish pushes the release in dir to r: the image indexes and the chart (helm push, OCI).
func (r *testRegistry) publish(root, dir string) (*published, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "release.json"))
	if err != nil {
		return nil, fmt.Errorf("the release to install (make test-cluster writes it): %w", err)
	}
	var rel struct {
		Version, ChartVersion string
		Images                map[string]string
	}
	if err := json.Unmarshal(raw, &rel); err != nil {
		return nil, err
	}
	p := &published{host: r.host, caFile: r.caFile, version: rel.ChartVersion, image: rel.Images["keyferry"],
		repository: r.host + "/keyferry", chart: "oci://" + r.host + "/charts/keyferry"}
	lp, err := layout.FromPath(filepath.Join(dir, "images"))
	if err != nil {
		return nil, err
	}
	top, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, desc := range im.Manifests {
		refName := desc.Annotations["org.opencontainers.image.ref.name"] // name:version
		idx, err := top.ImageIndex(desc.Digest)
		if err != nil {
			return nil, err
		}
		ref, err := name.ParseReference(r.host + "/" + refName)
		if err != nil {
			return nil, err
		}
		if err := remote.WriteIndex(ref, idx, remote.WithTransport(r.transport)); err != nil {
			return nil, fmt.Errorf("pushing %s: %w", ref, err)
		}
	}
	chart := filepath.Join(dir, "keyferry-"+rel.ChartVersion+".tgz")
	if err := helm(root, "push", chart, "oci://"+r.host+"/charts", "--ca-file", r.caFile); err != nil {
		return nil, err
	}
	return p, nil
}

// installArgs are helm's arguments that install (or upgrade to) the published release.
func (p *published) installArgs(verb string, extra ...string) []string {
	args := []string{verb, "keyferry", p.chart, "--version", p.version, "--ca-file", p.caFile,
		"--namespace", "keyferry-system", "--set", "image.repository=" + p.repository}
	return append(args, extra...)
}

// pulledByDigest says whether every manager pod runs the release's image as the chart
// pins it, repository@digest, which the kubelet could only pull from the registry (nothing
// of keyferry was imported into the node).
func (p *published) pulledByDigest() (bool, string) {
	out, err := node.Kubectl(context.Background(), "get", "pods", "-n", "keyferry-system", "-l", "app.kubernetes.io/name=keyferry",
		"-o", `jsonpath={range .items[*]}{.spec.containers[0].image}{"\n"}{end}`)
	if err != nil {
		return false, err.Error()
	}
	images := strings.Fields(out)
	for _, img := range images {
		if img != p.repository+"@"+p.image {
			return false, out
		}
	}
	return len(images) > 0, out
}
