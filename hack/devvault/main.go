// Command devvault is a DEVELOPMENT TOOL: a local stand-in for the Keyway, Keystash,
// Stash, Knowledge Stack and Keymint APIs as far as keyferry uses them, for the demo and
// the end-to-end tests. It is not a vault: data and credentials come from a plain file and
// nothing is protected. It listens on loopback by default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devvault"
)

func main() {
	var (
		listen = flag.String("listen", "127.0.0.1:8200", "Address to listen on (port 0 picks a free one).")
		data   = flag.String("data", "hack/devvault-data.json", "JSON file with vaults, tokens, API keys and users.")
		cert   = flag.String("tls-cert", "", "PEM certificate to serve HTTPS with (with --tls-key); plain HTTP without.")
		key    = flag.String("tls-key", "", "PEM private key of --tls-cert.")
		state  = flag.String("state", "", "A file that keeps every debug change of a value; read instead of --data when it exists (a restarted dev vault answers as before).")
		opts   devvault.Options
	)
	flag.DurationVar(&opts.TokenTTL, "token-ttl", time.Hour, "Lifetime of session tokens (Keystash, Knowledge Stack).")
	flag.IntVar(&opts.KeywayLimit, "keyway-limit", 100, "Keyway requests allowed per --keyway-window; 0 disables the limit.")
	flag.DurationVar(&opts.KeywayWindow, "keyway-window", 15*time.Minute, "Keyway rate-limit window.")
	flag.IntVar(&opts.KeywayOverLimitStatus, "keyway-over-limit-status", 500, "Status of an over-limit Keyway answer: 500 as the server is built, or 429 as documented.")
	flag.IntVar(&opts.KeystashPerSecond, "keystash-per-second", 5, "Keystash requests allowed per second; 0 disables the limit.")
	flag.BoolVar(&opts.KnowledgeStackCookie, "knowledgestack-cookie", false, "Knowledge Stack sign-in answers with a ks_uat cookie instead of access_token.")
	flag.Parse()
	opts.StateFile = *state
	if *state != "" {
		if _, err := os.Stat(*state); err == nil {
			*data = *state
		}
	}

	if err := run(*listen, *data, *cert, *key, opts); err != nil {
		log.Fatalf("devvault: %v", err)
	}
}

func run(listen, dataFile, cert, key string, opts devvault.Options) error {
	d, err := devvault.LoadData(dataFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	scheme := "http"
	if cert != "" {
		scheme = "https"
	}
	// The first line on stdout is the address, so scripts can read a picked port.
	fmt.Printf("devvault listening on %s://%s\n", scheme, ln.Addr())
	log.Printf("devvault: DEVELOPMENT TOOL, not a vault. Vendors under /keyway, /keystash, /stash, /knowledgestack, /keymint; request counts at /debug/counts")
	srv := &http.Server{Handler: devvault.New(d, opts), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	serve := func() error { return srv.Serve(ln) }
	if cert != "" {
		serve = func() error { return srv.ServeTLS(ln, cert, key) }
	}
	if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
