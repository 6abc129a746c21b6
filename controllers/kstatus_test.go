package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/dev/devvault"
)

// live reads obj from the API server as the JSON a kstatus reader sees.
func live(t *testing.T, obj client.Object, kind string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(kf.GroupVersion.String())
	u.SetKind(kind)
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// kstatusOf is what Flux, kpt and other kstatus readers make of u.
func kstatusOf(t *testing.T, u *unstructured.Unstructured) status.Status {
	t.Helper()
	res, err := status.Compute(u)
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}

// wantKstatus reads obj from the API server and checks what kstatus makes of it.
func wantKstatus(t *testing.T, obj client.Object, kind string, want status.Status) {
	t.Helper()
	u := live(t, obj, kind)
	if got := kstatusOf(t, u); got != want {
		t.Fatalf("%s %s: kstatus %s, want %s (status %v)", kind, obj.GetName(), got, want, u.Object["status"])
	}
}

func TestKstatusReadsBindingsRight(t *testing.T) {
	ctx := context.Background()
	t.Run("synced is Current", func(t *testing.T) {
		_, b := setup(t, "keyway")
		wantKstatus(t, getBinding(t, b), "SecretBinding", status.CurrentStatus)
	})
	t.Run("a new binding is InProgress", func(t *testing.T) {
		ns := newNamespace(t, nil)
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(kf.GroupVersion.String())
		u.SetKind("SecretBinding")
		u.SetNamespace(ns)
		u.SetName("app")
		u.Object["spec"] = map[string]any{"connectionRef": map[string]any{"name": "keyway"}, "vault": "acme/payments", "environment": "production"}
		if err := k8s.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		if got := kstatusOf(t, u); got != status.InProgressStatus { // the create's answer: no pass yet
			t.Fatalf("kstatus %s of a new binding (status %v)", got, u.Object["status"])
		}
		// Its connection does not exist: still in progress (waiting), not Current.
		wantKstatus(t, u, "SecretBinding", status.InProgressStatus)
	})
	t.Run("a spec edit not yet handled is InProgress", func(t *testing.T) {
		_, b := setup(t, "keyway")
		u := live(t, b, "SecretBinding")
		// A patch (its answer fills u), not a read-modify-write: keyferry writes it too.
		if err := k8s.Patch(ctx, u, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"keys":{"include":["^DB_"]}}}`))); err != nil {
			t.Fatal(err)
		}
		if got := kstatusOf(t, u); got != status.InProgressStatus { // the update's answer
			t.Fatalf("kstatus %s right after a spec edit", got)
		}
		eventually(t, 10*time.Second, "edit handled", func() (bool, string) {
			return kstatusOf(t, live(t, b, "SecretBinding")) == status.CurrentStatus, ""
		})
	})
	for _, tc := range []struct {
		name   string
		fault  devvault.Fault
		reason string
		want   status.Status
	}{
		{"Unauthorized", devvault.Fault{Status: 401}, kf.ReasonUnauthorized, status.FailedStatus},
		{"Forbidden", devvault.Fault{Status: 403}, kf.ReasonForbidden, status.FailedStatus},
		{"NotFound", devvault.Fault{Status: 404}, kf.ReasonNotFound, status.FailedStatus},
		{"TooLarge", devvault.Fault{Status: 200, Body: `{"data":{"content":"A=` + strings.Repeat("x", 1100<<10) + `"}}`}, kf.ReasonTooLarge, status.FailedStatus},
		{"RateLimited", devvault.Fault{Status: 429, Header: map[string]string{"Retry-After": "30"}}, kf.ReasonRateLimited, status.InProgressStatus},
		{"ProviderUnavailable", devvault.Fault{Status: 502}, kf.ReasonProviderUnavailable, status.InProgressStatus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, b := setup(t, "keyway")
			dev.InjectFault("keyway", tc.fault)
			defer dev.InjectFault("keyway", devvault.Fault{})
			refresh(t, b, "kstatus-"+tc.name)
			wantKstatus(t, waitReason(t, b, tc.reason), "SecretBinding", tc.want)
		})
	}
	t.Run("InvalidSpec", func(t *testing.T) {
		ns := newNamespace(t, nil)
		vc, cred := connectionFor(ns, "keyway", "keyway")
		b := bindingFor(ns, "app", "keyway", "keyway")
		b.Spec.Keys = &kf.KeySelector{Include: []string{"("}}
		mustCreate(t, cred, vc, b)
		wantKstatus(t, waitReason(t, b, kf.ReasonInvalidSpec), "SecretBinding", status.FailedStatus)
	})
	t.Run("TargetConflict", func(t *testing.T) {
		ns := newNamespace(t, nil)
		vc, cred := connectionFor(ns, "keyway", "keyway")
		theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}
		b := bindingFor(ns, "app", "keyway", "keyway")
		mustCreate(t, cred, vc, theirs, b)
		wantKstatus(t, waitReason(t, b, kf.ReasonTargetConflict), "SecretBinding", status.FailedStatus)
	})
	t.Run("NotAllowed", func(t *testing.T) {
		ns := newNamespace(t, nil)
		vc, cred := connectionFor(ns, "keyway", "keyway")
		vc.Spec.URL = fmt.Sprintf("http://%s:1/keyway", deniedLoopback)
		b := bindingFor(ns, "app", "keyway", "keyway")
		mustCreate(t, cred, vc, b)
		wantKstatus(t, waitReason(t, b, kf.ReasonNotAllowed), "SecretBinding", status.FailedStatus)
	})
}

func TestKstatusReadsConnectionsRight(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keystash", "keystash")
	mustCreate(t, vc) // credentials not there yet
	wantKstatus(t, waitConnReason(t, vc, kf.ReasonCredentialsNotFound), "VaultConnection", status.FailedStatus)
	mustCreate(t, cred)
	wantKstatus(t, waitConnReason(t, vc, kf.ReasonAuthenticated), "VaultConnection", status.CurrentStatus)

	bad, badCred := connectionFor(ns, "bad", "keystash")
	badCred.StringData["password"] = "wrong"
	mustCreate(t, badCred, bad)
	wantKstatus(t, waitConnReason(t, bad, kf.ReasonUnauthorized), "VaultConnection", status.FailedStatus)

	cvc := &kf.ClusterVaultConnection{ObjectMeta: metav1.ObjectMeta{Name: "kstatus-" + ns}, Spec: kf.ClusterVaultConnectionSpec{
		VaultConnectionSpec: kf.VaultConnectionSpec{Provider: kf.ProviderKeyway, URL: vaultURL + "/keyway", AllowInsecureHTTP: true,
			Auth: kf.AuthSpec{Bearer: &kf.BearerAuth{SecretRef: kf.SecretKeyReference{Name: "missing", Namespace: ns, Key: "token"}}}}}}
	mustCreate(t, cvc)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), cvc) })
	got := cvc.DeepCopy()
	waitCondition(t, got, func() []metav1.Condition { return got.Status.Conditions }, func() any { return got.Status }, kf.ReasonCredentialsNotFound)
	wantKstatus(t, got, "ClusterVaultConnection", status.FailedStatus)
}
