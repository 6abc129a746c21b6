package vault_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/vault"
)

// Canary credentials and values: none may ever appear in an error message.
const (
	canaryToken    = "kw_live_CANARYtoken0123456789abcdefghijklmnopqrst"
	canaryKeymint  = "at_CANARYkeymint0123456789"
	canaryStashKey = "stash-CANARY-key-0123456789"
	canaryUser     = "ops@example.com"
	canaryPassword = "pw-CANARY-password-42"
	canaryValue    = "CANARY secret value"
	pemKey         = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\nq\"uoted\n-----END PRIVATE KEY-----"
)

func testData() *devvault.Data {
	return &devvault.Data{
		Vaults: map[string]map[string]map[string]string{
			"acme/payments": {
				"production": {"DB_USER": "app", "DB_PASS": canaryValue, "TLS_KEY": pemKey, "EMPTY": ""},
				"staging":    {"DB_USER": "stage"},
			},
			"acme/secret": {"production": {"X": "y"}},
		},
		Tokens:    []string{canaryToken, canaryKeymint},
		APIKeys:   []string{canaryStashKey},
		Users:     map[string]string{canaryUser: canaryPassword},
		Forbidden: []string{"acme/secret"},
	}
}

var wantProduction = map[string]string{"DB_USER": "app", "DB_PASS": canaryValue, "TLS_KEY": pemKey, "EMPTY": ""}

type fixture struct {
	dev   *devvault.Server
	http  *httptest.Server
	clock *clocktesting.FakeClock
}

func newFixture(t *testing.T, opts devvault.Options) *fixture {
	t.Helper()
	clock := clocktesting.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	opts.Now = clock.Now
	dev := devvault.New(testData(), opts)
	hs := httptest.NewServer(dev)
	t.Cleanup(hs.Close)
	return &fixture{dev: dev, http: hs, clock: clock}
}

// config returns a working config for provider against the dev vault.
func (f *fixture) config(provider string) vault.Config {
	cfg := vault.Config{
		Provider:          provider,
		BaseURL:           f.http.URL + "/" + provider,
		AllowInsecureHTTP: true,
		Clock:             f.clock,
		RequestTimeout:    2 * time.Second,
	}
	switch provider {
	case "keyway":
		cfg.Auth, cfg.Token = vault.AuthBearer, canaryToken
	case "keymint":
		cfg.Auth, cfg.Token = vault.AuthBearer, canaryKeymint
	case "stash":
		cfg.Auth, cfg.Token = vault.AuthAPIKey, canaryStashKey
	case "keystash", "knowledgestack":
		cfg.Auth, cfg.Username, cfg.Password = vault.AuthLogin, canaryUser, canaryPassword
	}
	return cfg
}

// target returns the target that reads acme/payments production from provider.
func target(provider, env string) vault.Target {
	t := vault.Target{Vault: "acme/payments", Environment: env}
	switch provider {
	case "keystash":
		t.Request = &vault.PullRequest{Path: "/api/v1/secrets/view?vault={vault}&environment={environment}", Format: vault.FormatJSON}
	case "stash":
		t.Request = &vault.PullRequest{Method: "POST", Path: "/api/v1/sdk/config",
			Body: `{"shop_handle":"{vault}","environment":"{environment}"}`, Format: vault.FormatJSON, DataPath: "data"}
	case "knowledgestack":
		t.Request = &vault.PullRequest{Path: "/v1/secrets?tenant={vault}&env={environment}", Format: vault.FormatDotenv, DataPath: "content"}
	case "keymint":
		t.Request = &vault.PullRequest{Path: "/key?productId={vault}&licenseKey={environment}", Format: vault.FormatJSON, DataPath: "data.license"}
	}
	return t
}

func newClient(t *testing.T, cfg vault.Config) *vault.Client {
	t.Helper()
	c, err := vault.New(cfg, vault.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantReason checks err's reason and returns a copy of it (a value, to read fields from).
func wantReason(t *testing.T, err error, want vault.Reason) vault.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", want)
	}
	ve, ok := vault.AsError(err)
	if !ok {
		t.Fatalf("error %v is not a *vault.Error", err)
	}
	if ve.Reason != want {
		t.Fatalf("reason %s (%v), want %s", ve.Reason, err, want)
	}
	return *ve
}

func httptestServer(tb testing.TB, h http.Handler) string {
	tb.Helper()
	hs := httptest.NewServer(h)
	tb.Cleanup(hs.Close)
	return hs.URL
}
