package clusterbinding

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func clusterBinding() *kf.ClusterSecretBinding {
	return &kf.ClusterSecretBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pull", UID: types.UID("uid-1"), Generation: 3,
			Annotations: map[string]string{kf.AnnotationRefresh: "r1", "unrelated": "x"}},
		Spec: kf.ClusterSecretBindingSpec{
			Namespaces: []string{"a"},
			Template: kf.BindingTemplate{
				Metadata: kf.BindingTemplateMetadata{Labels: map[string]string{"team": "platform"}},
				Spec: kf.SecretBindingSpec{ConnectionRef: kf.ConnectionReference{Name: "shared", Kind: kf.ConnectionKindCluster},
					Vault: "acme/registry", Environment: "production", Keys: &kf.KeySelector{Include: []string{"^DOCKER_"}}},
			},
		},
	}
}

func TestDesired(t *testing.T) {
	c := clusterBinding()
	b := desired(c, "a")
	if b.Name != "pull" || b.Namespace != "a" {
		t.Fatalf("name %s/%s", b.Namespace, b.Name)
	}
	if b.Labels[kf.LabelClusterSecretBinding] != "pull" || b.Labels["team"] != "platform" {
		t.Errorf("labels %v", b.Labels)
	}
	if b.Annotations[kf.AnnotationRefresh] != "r1" || b.Annotations["unrelated"] != "" {
		t.Errorf("annotations %v: only the refresh annotation passes on", b.Annotations)
	}
	if !ownedBy(b, c) {
		t.Errorf("owner references %v", b.OwnerReferences)
	}
	c.Spec.BindingName = "registry"
	if got := desired(c, "a"); got.Name != "registry" {
		t.Errorf("bindingName: %s", got.Name)
	}
	c.Spec.Template.Spec.Environment = "staging"
	if got := desired(c, "a"); got.Annotations[kf.AnnotationTemplateHash] == b.Annotations[kf.AnnotationTemplateHash] {
		t.Error("a changed template kept its hash")
	}
	// The label alone does not make a binding ours.
	spoof := desired(c, "a")
	spoof.OwnerReferences[0].UID = "someone-else"
	if ownedBy(spoof, c) {
		t.Error("a binding with another UID counted as ours")
	}
}

func TestUpToDate(t *testing.T) {
	c := clusterBinding()
	want := desired(c, "a")
	served := func(edit func(b *kf.SecretBinding)) *kf.SecretBinding {
		b := want.DeepCopy()
		// What the API server adds: defaults and status.
		b.Spec.RefreshInterval = &metav1.Duration{Duration: time.Hour}
		b.Spec.RefreshPolicy = kf.RefreshPolicyPeriodic
		b.Spec.Target.CreationPolicy = kf.CreationPolicyOwner
		b.Status.ObservedGeneration = 1
		if edit != nil {
			edit(b)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		edit func(b *kf.SecretBinding)
		want bool
	}{
		{"as applied, with the server's defaults", nil, true},
		{"a field the template does not set, added by hand", func(b *kf.SecretBinding) { b.Spec.Keys.Exclude = []string{"X"} }, true},
		{"a template field edited by hand", func(b *kf.SecretBinding) { b.Spec.Environment = "staging" }, false},
		{"a list edited by hand", func(b *kf.SecretBinding) { b.Spec.Keys.Include = append(b.Spec.Keys.Include, "^X") }, false},
		{"our label removed", func(b *kf.SecretBinding) { delete(b.Labels, "team") }, false},
		{"an older template", func(b *kf.SecretBinding) { b.Annotations[kf.AnnotationTemplateHash] = "old" }, false},
	} {
		if got := upToDate(served(tc.edit), want); got != tc.want {
			t.Errorf("%s: upToDate = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func binding(ns string, gen int64, ready metav1.ConditionStatus, reason string, stalled bool) *kf.SecretBinding {
	b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pull", Generation: gen}}
	if reason == "" {
		return b
	}
	b.Status.ObservedGeneration = gen
	b.Status.Conditions = []metav1.Condition{{Type: kf.ConditionReady, Status: ready, Reason: reason, Message: reason + " message", ObservedGeneration: gen}}
	if stalled {
		b.Status.Conditions = append(b.Status.Conditions, metav1.Condition{Type: kf.ConditionStalled, Status: metav1.ConditionTrue, Reason: reason, ObservedGeneration: gen})
	}
	return b
}

func TestComputeStatus(t *testing.T) {
	ok := func(ns string) namespaceResult {
		return namespaceResult{namespace: ns, binding: binding(ns, 1, metav1.ConditionTrue, kf.ReasonSynced, false)}
	}
	conflict := namespaceResult{namespace: "c", failure: &kf.NamespaceFailure{Namespace: "c", Reason: kf.ReasonConflict, Message: "taken"}}
	newer := binding("n", 2, metav1.ConditionTrue, kf.ReasonSynced, false)
	newer.Status.ObservedGeneration = 1 // applied, not yet synced by its reconciler
	for _, tc := range []struct {
		name                string
		results             []namespaceResult
		ready               metav1.ConditionStatus
		reason, progress    string
		provisioned, readyN int32
		failed              int32
		messageHas          string
	}{
		{"all ready", []namespaceResult{ok("a"), ok("b")}, metav1.ConditionTrue, kf.ReasonSynced, "", 2, 2, 0, "2 of 2 bindings Ready"},
		{"nothing matches", nil, metav1.ConditionTrue, kf.ReasonSynced, "", 0, 0, 0, "no namespace matches"},
		{"a new binding not yet synced", []namespaceResult{ok("a"), {namespace: "b", binding: binding("b", 1, "", "", false)}},
			metav1.ConditionFalse, kf.ReasonProgressing, kf.ConditionReconciling, 2, 1, 0, "1 of 2 bindings Ready"},
		{"a binding applied again, its new generation not synced", []namespaceResult{{namespace: "n", binding: newer}},
			metav1.ConditionFalse, kf.ReasonProgressing, kf.ConditionReconciling, 1, 0, 0, "0 of 1"},
		{"a conflict stalls", []namespaceResult{ok("a"), conflict}, metav1.ConditionFalse, kf.ReasonConflict, kf.ConditionStalled, 1, 1, 1, "c (Conflict: taken)"},
		{"a stalled binding stalls", []namespaceResult{ok("a"), {namespace: "u", binding: binding("u", 1, metav1.ConditionFalse, kf.ReasonNotAllowed, true)}},
			metav1.ConditionFalse, kf.ReasonBindingsNotReady, kf.ConditionStalled, 2, 1, 1, "u (NotAllowed: NotAllowed message)"},
		{"a rate-limited binding is still reconciling", []namespaceResult{{namespace: "r", binding: binding("r", 1, metav1.ConditionFalse, kf.ReasonRateLimited, false)}},
			metav1.ConditionFalse, kf.ReasonBindingsNotReady, kf.ConditionReconciling, 1, 0, 1, "1 of 1 namespaces failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := computeStatus(kf.ClusterSecretBindingStatus{}, 3, tc.results, t0)
			ready := meta.FindStatusCondition(st.Conditions, kf.ConditionReady)
			if ready == nil || ready.Status != tc.ready || ready.Reason != tc.reason || !strings.Contains(ready.Message, tc.messageHas) {
				t.Fatalf("Ready %+v, want %s %s containing %q", ready, tc.ready, tc.reason, tc.messageHas)
			}
			for _, typ := range []string{kf.ConditionReconciling, kf.ConditionStalled} {
				if has := meta.FindStatusCondition(st.Conditions, typ) != nil; has != (typ == tc.progress) {
					t.Errorf("%s present = %v", typ, has)
				}
			}
			if st.ObservedGeneration != 3 || st.ProvisionedNamespaces != tc.provisioned || st.ReadyBindings != tc.readyN || st.FailedNamespaceCount != tc.failed {
				t.Errorf("observed %d provisioned %d ready %d failed %d", st.ObservedGeneration, st.ProvisionedNamespaces, st.ReadyBindings, st.FailedNamespaceCount)
			}
		})
	}
}

func TestFailedNamespacesAreCapped(t *testing.T) {
	var results []namespaceResult
	for i := range 45 {
		ns := fmt.Sprintf("ns-%02d", 44-i)
		results = append(results, namespaceResult{namespace: ns, failure: &kf.NamespaceFailure{Namespace: ns, Reason: kf.ReasonConflict}})
	}
	st := computeStatus(kf.ClusterSecretBindingStatus{}, 1, results, t0)
	if len(st.FailedNamespaces) != kf.MaxFailedNamespaces || st.FailedNamespaceCount != 45 || st.FailedNamespaces[0].Namespace != "ns-00" {
		t.Fatalf("listed %d (first %s), count %d", len(st.FailedNamespaces), st.FailedNamespaces[0].Namespace, st.FailedNamespaceCount)
	}
	if msg := meta.FindStatusCondition(st.Conditions, kf.ConditionReady).Message; !strings.Contains(msg, "and 42 more") {
		t.Errorf("message %q", msg)
	}
	// Once resolved, the list is gone, not an empty list.
	st = computeStatus(st, 1, nil, t0)
	if st.FailedNamespaces != nil || st.FailedNamespaceCount != 0 {
		t.Errorf("after resolution: %v %d", st.FailedNamespaces, st.FailedNamespaceCount)
	}
}
