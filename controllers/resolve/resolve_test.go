package resolve

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/internal/vault"
)

// kinds are the ways an object uses a connection, as the binding and push reconcilers
// ask (each with the same vault and environment).
var kinds = map[string]func(ns string) Use{
	"SecretBinding": func(ns string) Use {
		return Use{Namespace: ns, Reads: []Read{{Vault: "acme/app", Environment: "production"}}}
	},
	"SecretPush": func(ns string) Use {
		return Use{Namespace: ns, Push: true, Reads: []Read{{Vault: "acme/app", Environment: "production"}}}
	},
}

func cvc(mutate func(*kf.ClusterVaultConnection)) *kf.ClusterVaultConnection {
	c := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "platform"}}
	c.Spec.Provider = kf.ProviderKeyway
	c.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	c.Spec.AllowedVaults = []string{"acme/*"}
	c.Spec.AllowedEnvironments = []string{"production"}
	c.Spec.AllowPush = true
	c.Status.Conditions = []metav1.Condition{{Type: kf.ConditionReady, Status: metav1.ConditionTrue, Reason: kf.ReasonAuthenticated}}
	if mutate != nil {
		mutate(c)
	}
	return c
}

// TestOneLendingRuleForEveryKind: the same mistake gives the same answer (reason, class
// and message, or the same sentinel) for a binding and a push, in the same order of
// checks: a policy refusal wins over a connection that is deleted, suspended or broken.
func TestOneLendingRuleForEveryKind(t *testing.T) {
	deleting := func(c *kf.ClusterVaultConnection) {
		now := metav1.Now()
		c.DeletionTimestamp, c.Finalizers = &now, []string{kf.FinalizerSignout}
	}
	suspended := func(c *kf.ClusterVaultConnection) { c.Spec.Suspend = true }
	broken := func(c *kf.ClusterVaultConnection) {
		c.Status.Conditions[0] = metav1.Condition{Type: kf.ConditionReady, Status: metav1.ConditionFalse, Reason: kf.ReasonCredentialsNotFound, Message: "Secret platform-token not found"}
	}
	both := func(fs ...func(*kf.ClusterVaultConnection)) func(*kf.ClusterVaultConnection) {
		return func(c *kf.ClusterVaultConnection) {
			for _, f := range fs {
				f(c)
			}
		}
	}
	otherVault := func(c *kf.ClusterVaultConnection) { c.Spec.AllowedVaults = []string{"other/*"} }
	otherEnv := func(c *kf.ClusterVaultConnection) { c.Spec.AllowedEnvironments = []string{"staging"} }
	tests := []struct {
		name      string
		namespace string
		conn      *kf.ClusterVaultConnection // nil: none
		reason    string                     // "" with sentinel
		sentinel  error
		message   string
	}{
		{name: "not found", namespace: "team-a", reason: kf.ReasonConnectionNotReady, message: "ClusterVaultConnection platform not found"},
		{name: "disallowed namespace", namespace: "team-b", conn: cvc(nil), reason: kf.ReasonNotAllowed,
			message: "ClusterVaultConnection platform does not allow namespace team-b (namespaceSelector)"},
		{name: "disallowed vault", namespace: "team-a", conn: cvc(otherVault), reason: kf.ReasonNotAllowed,
			message: `ClusterVaultConnection platform does not lend vault "acme/app" to namespace team-a (allowedVaults)`},
		{name: "disallowed environment", namespace: "team-a", conn: cvc(otherEnv), reason: kf.ReasonNotAllowed,
			message: `ClusterVaultConnection platform does not lend environment "production" to namespace team-a (allowedEnvironments)`},
		{name: "deleted", namespace: "team-a", conn: cvc(deleting), reason: kf.ReasonConnectionNotReady,
			message: "ClusterVaultConnection platform is being deleted"},
		{name: "suspended", namespace: "team-a", conn: cvc(suspended), sentinel: ErrConnectionSuspended},
		{name: "not ready", namespace: "team-a", conn: cvc(broken), reason: kf.ReasonConnectionNotReady,
			message: "ClusterVaultConnection platform: CredentialsNotFound: Secret platform-token not found"},
		{name: "client not built", namespace: "team-a", conn: cvc(nil), sentinel: ErrClientPending},
		{name: "suspended and disallowed vault", namespace: "team-a", conn: cvc(both(suspended, otherVault)), reason: kf.ReasonNotAllowed,
			message: `ClusterVaultConnection platform does not lend vault "acme/app" to namespace team-a (allowedVaults)`},
		{name: "deleted and disallowed environment", namespace: "team-a", conn: cvc(both(deleting, otherEnv)), reason: kf.ReasonNotAllowed,
			message: `ClusterVaultConnection platform does not lend environment "production" to namespace team-a (allowedEnvironments)`},
		{name: "suspended in a namespace not selected", namespace: "team-b", conn: cvc(suspended), reason: kf.ReasonNotAllowed,
			message: "ClusterVaultConnection platform does not allow namespace team-b (namespaceSelector)"},
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = kf.AddToScheme(scheme)
	for _, tc := range tests {
		for kind, use := range kinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				objs := []client.Object{
					&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"team": "a"}}},
					&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b", Labels: map[string]string{"team": "b"}}},
				}
				if tc.conn != nil {
					objs = append(objs, tc.conn.DeepCopy())
				}
				c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
				_, _, err := Connection(context.Background(), c, vault.NewRegistry(nil, nil),
					kf.ConnectionReference{Kind: kf.ConnectionKindCluster, Name: "platform"}, use(tc.namespace))
				if tc.sentinel != nil {
					if !errors.Is(err, tc.sentinel) {
						t.Fatalf("err = %v, want %v", err, tc.sentinel)
					}
					return
				}
				ce, ok := conditions.AsConditionError(err)
				if !ok {
					t.Fatalf("err = %v, want a condition error", err)
				}
				if ce.Reason != tc.reason || ce.Message != tc.message {
					t.Fatalf("got %s: %q\nwant %s: %q", ce.Reason, ce.Message, tc.reason, tc.message)
				}
				wantClass := conditions.ClassTransient
				if tc.reason == kf.ReasonNotAllowed {
					wantClass = conditions.ClassStalled
				}
				if ce.Class != wantClass {
					t.Fatalf("class %s, want %s", ce.Class, wantClass)
				}
			})
		}
	}
}

// TestLendRefusesWhatOnlyOneKindAsks: allowPush binds pushes only; allowBindingRequest
// binds a read's own request only.
func TestLendRefusesWhatOnlyOneKindAsks(t *testing.T) {
	noPush := cvc(func(c *kf.ClusterVaultConnection) { c.Spec.AllowPush = false })
	if err := Lend(noPush, kinds["SecretBinding"]("team-a")); err != nil {
		t.Fatalf("a binding needs no allowPush: %v", err)
	}
	err := Lend(noPush, kinds["SecretPush"]("team-a"))
	if ce, ok := conditions.AsConditionError(err); !ok || ce.Reason != kf.ReasonNotAllowed ||
		ce.Message != "ClusterVaultConnection platform does not lend itself for pushes (allowPush)" {
		t.Fatalf("push without allowPush: %v", err)
	}
	own := Use{Namespace: "team-a", Reads: []Read{{Vault: "acme/app", Environment: "production", Request: &kf.RequestSpec{Path: "/x"}}}}
	if ce, ok := conditions.AsConditionError(Lend(cvc(nil), own)); !ok || ce.Reason != kf.ReasonNotAllowed {
		t.Fatalf("own request without allowBindingRequest: %v", ce)
	}
	allowing := cvc(func(c *kf.ClusterVaultConnection) { c.Spec.AllowBindingRequest = true })
	if err := Lend(allowing, own); err != nil {
		t.Fatalf("own request with allowBindingRequest: %v", err)
	}
}
