package localstack

import (
	"net"
	"os"
	"path/filepath"

	"github.com/keyferry/keyferry/internal/dev/devcert"
)

// writeServingCert writes kube-apiserver's serving certificate (apiserver.crt, .key) into
// certDir, signed by a CA of its own, valid for localhost and ips (the node's address and
// the kubernetes Service's, which pods dial), and the service account signing pair (envtest
// writes its own only with its own serving pair), and returns the CA's PEM. envtest then
// uses them as they are.
func writeServingCert(certDir string, ips ...net.IP) ([]byte, error) {
	ca, err := devcert.NewCA("keyferry-local-ca")
	if err != nil {
		return nil, err
	}
	serving, err := ca.Serving("kube-apiserver", []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...))
	if err != nil {
		return nil, err
	}
	sa, err := devcert.NewCA("keyferry-local-sa-signer")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"apiserver.crt": serving.CertPEM, "apiserver.key": serving.KeyPEM,
		"sa-signer.crt": sa.CertPEM, "sa-signer.key": sa.KeyPEM} {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return ca.CertPEM, nil
}
