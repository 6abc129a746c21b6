package vault_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/keyferry/keyferry/internal/vault"
)

func TestDefaultEgressDenyList(t *testing.T) {
	got, err := vault.ParseCIDRs(vault.DefaultEgressDeny)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"169.254.0.0/16", "fe80::/10", "127.0.0.0/8", "::1/128", "0.0.0.0/8", "100.100.100.200/32", "fd00:ec2::254/128"}
	var s []string
	for _, p := range got {
		s = append(s, p.String())
	}
	if !slices.Equal(s, want) {
		t.Fatalf("default deny list %v, want %v", s, want)
	}
	// The metadata endpoints are covered (checked by value: nothing is dialled).
	for _, a := range []string{"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "127.0.0.1", "::ffff:169.254.169.254"} {
		addr := netip.MustParseAddr(a).Unmap()
		if !slices.ContainsFunc(got, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			t.Errorf("%s is not denied by default", a)
		}
	}
	if l, err := vault.ParseCIDRs(""); err != nil || len(l) != 0 {
		t.Fatalf("empty value: %v %v, want no policy", l, err)
	}
	if _, err := vault.ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Fatal("a bad CIDR must be refused")
	}
}

func TestEgressPolicyIsCheckedOnTheDialledAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	hits := 0
	denied := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits++
		_, _ = w.Write([]byte(`{"A":"1"}`))
	})}}
	denied.Start()
	defer denied.Close()
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hop" {
			http.Redirect(w, r, denied.URL+"/x", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte(`{"A":"1"}`))
	}))
	defer allowed.Close()
	deny, _ := vault.ParseCIDRs("127.0.0.2/32")
	reg := vault.NewRegistry(nil, deny)
	for _, tc := range []struct {
		base, path string
		ok         bool
	}{
		{denied.URL, "/x", false},
		{allowed.URL, "/hop", false},
		{allowed.URL, "/x", true},
	} {
		c, err := reg.Client(tc.base+tc.path, vault.Config{Provider: "http", BaseURL: tc.base, AllowInsecureHTTP: true, Auth: vault.AuthBearer, Token: "t0ken"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Fetch(context.Background(), vault.Target{Vault: "v", Environment: "e", Request: &vault.PullRequest{Path: tc.path}}, 0)
		if tc.ok {
			if err != nil {
				t.Errorf("%s%s: %v", tc.base, tc.path, err)
			}
			continue
		}
		ve, isVault := vault.AsError(err)
		if !isVault || ve.Reason != vault.ReasonNotAllowed || !strings.Contains(err.Error(), "127.0.0.2") || !strings.Contains(err.Error(), "--egress-deny-cidrs") {
			t.Errorf("%s%s: %v, want NotAllowed naming the address and the flag", tc.base, tc.path, err)
		}
	}
	if hits != 0 {
		t.Fatalf("the denied server was reached %d times", hits)
	}
}
