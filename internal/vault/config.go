package vault

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"
)

// AuthKind is how a client authenticates.
type AuthKind string

// Auth kinds.
const (
	AuthBearer AuthKind = "bearer"
	AuthAPIKey AuthKind = "apiKey"
	AuthLogin  AuthKind = "login"
)

// Encoding of a login request.
type Encoding string

// Login encodings.
const (
	EncodingForm Encoding = "form"
	EncodingJSON Encoding = "json"
)

// Format of a secrets payload.
type Format string

// Payload formats.
const (
	FormatJSON   Format = "json"
	FormatDotenv Format = "dotenv"
)

// LoginConfig describes a username/password exchange for a session token.
type LoginConfig struct {
	Path          string
	Encoding      Encoding
	UsernameField string
	PasswordField string
	TokenField    string
	TokenCookie   string
	// TTL applies when neither a JWT exp claim nor expires_in says when the token ends.
	TTL         time.Duration
	RefreshPath string
	SignoutPath string
}

// Config is everything a client needs, in plain values. Secret material lives only here.
type Config struct {
	Provider          string
	BaseURL           string
	AllowInsecureHTTP bool
	// CABundle holds extra PEM roots trusted besides the system's.
	CABundle []byte

	Auth AuthKind
	// Token is the static bearer token or API key.
	Token string
	// Header carries an API key (AuthAPIKey).
	Header   string
	Username string
	Password string
	Login    LoginConfig

	Budget         RateBudget
	RequestTimeout time.Duration

	// EgressDeny lists the addresses the default transport refuses to dial (the
	// operator's egress policy); empty allows every address.
	EgressDeny []netip.Prefix
	// Transport, when set, replaces the default HTTP transport (tests, proxies); the
	// egress policy is then the transport's business.
	Transport http.RoundTripper
	// Clock, when set, replaces the wall clock (tests).
	Clock Clock
}

const defaultRequestTimeout = 10 * time.Second

// defaultLoginTTL applies to a login whose preset and spec name no TTL and whose token
// says nothing of its expiry.
const defaultLoginTTL = time.Hour

// withDefaults returns cfg completed from its provider's preset, or an error naming what
// is missing or wrong.
func (cfg Config) withDefaults() (Config, *Preset, error) {
	p := PresetFor(cfg.Provider)
	if p == nil {
		return cfg, nil, fmt.Errorf("unknown provider %q", cfg.Provider)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = p.DefaultURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" {
		return cfg, nil, fmt.Errorf("invalid url %q", cfg.BaseURL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !cfg.AllowInsecureHTTP {
			return cfg, nil, fmt.Errorf("url %q is plain http: set allowInsecureHTTP to allow it", cfg.BaseURL)
		}
	default:
		return cfg, nil, fmt.Errorf("url %q must be https", cfg.BaseURL)
	}
	switch cfg.Auth {
	case AuthBearer:
	case AuthAPIKey:
		if cfg.Header == "" {
			cfg.Header = p.APIKeyHeader
		}
		if cfg.Header == "" {
			return cfg, nil, fmt.Errorf("apiKey auth needs a header for provider %s", cfg.Provider)
		}
	case AuthLogin:
		cfg.Login = mergeLogin(cfg.Login, p.Login)
		if cfg.Login.Path == "" {
			return cfg, nil, fmt.Errorf("login auth needs a path for provider %s", cfg.Provider)
		}
	default:
		return cfg, nil, fmt.Errorf("unknown auth %q", cfg.Auth)
	}
	if cfg.Budget.Requests <= 0 || cfg.Budget.Period <= 0 {
		cfg.Budget = p.Budget
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	return cfg, p, nil
}

func mergeLogin(spec, preset LoginConfig) LoginConfig {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	out := LoginConfig{
		Path:          pick(spec.Path, preset.Path),
		Encoding:      Encoding(pick(string(spec.Encoding), string(preset.Encoding))),
		UsernameField: pick(spec.UsernameField, pick(preset.UsernameField, "username")),
		PasswordField: pick(spec.PasswordField, pick(preset.PasswordField, "password")),
		TokenField:    pick(spec.TokenField, pick(preset.TokenField, "token")),
		TokenCookie:   pick(spec.TokenCookie, preset.TokenCookie),
		TTL:           spec.TTL,
		RefreshPath:   pick(spec.RefreshPath, preset.RefreshPath),
		SignoutPath:   pick(spec.SignoutPath, preset.SignoutPath),
	}
	if out.Encoding == "" {
		out.Encoding = EncodingJSON
	}
	if out.TTL <= 0 {
		out.TTL = preset.TTL
	}
	if out.TTL <= 0 {
		out.TTL = defaultLoginTTL
	}
	return out
}

// fingerprintKey is a per-process random key: fingerprints tell configs apart in memory
// without ever being an unkeyed hash of a credential.
var fingerprintKey = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}()

// fingerprint identifies cfg, login credentials included: a client built from a config
// with another fingerprint must not be reused. The static token is not part of it (a new
// one is swapped into the live client, see Registry), nor are transport and clock.
func (cfg Config) fingerprint() string {
	m := hmac.New(sha256.New, fingerprintKey)
	for _, s := range []string{
		cfg.Provider, cfg.BaseURL, strconv.FormatBool(cfg.AllowInsecureHTTP), string(cfg.CABundle),
		string(cfg.Auth), cfg.Header, cfg.Username, cfg.Password,
		cfg.Login.Path, string(cfg.Login.Encoding), cfg.Login.UsernameField, cfg.Login.PasswordField,
		cfg.Login.TokenField, cfg.Login.TokenCookie, cfg.Login.TTL.String(), cfg.Login.RefreshPath,
		cfg.Login.SignoutPath, strconv.Itoa(cfg.Budget.Requests), cfg.Budget.Period.String(),
		cfg.RequestTimeout.String(),
	} {
		// Length-prefixed so that field boundaries cannot shift.
		_, _ = fmt.Fprintf(m, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(m.Sum(nil))
}

// secrets lists the credential values that must never appear in a message.
func (cfg Config) secrets() []string {
	var out []string
	for _, s := range []string{cfg.Token, cfg.Password} {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	return out
}
