package controllers_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/devvault"
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

// Merge writes only into a Secret whose owner opted in, never takes a key another manager
// holds, and a binding whose cleanup the API refuses does not stay Terminating.
func TestMergeNeedsConsentAndTakesNoKeyOver(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	mustCreate(t, cred, vc)
	tls := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ingress-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY")}}
	mustCreate(t, tls)

	// No consent: TargetConflict, nothing written.
	b := bindingFor(ns, "steal", "keyway", "keyway")
	b.Spec.Keys = &kf.KeySelector{Include: []string{"^DB_PASS$"}}
	b.Spec.Rename = map[string]kf.SecretKeyName{"DB_PASS": "tls.crt"}
	b.Spec.Target = kf.TargetSpec{Name: "ingress-tls", CreationPolicy: kf.CreationPolicyMerge}
	mustCreate(t, b)
	got := waitReason(t, b, kf.ReasonTargetConflict)
	if msg := readyCondition(got.Status.Conditions).Message; !strings.Contains(msg, kf.AnnotationAllowMerge) {
		t.Fatalf("message %q does not say how to consent", msg)
	}
	if s := getSecret(t, ns, "ingress-tls"); string(s.Data["tls.crt"]) != "CERT" {
		t.Fatal("tls.crt was overwritten without consent")
	}

	// Consent, but the key is another manager's: still refused, naming the key.
	s := getSecret(t, ns, "ingress-tls")
	s.Annotations = map[string]string{kf.AnnotationAllowMerge: "true"}
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	refresh(t, b, "consented")
	eventually(t, 10*time.Second, "conflict naming tls.crt", func() (bool, string) {
		c := readyCondition(getBinding(t, b).Status.Conditions)
		return c != nil && c.Reason == kf.ReasonTargetConflict && strings.Contains(c.Message, "key tls.crt"), fmt.Sprint(c)
	})
	if s := getSecret(t, ns, "ingress-tls"); string(s.Data["tls.crt"]) != "CERT" {
		t.Fatal("tls.crt was taken over from its manager")
	}
	if err := k8s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "binding gone", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(b), &kf.SecretBinding{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	// A new key into a consenting Secret works and goes with the binding.
	add := bindingFor(ns, "add", "keyway", "keyway")
	add.Spec.Keys = &kf.KeySelector{Include: []string{"^DB_USER$"}}
	add.Spec.Target = kf.TargetSpec{Name: "ingress-tls", CreationPolicy: kf.CreationPolicyMerge}
	mustCreate(t, add)
	waitReason(t, add, kf.ReasonSynced)
	if s := getSecret(t, ns, "ingress-tls"); string(s.Data["DB_USER"]) != "app" || string(s.Data["tls.crt"]) != "CERT" {
		t.Fatalf("merged keys %v", keysOf(s.Data))
	}
	if err := k8s.Delete(ctx, add); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "merged key removed", func() (bool, string) {
		s := getSecret(t, ns, "ingress-tls")
		return s.Data["DB_USER"] == nil && string(s.Data["tls.crt"]) == "CERT", fmt.Sprint(keysOf(s.Data))
	})
	stillServing(t)
}

// A connection cannot turn an ordinary Secret of its namespace into a credential sent to a
// URL of the user's choice: only Secrets labelled keyferry.dev/credentials=true serve.
func TestOnlyLabelledSecretsServeAsCredentials(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	// Another tool's Secret: the attacker names it as an API key to send to their URL.
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-root"},
		StringData: map[string]string{"password": canaryPassword}}
	mustCreate(t, other)
	vc, _ := connectionFor(ns, "exfil", "stash")
	vc.Spec.Auth.APIKey.SecretRef = kf.SecretKeyReference{Name: "db-root", Key: "password"}
	mustCreate(t, vc)
	got := waitConnReason(t, vc, kf.ReasonCredentialsNotFound)
	if msg := readyCondition(got.Status.Conditions).Message; !strings.Contains(msg, kf.LabelCredentials) {
		t.Fatalf("message %q does not say which label to add", msg)
	}
	// The CA bundle path is guarded the same way.
	ca, cred := connectionFor(ns, "ca", "keyway")
	ca.Spec.CABundleSecretRef = &kf.SecretKeyReference{Name: "db-root", Key: "password"}
	mustCreate(t, cred, ca)
	waitConnReason(t, ca, kf.ReasonCredentialsNotFound)

	// Its owner labels it: the connection picks it up without any change of its own.
	s := getSecret(t, ns, "db-root")
	s.Labels = map[string]string{kf.LabelCredentials: "true"}
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "labelled credential accepted", func() (bool, string) {
		c := readyCondition(getConnection(t, vc).Status.Conditions)
		return c != nil && c.Reason != kf.ReasonCredentialsNotFound, fmt.Sprint(c)
	})
	stillServing(t)
}

func getConnection(t *testing.T, vc *kf.VaultConnection) *kf.VaultConnection {
	t.Helper()
	got := &kf.VaultConnection{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(vc), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// A ClusterVaultConnection lends the admin's credential only for the vaults and
// environments it names, with the admin's request unless it lets bindings set their own,
// and only to namespaces its selector matches.
func TestClusterConnectionLendsOnlyWhatItAllows(t *testing.T) {
	ctx := context.Background()
	credNS := newNamespace(t, nil)
	mustCreate(t, credentials(credNS, "kw", map[string]string{"token": canaryKeymint}))
	name := "lend-" + credNS
	cvc := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: kf.VaultConnectionSpec{Provider: kf.ProviderKeymint, URL: vaultURL + "/keymint", AllowInsecureHTTP: true,
			Auth:    kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "kw", Namespace: credNS, Key: "token"}}},
			Request: &kf.RequestSpec{Path: "/key?productId={vault}&licenseKey={environment}", DataPath: "data.license"}},
		NamespaceSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"lend": credNS}},
		AllowedVaults:       []string{"acme/{namespace}"},
		AllowedEnvironments: []string{"prod*"},
	}}
	mustCreate(t, cvc)
	t.Cleanup(func() { _ = k8s.Delete(ctx, cvc) })
	tenant := newNamespace(t, map[string]string{"lend": credNS})
	dev.SetSecret("acme/"+tenant, "production", "OWN", "1")

	bind := func(name, vaultName, env string, rq *kf.RequestSpec) *kf.SecretBinding {
		b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name}, Spec: kf.SecretBindingSpec{
			ConnectionRef: kf.ConnectionReference{Name: cvc.Name, Kind: kf.ConnectionKindCluster},
			Vault:         vaultName, Environment: env, Request: rq}}
		mustCreate(t, b)
		t.Cleanup(func() { _ = k8s.Delete(ctx, b) })
		return b
	}
	// Its own vault, the admin's request: synced.
	own := bind("own", "acme/"+tenant, "production", nil)
	waitReason(t, own, kf.ReasonSynced)
	if s := getSecret(t, tenant, "own"); string(s.Data["OWN"]) != "1" {
		t.Fatalf("keys %v", keysOf(s.Data))
	}
	for _, tc := range []struct {
		name, vault, env string
		rq               *kf.RequestSpec
		msg              string
	}{
		{"other-vault", "acme/payments", "production", nil, "allowedVaults"},
		{"other-env", "acme/" + tenant, "staging", nil, "allowedEnvironments"},
		{"own-request", "acme/" + tenant, "production", &kf.RequestSpec{Path: "/key?productId=acme/payments&licenseKey=production", DataPath: "data.license"}, "allowBindingRequest"},
	} {
		got := waitReason(t, bind(tc.name, tc.vault, tc.env, tc.rq), kf.ReasonNotAllowed)
		if msg := readyCondition(got.Status.Conditions).Message; !strings.Contains(msg, tc.msg) {
			t.Fatalf("%s: message %q does not name %s", tc.name, msg, tc.msg)
		}
		if !secretGone(tenant, tc.name) {
			t.Fatalf("%s: a Secret was written", tc.name)
		}
	}
	// The admin lets bindings choose the request: now it is theirs to set.
	// A patch, not a read-modify-write: keyferry writes the connection's status too.
	mergePatch(t, cvc.DeepCopy(), map[string]any{"spec": map[string]any{"allowBindingRequest": true}})
	waitReason(t, &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "own-request"}}, kf.ReasonSynced)
	// The connection's own request: the binding in a namespace outside the selector.
	outside := newNamespace(t, nil)
	b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: outside, Name: "app"}, Spec: kf.SecretBindingSpec{
		ConnectionRef: kf.ConnectionReference{Name: cvc.Name, Kind: kf.ConnectionKindCluster}, Vault: "acme/" + outside, Environment: "production"}}
	mustCreate(t, b)
	waitReason(t, b, kf.ReasonNotAllowed)
	stillServing(t)
}

// A Merge binding whose cleanup the API refuses (here: removing its key would leave a
// basic-auth Secret with neither username nor password) says so in an Event and goes.
func TestRefusedMergeCleanupLetsTheBindingGo(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	auth := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "basic",
		Annotations: map[string]string{kf.AnnotationAllowMerge: "true"}},
		Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{"username": []byte("u")}}
	mustCreate(t, cred, vc, auth)
	b := bindingFor(ns, "pw", "keyway", "keyway")
	b.Spec.Keys = &kf.KeySelector{Include: []string{"^DB_PASS$"}}
	b.Spec.Rename = map[string]kf.SecretKeyName{"DB_PASS": "password"}
	b.Spec.Target = kf.TargetSpec{Name: "basic", CreationPolicy: kf.CreationPolicyMerge}
	mustCreate(t, b)
	waitReason(t, b, kf.ReasonSynced)
	// The owner drops their key: the password keyferry wrote is now the only credential.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"data":{"username":null}}`))
	if err := k8s.Patch(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "basic"}}, patch); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "binding gone", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(b), &kf.SecretBinding{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	eventually(t, 10*time.Second, "a CleanupRefused event", func() (bool, string) {
		events := &eventsv1.EventList{}
		if err := k8s.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Reason == "CleanupRefused" && e.Regarding.Name == "pw" {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(events.Items), " events")
	})
}
