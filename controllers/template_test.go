package controllers_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// Templates have sprig's functions: an image pull config built from two vault values; a
// refused function (env) is InvalidSpec naming it, and a function failing with a value
// in its message (fail) is InvalidSpec without the value; the last good Secret stays through both.
func TestTemplateFunctionLibrary(t *testing.T) {
	ns := newNamespace(t, nil)
	vc, cred := connectionFor(ns, "keyway", "keyway")
	b := bindingFor(ns, "pull", "keyway", "keyway")
	b.Spec.Target.Template = &kf.TargetTemplate{Data: map[string]string{
		"config.json": `{{ dict "auths" (dict "registry.local" (dict "auth" (printf "%s:%s" .DB_USER .DB_PASS | b64enc))) | toJson }}`,
		"user":        `{{ .DB_USER | upper | quote }}`,
	}}
	mustCreate(t, cred, vc, b)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), b.DeepCopy()) })
	waitReason(t, b, kf.ReasonSynced)
	want := `{"auths":{"registry.local":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("app:"+canaryValue)) + `"}}}`
	s := getSecret(t, ns, "pull")
	if string(s.Data["config.json"]) != want || string(s.Data["user"]) != `"APP"` {
		t.Fatalf("rendered %q / %q, want %q / \"APP\"", s.Data["config.json"], s.Data["user"], want)
	}
	for _, tc := range []struct{ tmpl, says string }{
		{`{{ env "HOME" }}`, `function "env" is not available in keyferry templates: it reads the operator's environment`},
		{`{{ fail (printf "bad password %s" .DB_PASS) }}`, `fail: bad password [value]`},
	} {
		base := getBinding(t, b)
		patched := base.DeepCopy()
		patched.Spec.Target.Template.Data["config.json"] = tc.tmpl
		if err := k8s.Patch(context.Background(), patched, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "InvalidSpec for "+tc.tmpl, func() (bool, string) {
			got := getBinding(t, b)
			r := readyCondition(got.Status.Conditions)
			return r != nil && r.Reason == kf.ReasonInvalidSpec && got.Status.ObservedGeneration == got.Generation && strings.Contains(r.Message, tc.says), r.String()
		})
		got := getBinding(t, b)
		assertNoCanary(t, readyCondition(got.Status.Conditions).Message)
		if s := getSecret(t, ns, "pull"); string(s.Data["config.json"]) != want {
			t.Fatalf("the last good Secret was not kept: %q", s.Data["config.json"])
		}
	}
	evs := &corev1.EventList{}
	if err := k8s.List(context.Background(), evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		assertNoCanary(t, e.Message)
	}
}
