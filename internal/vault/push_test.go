package vault_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyferry/keyferry/internal/dev/devvault"
	"github.com/keyferry/keyferry/internal/vault"
)

func TestKeywayPushOneKeyLeavesTheOthers(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	c := newClient(t, f.config("keyway"))
	ctx := context.Background()
	pt := vault.PushTarget{Vault: "acme/payments", Environment: "production"}
	if err := c.CanPush(pt); err != nil {
		t.Fatal(err)
	}
	if err := c.PushKey(ctx, pt, "NEW_KEY", "a value with \"quotes\"\nand a newline"); err != nil {
		t.Fatal(err)
	}
	got := f.dev.Secrets("acme/payments", "production")
	if got["NEW_KEY"] != "a value with \"quotes\"\nand a newline" || got["DB_USER"] != "app" || len(got) != len(wantProduction)+1 {
		t.Fatalf("after one push: %v", got)
	}
	env, err := c.ReadEnvironment(ctx, vault.Target{Vault: "acme/payments", Environment: "production"})
	if err != nil || env["NEW_KEY"] != got["NEW_KEY"] {
		t.Fatalf("read back: %v %v", env, err)
	}
	if err := c.DeleteKey(ctx, pt, "NEW_KEY"); err != nil {
		t.Fatal(err)
	}
	if got := f.dev.Secrets("acme/payments", "production"); len(got) != len(wantProduction) {
		t.Fatalf("after delete: %v", got)
	}
	// An empty environment reads as empty, not as NotFound.
	f.dev.SetSecret("acme/payments", "empty", "X", "1")
	if err := c.DeleteKey(ctx, vault.PushTarget{Vault: "acme/payments", Environment: "empty"}, "X"); err != nil {
		t.Fatal(err)
	}
	if env, err := c.ReadEnvironment(ctx, vault.Target{Vault: "acme/payments", Environment: "empty"}); err != nil || len(env) != 0 {
		t.Fatalf("empty environment: %v %v", env, err)
	}
}

func TestPushRules(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	c := newClient(t, f.config("keyway"))
	pt := vault.PushTarget{Vault: "acme/payments", Environment: "production"}
	for _, tc := range []struct {
		key  string
		size int
		want string
	}{
		{"tls.crt", 10, `key "tls.crt"`},
		{"lower", 10, "rename"},
		{"BIG", 64<<10 + 1, "over the 64 KiB"},
	} {
		err := c.CheckKey(pt, tc.key, tc.size)
		if !errors.Is(err, vault.ErrKeyRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.key, err)
		}
	}
	if err := c.CheckKey(pt, "DB_PASS", 64<<10); err != nil {
		t.Errorf("a valid key: %v", err)
	}
	// Providers without a documented write API are refused before any request.
	ks := newClient(t, f.config("stash"))
	wantReason(t, ks.CanPush(pt), vault.ReasonInvalidConfig)
	// A value may not go into a URL.
	wantReason(t, c.CanPush(vault.PushTarget{Request: &vault.PushRequest{Path: "/v/{key}/{value}"}}), vault.ReasonInvalidConfig)
}

func TestPushErrorsNeverHoldTheValue(t *testing.T) {
	f := newFixture(t, devvault.Options{})
	f.dev.SetScopes(canaryToken, "read:secrets")
	c := newClient(t, f.config("keyway"))
	err := c.PushKey(context.Background(), vault.PushTarget{Vault: "acme/payments", Environment: "production"}, "K", canaryValue)
	ve := wantReason(t, err, vault.ReasonForbidden)
	if !strings.Contains(ve.Message, "write:secrets") || ve.Op != "push" {
		t.Fatalf("403: %v", err)
	}
	// A provider that echoes the request body in its error.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("bad body: " + string(b)))
	}))
	defer echo.Close()
	h := newClient(t, vault.Config{Provider: "http", BaseURL: echo.URL, AllowInsecureHTTP: true, Auth: vault.AuthBearer,
		Token: canaryToken, RequestTimeout: time.Second})
	err = h.PushKey(context.Background(), vault.PushTarget{Vault: "v", Environment: "e",
		Request: &vault.PushRequest{Method: "PUT", Path: "/cfg/{vault}/{environment}/{key}", Body: `{"value":"{value}"}`}}, "K", canaryValue)
	if err == nil || strings.Contains(err.Error(), canaryValue) || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("echoed error: %v", err)
	}
}
