// Command testapp is the workload of keyferry's tests on a real node: it prints the
// environment variables and files it is told to, once at start, and serves them on HTTP
// (files read again on every request, so a Secret volume's update shows without a
// restart). With -tls-cert and -tls-key it serves HTTPS, reading the pair again at every
// handshake (a rotated Secret volume shows without a restart). With -get it also fetches a
// URL every second (with the bearer token of -token, when that file exists) and shows the
// last status; TLS is verified against -ca when given (and the server certificate's serial
// shown), else not verified (a probe of authorization, not of TLS). With -check it is the
// soak test's reader: it reads the -check keys as files of -check-dir every 100ms and as
// environment variables at start, judges every read (internal/dev/soakvalue: whole, of its
// key, never older than the read before) and serves the tally as JSON at /reads. A
// development tool: the values it shows are test data.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	envs := flag.String("env", "", "comma-separated environment variables to show")
	files := flag.String("file", "", "comma-separated files to show")
	listen := flag.String("listen", ":8080", "address to serve them on")
	get := flag.String("get", "", "a URL to fetch every second; its last status is shown")
	token := flag.String("token", "", "a file holding a bearer token for -get (used when it exists)")
	caFile := flag.String("ca", "", "a PEM CA file: -get verifies the server against it")
	certFile := flag.String("tls-cert", "", "serve HTTPS with this certificate file (read at every handshake)")
	keyFile := flag.String("tls-key", "", "the private key file of -tls-cert")
	method := flag.String("method", http.MethodGet, "the method of -get's requests (POST: a hook)")
	serverName := flag.String("server-name", "", "the name -get verifies the server's certificate for (default: the URL's host)")
	check := flag.String("check", "", "comma-separated keys to read and judge in a loop (the soak reader)")
	checkDir := flag.String("check-dir", "/secrets", "the directory holding the -check keys as files")
	flag.Parse()
	if *check != "" {
		r := newReader(*checkDir, split(*check))
		go r.loop(100 * time.Millisecond)
		srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second, Handler: r}
		log.Fatal(srv.ListenAndServe())
	}
	var last atomic.Value
	last.Store("none yet")
	if *get != "" {
		go probe(request{url: *get, method: *method, tokenFile: *token, caFile: *caFile, serverName: *serverName}, &last)
	}
	show := func() string {
		var b strings.Builder
		for _, name := range split(*envs) {
			fmt.Fprintf(&b, "env %s=%s\n", name, os.Getenv(name))
		}
		for _, path := range split(*files) {
			data, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintf(&b, "file %s: %v\n", path, err)
				continue
			}
			fmt.Fprintf(&b, "file %s=%s\n", path, data)
		}
		if *get != "" {
			fmt.Fprintf(&b, "get %s: %s\n", *get, last.Load())
		}
		return b.String()
	}
	fmt.Print(show())
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, show()) })}
	if *certFile != "" {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			return &c, err
		}}
		log.Fatal(srv.ListenAndServeTLS("", ""))
	}
	log.Fatal(srv.ListenAndServe())
}

// request is what probe sends.
type request struct {
	url, method, tokenFile, caFile, serverName string
}

// probe sends r every second and stores the answer's status (and, verifying against
// its CA file, the serial of the server's certificate).
func probe(r request, last *atomic.Value) {
	url, tokenFile, caFile := r.url, r.tokenFile, r.caFile
	tlsCfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // without -ca: a test probe of authorization, not of TLS
	for {
		if caFile != "" {
			// Read at every request: the CA may come from a volume that changes.
			pool := x509.NewCertPool()
			if pemCA, err := os.ReadFile(caFile); err == nil && pool.AppendCertsFromPEM(pemCA) {
				tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: r.serverName}
			}
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
		req, err := http.NewRequest(r.method, url, nil)
		if err == nil {
			if tok, err := os.ReadFile(tokenFile); tokenFile != "" && err == nil {
				req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
			}
			var resp *http.Response
			if resp, err = c.Do(req); err == nil {
				_ = resp.Body.Close()
				status := strconv.Itoa(resp.StatusCode)
				if caFile != "" && resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
					status += " verified serial=" + resp.TLS.PeerCertificates[0].SerialNumber.String()
				}
				last.Store(status)
			}
		}
		if err != nil {
			last.Store("error: " + err.Error())
		}
		time.Sleep(time.Second)
	}
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
