package workload

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

func TestRestartDecision(t *testing.T) {
	for _, tc := range []struct {
		name           string
		recorded, seen map[string]string
		want           bool
	}{
		{"nothing recorded yet (first sight)", map[string]string{}, map[string]string{"a": "1"}, false},
		{"same data", map[string]string{"a": "1"}, map[string]string{"a": "1"}, false},
		{"a new Secret appears (a new binding's first sync)", map[string]string{"a": "1"}, map[string]string{"a": "1", "b": "2"}, false},
		{"a Secret it read changed", map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1", "b": "3"}, true},
		{"a Secret is no longer read", map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1"}, false},
	} {
		if got := changed(tc.recorded, tc.seen); got != tc.want {
			t.Errorf("%s: changed = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := decodeConsumed("v2;a=1,b=2"); len(got) != 2 || got["a"] != "1" || got["b"] != "2" {
		t.Errorf("decode: %v", got)
	}
	if len(decodeConsumed("a=1")) != 0 {
		t.Error("digests of an older scheme must read as not recorded (re-recorded, no restart)")
	}
	if len(decodeConsumed("")) != 0 {
		t.Error("an empty annotation decodes to something")
	}
	long := strings.Repeat("s", 64)
	if consumedLabelName("payments-env") != "payments-env" || len(consumedLabelName(long)) > 63 || consumedLabelName(long) == consumedLabelName(long+"x") {
		t.Error("label names: a short Secret name is kept, a long one hashed apart")
	}
	w := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{
		Labels:      map[string]string{kf.LabelPrefixConsumed + "a": "3", "app": "x"},
		Annotations: map[string]string{kf.AnnotationConsumed: "v2;a=1,b=2"}}}
	labelled, recorded := recordedConsumption(w)
	if len(labelled) != 1 || labelled["a"] != "3" || recorded["a"] != "3" || recorded["b"] != "2" {
		t.Errorf("recorded: labels %v, with the older annotation %v", labelled, recorded)
	}
}
