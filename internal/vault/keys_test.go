package vault_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/vault"
)

// The key API against the stand-ins, as the vendors document it: a key is created (its
// value answered once), listed by id and prefix, verified, revoked (and then answers
// 401); a revoke of a revoked key is not an error; no request of it is the connection's
// outcome, and no key shows in an error.
func TestKeyAPIs(t *testing.T) {
	for _, provider := range []string{"keyway", "knowledgestack"} {
		t.Run(provider, func(t *testing.T) {
			f := newFixture(t, devvault.Options{})
			admin := map[string]string{"keyway": "kw_live_ADMINkey0123456789abcdefghijklmnopqrs", "knowledgestack": "ks_live_ADMINkey0123456789abcdefghijklmnopqrs"}[provider]
			f.dev.AddKey(devvault.Key{Vendor: provider, ID: "7f0c7b8e-1111-4222-8333-944455556666", Name: "admin", Token: admin,
				Environment: "live", Scopes: []string{"read:secrets", "admin:api-keys"}})
			cfg := f.config("keyway")
			cfg.Provider, cfg.BaseURL, cfg.Token = provider, f.http.URL+"/"+provider, admin
			cfg.Auth = vault.AuthBearer
			c, err := vault.New(cfg, vault.Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			list, err := c.ListKeys(ctx, admin)
			if err != nil || len(list) != 1 || list[0].ID != "7f0c7b8e-1111-4222-8333-944455556666" {
				t.Fatalf("ListKeys = %+v, %v", list, err)
			}
			if provider == "keyway" && (list[0].Prefix != admin[:16] || c.Keys().Prefix(admin) != admin[:16]) {
				t.Errorf("prefix %q, want %q", list[0].Prefix, admin[:16])
			}
			created, value, err := c.CreateKey(ctx, admin, vault.NewKey{Name: "keyferry-x", Environment: "live", Scopes: []string{"read:secrets", "admin:api-keys"}, ExpiresInDays: 30})
			if err != nil || created.ID == "" || value == "" {
				t.Fatalf("CreateKey = %+v, %v", created, err)
			}
			if provider == "keyway" && (created.ExpiresAt.IsZero() || !strings.HasPrefix(value, "kw_live_")) {
				t.Errorf("keyway key %+v: want an expiry and a kw_live_ value", created)
			}
			if err := c.VerifyKey(ctx, value); err != nil {
				t.Errorf("VerifyKey(new) = %v", err)
			}
			if err := c.RevokeKey(ctx, value, "7f0c7b8e-1111-4222-8333-944455556666"); err != nil {
				t.Fatalf("RevokeKey(old) with the new key = %v", err)
			}
			if err := c.RevokeKey(ctx, value, "7f0c7b8e-1111-4222-8333-944455556666"); err != nil {
				t.Errorf("a second revoke = %v, want nil (already revoked)", err)
			}
			err = c.VerifyKey(ctx, admin)
			if ve, ok := vault.AsError(err); !ok || ve.StatusCode != http.StatusUnauthorized {
				t.Errorf("the revoked key verifies with %v, want a 401", err)
			} else if strings.Contains(ve.Error(), admin) {
				t.Error("an error holds the key")
			}
			if o := c.LastOutcome(); o.Reason != "" {
				t.Errorf("a refused key request was recorded as the connection's outcome: %+v", o)
			}
		})
	}
}

// A key without admin:api-keys is refused with the scope named (keyway).
func TestKeywayCreateNeedsTheAdminScope(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	tok := "kw_live_READkey01234567890abcdefghijklmnopqrst"
	f.dev.AddKey(devvault.Key{Vendor: "keyway", ID: "7f0c7b8e-1111-4222-8333-000000000001", Name: "ro", Token: tok, Environment: "live", Scopes: []string{"read:secrets"}})
	cfg := f.config("keyway")
	cfg.Token = tok
	c, err := vault.New(cfg, vault.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.CreateKey(context.Background(), tok, vault.NewKey{Name: "x", Environment: "live", Scopes: []string{"read:secrets"}})
	ve, ok := vault.AsError(err)
	if !ok || ve.Reason != vault.ReasonForbidden || !strings.Contains(ve.Message, "admin:api-keys") {
		t.Fatalf("CreateKey = %v, want Forbidden naming admin:api-keys", err)
	}
}

// A new static token for a connection is swapped into its live client: the same client
// (its budget, pause and requests in flight) serves with the new token.
func TestRegistrySwapsAStaticToken(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	reg := vault.NewRegistry(nil, nil)
	cfg := f.config("keyway")
	c1, err := reg.Client("VaultConnection/ns/k", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rotated := "kw_live_ROTATED0123456789abcdefghijklmnopqrst"
	f.dev.AddToken(rotated)
	f.dev.RevokeToken(canaryToken)
	cfg.Token = rotated
	c2, err := reg.Client("VaultConnection/ns/k", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c1 != c2 {
		t.Fatal("a new token rebuilt the client: its budget and requests in flight were lost")
	}
	if _, err := c2.ReadEnvironment(context.Background(), target("keyway", "production")); err != nil {
		t.Fatalf("a read with the swapped token: %v", err)
	}
	cfg.RequestTimeout *= 2
	if c3, _ := reg.Client("VaultConnection/ns/k", cfg); c3 == c1 {
		t.Error("another config kept the client")
	}
}
