//go:build upgrade || soak

package node

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// vaultCounts reads the dev vault pod's request counters.
func vaultCounts(t *testing.T) map[string]int {
	t.Helper()
	out, err := tryVaultCounts()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryVaultCounts() (map[string]int, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(vaultCA))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := c.Get("https://" + vaultIP + ":8443/debug/counts")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]int{}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}
