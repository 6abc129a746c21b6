package plugin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/render"
)

// why's render step names the template and the function that failed, read from the
// message the render itself writes.
func TestWhyShowsTheRenderStep(t *testing.T) {
	tmpl := map[string]string{"config.json": `{{ .A | b64enc }}{{ fail "no region set" }}`}
	_, err := render.Data(map[string]string{"A": "x"}, render.Spec{Template: tmpl})
	if err == nil {
		t.Fatal("the template should fail")
	}
	b := &kf.SecretBinding{Spec: kf.SecretBindingSpec{Vault: "acme/app", Environment: "production",
		Sources: []kf.SecretSource{{Vault: "acme/app", Environment: "common", Prefix: "C_", DecodingStrategy: kf.DecodingBase64}},
		Target: kf.TargetSpec{Type: corev1.SecretTypeDockerConfigJson, Template: &kf.TargetTemplate{Data: tmpl},
			TemplateFrom: []kf.TemplateFrom{{ConfigMap: kf.TemplateConfigMapRef{Name: "tpl", Items: []kf.TemplateFromItem{{Key: "extra", TemplateAs: kf.TemplateAsKeysAndValues}}}}}}}}
	b.Status.Sources = []kf.SourceStatus{{Vault: "acme/app", Environment: "production", Keys: 3}, {Vault: "acme/app", Environment: "common", Keys: 2}}
	ready := &metav1.Condition{Type: kf.ConditionReady, Status: metav1.ConditionFalse, Reason: kf.ReasonInvalidSpec, Message: err.Error(), LastTransitionTime: metav1.NewTime(time.Now())}
	var out bytes.Buffer
	writeRender(&out, b, ready)
	for _, want := range []string{
		"source 1: acme/app production (3 keys)",
		"source 2: acme/app common, decoding Base64, prefix C_ (2 keys)",
		"templates: config.json",
		"templates from ConfigMap tpl: extra (KeysAndValues)",
		"checked as kubernetes.io/dockerconfigjson",
		`FAILED: template "config.json" failed, in function fail (at <fail "no region set">)`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("render step lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	writeRender(&out, &kf.SecretBinding{Spec: kf.SecretBindingSpec{Vault: "v", Environment: "e"}}, ready)
	if out.Len() != 0 {
		t.Errorf("a plain binding shows a render step:\n%s", out.String())
	}
}
