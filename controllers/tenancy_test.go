package controllers_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/devvault"
)

// Each test here replays, as a namespaced user would, an attack on the shared operator,
// shows that keyferry refuses it, and that it still serves other bindings.

// stillServing shows the operator syncs an ordinary binding after an attack.
func stillServing(t *testing.T) {
	t.Helper()
	setup(t, "keyway")
}

// A user's URL (or a redirect it answers with) aimed at an address on the egress deny
// list is refused at dial time. The deny list here holds a loopback address; no test
// ever sends traffic beyond loopback.
func TestEgressPolicyRefusesDeniedAddresses(t *testing.T) {
	l, err := net.Listen("tcp", deniedLoopback+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", deniedLoopback, err)
	}
	target := devvault.New(&devvault.Data{
		Vaults: map[string]map[string]map[string]string{"acme/payments": {"production": {"STOLEN": "1"}}},
		Tokens: []string{canaryToken},
	}, devvault.Options{})
	denied := &httptest.Server{Listener: l, Config: &http.Server{Handler: target}}
	denied.Start()
	defer denied.Close()
	// A server the policy allows, answering every request with a redirect to the denied one.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, denied.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer redirector.Close()

	for _, tc := range []struct{ name, url string }{
		{"direct", denied.URL + "/keyway"},
		{"through a redirect", redirector.URL + "/keyway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			vc, cred := connectionFor(ns, "keyway", "keyway")
			vc.Spec.URL = tc.url
			b := bindingFor(ns, "app", "keyway", "keyway")
			mustCreate(t, cred, vc, b)
			t.Cleanup(func() { _ = k8s.Delete(context.Background(), b.DeepCopy()) })
			got := waitReason(t, b, kf.ReasonNotAllowed)
			msg := readyCondition(got.Status.Conditions).Message
			if !strings.Contains(msg, deniedLoopback) || !strings.Contains(msg, "--egress-deny-cidrs") {
				t.Fatalf("message %q does not name the address and the flag", msg)
			}
			if n := target.Count("keyway.pull"); n != 0 {
				t.Fatalf("the denied address served %d pulls", n)
			}
			if !secretGone(ns, "app") {
				t.Fatal("a Secret was written from a denied address")
			}
		})
	}
	stillServing(t)
}

// Templates that would run for ever or balloon the manager are InvalidSpec at once, and
// twenty of them (more than the workers) leave the operator serving everyone else.
func TestHostileTemplatesDoNotPinWorkers(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	var bindings []*kf.SecretBinding
	for i := 0; i < 20; i++ {
		b := bindingFor(ns, fmt.Sprintf("forever-%d", i), "keyway", "keyway")
		b.Spec.Target.Template = &kf.TargetTemplate{Data: map[string]string{"X": "{{range 9223372036854775807}}{{end}}"}}
		bindings = append(bindings, b)
	}
	balloon := bindingFor(ns, "balloon", "keyway", "keyway")
	balloon.Spec.Target.Template = &kf.TargetTemplate{Data: map[string]string{"X": "{{range 30000000}}{{$.DB_USER}}{{end}}"}}
	bindings = append(bindings, balloon)
	for _, b := range bindings {
		mustCreate(t, b)
	}
	t.Cleanup(func() {
		for _, b := range bindings {
			_ = k8s.Delete(context.Background(), b)
		}
	})
	for _, b := range bindings {
		got := waitReason(t, b, kf.ReasonInvalidSpec)
		if msg := readyCondition(got.Status.Conditions).Message; !strings.Contains(msg, "range may only iterate over the pulled values") {
			t.Fatalf("%s: message %q", b.Name, msg)
		}
	}
	stillServing(t)
}
