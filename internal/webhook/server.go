package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"golang.org/x/net/netutil"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// MaxConnections bounds the connections the listener holds open at once: a flood of
// slow clients waits in the kernel's backlog instead of costing goroutines and memory.
const MaxConnections = 256

// Server serves a handler on its own address, over TLS from CertDir (tls.crt, tls.key,
// reloaded when they change, as cert-manager renews them) or, with AllowHTTP and no
// CertDir, over plain HTTP (local development, a TLS-terminating ingress).
type Server struct {
	Addr      string
	CertDir   string
	AllowHTTP bool
	Handler   http.Handler
	// OnListen, when set, is told the address the server listens on (tests bind :0).
	OnListen func(net.Addr)
}

// Enabled says whether the server has a way to serve (TLS or plain HTTP allowed).
func (s *Server) Enabled() bool { return s.CertDir != "" || s.AllowHTTP }

// Serve listens until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	if !s.Enabled() {
		return errors.New("webhook listener: neither a certificate directory nor plain HTTP allowed")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("webhook listener on %s: %w", s.Addr, err)
	}
	ln = netutil.LimitListener(ln, MaxConnections)
	srv := &http.Server{
		Handler: s.Handler,
		// Slow clients cannot hold a connection: a hook is one small request.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if s.CertDir != "" {
		w, err := certwatcher.New(filepath.Join(s.CertDir, "tls.crt"), filepath.Join(s.CertDir, "tls.key"))
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("webhook listener certificate in %s: %w", s.CertDir, err)
		}
		go func() { _ = w.Start(ctx) }()
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: w.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	}
	if s.OnListen != nil {
		s.OnListen(ln.Addr())
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	}
}
