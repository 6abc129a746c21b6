package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// A manager without its hook listener (this suite's) says so on every receiver, Stalled:
// a hook could not reach it. The path is still computed, for when the listener is on.
func TestReceiverWithoutListenerSaysListenerDisabled(t *testing.T) {
	ns := newNamespace(t, nil)
	sec := credentials(ns, "hook", map[string]string{"token": "0123456789abcdef0123"})
	rr := &kf.RefreshReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ci"}, Spec: kf.RefreshReceiverSpec{
		Type: kf.ReceiverTypeToken, SecretRef: kf.ReceiverSecretReference{Name: "hook"}}}
	mustCreate(t, sec, rr)
	got := &kf.RefreshReceiver{}
	eventually(t, 30*time.Second, "ListenerDisabled", func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(rr), got); err != nil {
			return false, err.Error()
		}
		r, s := readyCondition(got.Status.Conditions), meta.FindStatusCondition(got.Status.Conditions, kf.ConditionStalled)
		return r != nil && r.Reason == kf.ReasonListenerDisabled && s != nil && s.Status == metav1.ConditionTrue &&
			strings.HasPrefix(got.Status.WebhookPath, "/hook/") && got.Status.ObservedGeneration == got.Generation, ""
	})
}

// The schema refuses a receiver without a type it knows or without a selector.
func TestReceiverSchema(t *testing.T) {
	ns := newNamespace(t, nil)
	for _, tc := range []struct{ name, body string }{
		{"unknown type", `{"type":"gitlab","secretRef":{"name":"s"},"selector":{}}`},
		{"no selector", `{"type":"token","secretRef":{"name":"s"}}`},
		{"no secret", `{"type":"token","selector":{}}`},
	} {
		raw := []byte(`{"apiVersion":"keyferry.dev/v1beta1","kind":"RefreshReceiver","metadata":{"name":"bad","namespace":"` + ns + `"},"spec":` + tc.body + `}`)
		obj := &kf.RefreshReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"}}
		err := k8s.Patch(context.Background(), obj, client.RawPatch("application/apply-patch+yaml", raw), client.FieldOwner("test"), client.ForceOwnership)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			_ = k8s.Delete(context.Background(), obj)
		}
	}
}
