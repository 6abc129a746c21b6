package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// tlsHandshakeTimeout bounds a TLS handshake (a server that accepts and never answers),
// whatever the request timeout.
const tlsHandshakeTimeout = 10 * time.Second

// DefaultMaxBodyBytes caps every response body: a Secret holds at most 1 MiB, and JSON
// escaping can roughly double that.
const DefaultMaxBodyBytes = 4 << 20

// newHTTPClient builds the client's transport: TLS 1.2+ with the extra CA roots, gzip
// (Go's transport asks for it and decodes it), and redirects that never carry credentials
// to another host or down to plain http.
func newHTTPClient(cfg Config) (*http.Client, error) {
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = egressDialer(cfg.EgressDeny).DialContext
		if len(cfg.EgressDeny) > 0 {
			// Through a proxy the policy would see the proxy's address, not the vault's.
			t.Proxy = nil
		}
		t.MaxIdleConnsPerHost = 8
		t.TLSHandshakeTimeout = tlsHandshakeTimeout
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if len(cfg.CABundle) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(cfg.CABundle) {
				return nil, errors.New("caBundle holds no PEM certificate")
			}
			t.TLSClientConfig.RootCAs = pool
		}
		rt = t
	}
	credentialHeaders := []string{"Authorization", "Cookie"}
	if cfg.Header != "" {
		credentialHeaders = append(credentialHeaders, cfg.Header)
	}
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if req.URL.Scheme != "https" && !cfg.AllowInsecureHTTP {
				return fmt.Errorf("refused a redirect to plain %s", req.URL.Scheme)
			}
			if resp := req.Response; resp != nil && (resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect) && via[0].ContentLength != 0 {
				// 307/308 re-send the body: a login's body is the password.
				return &redirectRefusedError{reason: fmt.Sprintf("refused an HTTP %d redirect that would send the request body again", resp.StatusCode)}
			}
			if req.URL.Host != via[0].URL.Host {
				if op := opOf(req.Context()); op == "login" || op == "refresh" || op == "signout" {
					return &redirectRefusedError{reason: "refused a redirect to another host during " + op}
				}
				for _, h := range credentialHeaders {
					req.Header.Del(h)
				}
			}
			return nil
		},
	}, nil
}

// redirectRefusedError is a redirect keyferry's policy refused to follow.
type redirectRefusedError struct{ reason string }

func (e *redirectRefusedError) Error() string { return e.reason }

type opKey struct{}

// withOp records which operation a request performs, for the redirect policy.
func withOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

func opOf(ctx context.Context) string {
	op, _ := ctx.Value(opKey{}).(string)
	return op
}

// readCapped reads at most limit bytes; a longer body is an error, not an allocation.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("response body exceeds %d bytes", limit)
	}
	return b, nil
}

// transportError classifies a failure to get a response. The message names the kind of
// failure, never the request (whose URL or headers could carry more than we want to show).
func transportError(op string, err error, ctx context.Context, limit time.Duration) *Error {
	e := &Error{Reason: ReasonProviderUnavailable, Op: op}
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	var dnsErr *net.DNSError
	var denied *EgressDeniedError
	var redirect *redirectRefusedError
	switch {
	case errors.As(err, &denied):
		e.Reason, e.Message = ReasonNotAllowed, denied.Error()
	case errors.As(err, &redirect):
		e.Reason, e.Message = ReasonNotAllowed, redirect.Error()
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		e.Message = "request canceled"
	case errors.As(err, &netErr) && netErr.Timeout() && strings.Contains(err.Error(), "TLS handshake timeout"):
		e.Message = "TLS handshake timed out after " + tlsHandshakeTimeout.String()
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		e.Message = "request timed out after " + roundTimeout(limit).String()
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Message = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		e.Message = "connection reset"
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr):
		e.Message = "TLS certificate not trusted: " + certMessage(err)
	case errors.As(err, &recErr):
		e.Message = "TLS handshake failed (is the server speaking plain http?)"
	case errors.As(err, &dnsErr):
		e.Message = "host not found: " + dnsErr.Name
	default:
		e.Message = "request failed: " + sanitize(unwrapURLError(err).Error())
	}
	return e
}

// roundTimeout shows a timeout as configured (a limit derived from a deadline is a few
// nanoseconds short of it).
func roundTimeout(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func certMessage(err error) string {
	var hostErr x509.HostnameError
	if errors.As(err, &hostErr) {
		return hostErr.Error()
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return ua.Error()
	}
	return "certificate verification failed"
}

// unwrapURLError drops *url.Error's `Get "https://...":` prefix.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
