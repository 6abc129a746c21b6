package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

func getClusterBinding(t *testing.T, name string) *kf.ClusterSecretBinding {
	t.Helper()
	c := &kf.ClusterSecretBinding{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Name: name}, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// bindingIn returns the SecretBinding name in ns, nil if there is none.
func bindingIn(t *testing.T, ns, name string) *kf.SecretBinding {
	t.Helper()
	b := &kf.SecretBinding{}
	err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, b)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func labelNamespace(t *testing.T, ns string, lbls map[string]any) {
	t.Helper()
	mergePatch(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, map[string]any{"metadata": map[string]any{"labels": lbls}})
}

// waitClusterBinding waits until the ClusterSecretBinding's status, for its current
// generation, satisfies ok.
func waitClusterBinding(t *testing.T, name, what string, ok func(st kf.ClusterSecretBindingStatus) bool) kf.ClusterSecretBindingStatus {
	t.Helper()
	var st kf.ClusterSecretBindingStatus
	eventually(t, 20*time.Second, what, func() (bool, string) {
		c := getClusterBinding(t, name)
		st = c.Status
		return c.Status.ObservedGeneration == c.Generation && ok(st), fmt.Sprintf("%+v", st)
	})
	return st
}

// One ClusterSecretBinding fills every namespace it selects through a shared
// ClusterVaultConnection with one pull, follows namespaces as they come and go, grants
// nothing the connection does not lend, and never touches a binding it did not create.
func TestClusterSecretBindingFillsNamespaces(t *testing.T) {
	ctx := context.Background()
	credNS := newNamespace(t, nil)
	mustCreate(t, credentials(credNS, "kw", map[string]string{"token": canaryToken}))
	vaultName, pulls := ownVault(credNS, "DOCKER_AUTH", "v1")
	sel := map[string]string{"csb": credNS}
	lends := map[string]string{"lend": credNS}
	cvc := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "csb-" + credNS}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "kw", Namespace: credNS, Key: "token"}}}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: lends},
	}}
	mustCreate(t, cvc)
	t.Cleanup(func() { _ = k8s.Delete(ctx, cvc) })
	both := map[string]string{"csb": credNS, "lend": credNS}
	a, b, c := newNamespace(t, both), newNamespace(t, both), newNamespace(t, both)
	// Listed by name, but the connection does not lend itself there: the binding is made
	// and refused by the connection's rule, as a hand-written one would be.
	unlent := newNamespace(t, nil)
	// A tenant took the name first in a selected namespace.
	taken := newNamespace(t, both)
	foreign := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: taken, Name: "registry"}, Spec: kf.SecretBindingSpec{
		ConnectionRef: kf.ConnectionReference{Name: "mine"}, Vault: "tenant/own", Environment: "dev"}}
	// Another tenant, not selected, labels a binding as if the ClusterSecretBinding had
	// made it, owner reference and all (with a UID it made up), hoping it gets removed or
	// rewritten.
	bystander := newNamespace(t, nil)
	spoof := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: bystander, Name: "registry",
		Labels: map[string]string{kf.LabelClusterSecretBinding: "fill-" + credNS},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: kf.GroupVersion.String(), Kind: "ClusterSecretBinding",
			Name: "fill-" + credNS, UID: "made-up", Controller: ptr.To(true)}}},
		Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "mine"}, Vault: "tenant/own", Environment: "dev"}}
	mustCreate(t, foreign, spoof)

	csb := &kf.ClusterSecretBinding{ObjectMeta: metav1.ObjectMeta{Name: "fill-" + credNS}, Spec: kf.ClusterSecretBindingSpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel},
		Namespaces:        []string{unlent},
		BindingName:       "registry",
		Template: kf.BindingTemplate{
			Metadata: kf.BindingTemplateMetadata{Labels: map[string]string{"team": "platform"}},
			Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: cvc.Name, Kind: kf.ConnectionKindCluster},
				Vault: vaultName, Environment: "production", Target: kf.TargetSpec{Name: "registry-auth"}},
		},
	}}
	before := dev.Count(pulls)
	mustCreate(t, csb)
	t.Cleanup(func() { _ = k8s.Delete(ctx, csb) })

	st := waitClusterBinding(t, csb.Name, "three Ready, one refused by the connection, one conflict", func(st kf.ClusterSecretBindingStatus) bool {
		return st.ReadyBindings == 3 && st.ProvisionedNamespaces == 4 && st.FailedNamespaceCount == 2
	})
	for _, ns := range []string{a, b, c} {
		got := bindingIn(t, ns, "registry")
		if got.Labels[kf.LabelClusterSecretBinding] != csb.Name || got.Labels["team"] != "platform" || metav1.GetControllerOf(got).Name != csb.Name {
			t.Fatalf("%s: labels %v owners %v", ns, got.Labels, got.OwnerReferences)
		}
		if s := getSecret(t, ns, "registry-auth"); string(s.Data["DOCKER_AUTH"]) != "v1" {
			t.Fatalf("%s: Secret keys %v", ns, keysOf(s.Data))
		}
	}
	if n := dev.Count(pulls) - before; n != 1 {
		t.Errorf("three namespaces on one connection, vault and environment cost %d pulls, want 1", n)
	}
	failed := map[string]string{}
	for _, f := range st.FailedNamespaces {
		failed[f.Namespace] = f.Reason
	}
	if failed[taken] != kf.ReasonConflict || failed[unlent] != kf.ReasonNotAllowed {
		t.Fatalf("failedNamespaces %+v", st.FailedNamespaces)
	}
	cur := getClusterBinding(t, csb.Name)
	ready := meta.FindStatusCondition(cur.Status.Conditions, kf.ConditionReady)
	if ready.Status != metav1.ConditionFalse || ready.Reason != kf.ReasonConflict || !meta.IsStatusConditionTrue(cur.Status.Conditions, kf.ConditionStalled) {
		t.Fatalf("conditions %+v", cur.Status.Conditions)
	}
	// The tenants' own bindings are as they wrote them.
	for _, own := range []*kf.SecretBinding{foreign, spoof} {
		got := bindingIn(t, own.Namespace, own.Name)
		if got == nil || got.Spec.Vault != "tenant/own" || got.Labels["team"] != "" {
			t.Fatalf("a tenant's binding %s/%s was touched: %+v", own.Namespace, own.Name, got)
		}
	}

	// A new namespace gets its binding within seconds; one that stops matching loses it;
	// the one listed by name is dropped from the list.
	d := newNamespace(t, both)
	eventually(t, 10*time.Second, "a new namespace is provisioned", func() (bool, string) {
		got := bindingIn(t, d, "registry")
		return got != nil && readyCondition(got.Status.Conditions) != nil && readyCondition(got.Status.Conditions).Reason == kf.ReasonSynced, "not yet"
	})
	labelNamespace(t, b, map[string]any{"csb": nil})
	mergePatch(t, csb, map[string]any{"spec": map[string]any{"namespaces": nil}})
	eventually(t, 10*time.Second, "bindings leave namespaces no longer selected", func() (bool, string) {
		gb, gu := bindingIn(t, b, "registry"), bindingIn(t, unlent, "registry")
		return (gb == nil || !gb.DeletionTimestamp.IsZero()) && (gu == nil || !gu.DeletionTimestamp.IsZero()), "still there"
	})

	// A template change reaches every binding; a hand edit of a template field is undone.
	dev.SetSecret(vaultName, "staging", "DOCKER_AUTH", "s1")
	mergePatch(t, csb, map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"environment": "staging"}}}})
	for _, ns := range []string{a, c, d} {
		eventually(t, 10*time.Second, ns+" follows the template", func() (bool, string) {
			v := string(getSecret(t, ns, "registry-auth").Data["DOCKER_AUTH"])
			return v == "s1", v
		})
	}
	mergePatch(t, bindingIn(t, a, "registry"), map[string]any{"spec": map[string]any{"environment": "production"}})
	eventually(t, 10*time.Second, "a hand edit of the template's field is undone", func() (bool, string) {
		got := bindingIn(t, a, "registry").Spec.Environment
		return got == "staging", got
	})

	// The refresh annotation on the ClusterSecretBinding refreshes every binding.
	mergePatch(t, csb, map[string]any{"metadata": map[string]any{"annotations": map[string]string{kf.AnnotationRefresh: "all-1"}}})
	for _, ns := range []string{a, c, d} {
		eventually(t, 10*time.Second, ns+" handles the refresh", func() (bool, string) {
			got := bindingIn(t, ns, "registry").Status.LastHandledRefresh
			return got == "all-1", got
		})
	}

	// Suspended: a new namespace gets nothing, a namespace leaving keeps its binding;
	// resumed: both are handled at once.
	setSuspend(t, csb, true)
	// A suspended object writes no status, so nothing shows when the manager's cache has
	// seen the suspend: give its watch a moment, or the new namespace's event can meet the
	// cache's copy from before the patch (seen once in CI under load).
	time.Sleep(time.Second)
	e := newNamespace(t, both)
	labelNamespace(t, c, map[string]any{"csb": nil})
	time.Sleep(2 * time.Second)
	if bindingIn(t, e, "registry") != nil {
		t.Fatal("a suspended ClusterSecretBinding provisioned a namespace")
	}
	if got := bindingIn(t, c, "registry"); got == nil || !got.DeletionTimestamp.IsZero() {
		t.Fatal("a suspended ClusterSecretBinding removed a binding")
	}
	setSuspend(t, csb, false)
	eventually(t, 10*time.Second, "resumed: provisioned and removed", func() (bool, string) {
		ge, gc := bindingIn(t, e, "registry"), bindingIn(t, c, "registry")
		return ge != nil && (gc == nil || !gc.DeletionTimestamp.IsZero()), "not yet"
	})

	// The tenant gives the name up: the namespace is provisioned (rechecked without an
	// event, as the tenant's binding is not keyferry's to watch).
	if err := k8s.Delete(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	eventually(t, 45*time.Second, "a freed name is provisioned", func() (bool, string) {
		got := bindingIn(t, taken, "registry")
		return got != nil && metav1.GetControllerOf(got) != nil && metav1.GetControllerOf(got).Name == csb.Name, "not yet"
	})
	// Bindings left in namespaces no longer selected are gone or going; the bystander's
	// spoof stays.
	if got := bindingIn(t, bystander, "registry"); got == nil || !got.DeletionTimestamp.IsZero() {
		t.Fatal("the bystander's binding was removed")
	}
	if out := logs.String(); strings.Contains(out, canaryToken) {
		t.Fatal("the credential reached the log")
	}
}

// The schema refuses a ClusterSecretBinding that would select every namespace, or none,
// or that would forge keyferry's own labels, and validates the template as a binding.
func TestClusterSecretBindingValidation(t *testing.T) {
	ctx := context.Background()
	ok := kf.BindingTemplate{Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "x", Kind: kf.ConnectionKindCluster},
		Vault: "v", Environment: "e"}}
	for _, tc := range []struct {
		name string
		spec kf.ClusterSecretBindingSpec
		msg  string
	}{
		{"neither", kf.ClusterSecretBindingSpec{Template: ok}, "set namespaceSelector, namespaces or both"},
		{"empty-selector", kf.ClusterSecretBindingSpec{NamespaceSelector: &metav1.LabelSelector{}, Template: ok}, "must not be empty"},
		{"reserved-label", kf.ClusterSecretBindingSpec{Namespaces: []string{"a"}, Template: kf.BindingTemplate{
			Metadata: kf.BindingTemplateMetadata{Labels: map[string]string{kf.LabelClusterSecretBinding: "other"}}, Spec: ok.Spec}}, "reserved prefix"},
		{"template-as-binding", kf.ClusterSecretBindingSpec{Namespaces: []string{"a"}, Template: kf.BindingTemplate{Spec: kf.SecretBindingSpec{
			ConnectionRef: ok.Spec.ConnectionRef, Vault: "v", Environment: "e", Target: kf.TargetSpec{Type: "kubernetes.io/service-account-token"}}}}, "token-minting"},
		{"bad-namespace", kf.ClusterSecretBindingSpec{Namespaces: []string{"Not_A_Name"}, Template: ok}, "namespaces"},
	} {
		err := k8s.Create(ctx, &kf.ClusterSecretBinding{ObjectMeta: metav1.ObjectMeta{Name: "invalid-" + tc.name}, Spec: tc.spec})
		if err == nil {
			_ = k8s.Delete(ctx, &kf.ClusterSecretBinding{ObjectMeta: metav1.ObjectMeta{Name: "invalid-" + tc.name}})
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want Invalid naming %q", tc.name, err, tc.msg)
		}
	}
}
