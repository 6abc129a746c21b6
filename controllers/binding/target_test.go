package binding

import (
	"errors"
	"testing"

	"github.com/keyferry/keyferry/controllers/conditions"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

func TestOwnershipMatrix(t *testing.T) {
	secret := func(label, owner string, allowMerge ...bool) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "target", Namespace: "ns",
			Labels: map[string]string{}, Annotations: map[string]string{}}}
		if len(allowMerge) > 0 && allowMerge[0] {
			s.Annotations[kf.AnnotationAllowMerge] = "true"
		}
		if label != "" {
			s.Labels[kf.LabelBinding] = label
		}
		if owner != "" {
			s.Annotations[kf.AnnotationBinding] = owner
		}
		return s
	}
	long := "a-binding-name-that-is-far-longer-than-sixty-three-characters-allowed-in-labels"
	for _, tc := range []struct {
		name   string
		binder string
		secret *corev1.Secret
		own    ownership
		// allowed per creation policy: Owner, Orphan, Merge
		allowed [3]bool
	}{
		{"mine", "app", secret("app", "app"), ownedByThis, [3]bool{true, true, false}},
		{"mine, merges allowed", "app", secret("app", "app", true), ownedByThis, [3]bool{true, true, true}},
		{"mine, label only (older keyferry)", "app", secret("app", "", true), ownedByThis, [3]bool{true, true, true}},
		{"mine, long name hashed into the label", long, secret(kf.LabelValue(long), long, true), ownedByThis, [3]bool{true, true, true}},
		{"another binding's", "app", secret("other", "other", true), ownedByOther, [3]bool{false, false, false}},
		{"another binding's with a colliding label", "app", secret("app", "other", true), ownedByOther, [3]bool{false, false, false}},
		{"unmanaged", "app", secret("", ""), unmanaged, [3]bool{false, false, false}},
		{"unmanaged, merges allowed", "app", secret("", "", true), unmanaged, [3]bool{false, false, true}},
	} {
		for i, policy := range []kf.CreationPolicy{kf.CreationPolicyOwner, kf.CreationPolicyOrphan, kf.CreationPolicyMerge} {
			b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Name: tc.binder, Namespace: "ns"},
				Spec: kf.SecretBindingSpec{Target: kf.TargetSpec{CreationPolicy: policy}}}
			if got := ownershipOf(b, tc.secret); got != tc.own {
				t.Errorf("%s: ownership %d, want %d", tc.name, got, tc.own)
			}
			err := mayWrite(b, tc.secret)
			if (err == nil) != tc.allowed[i] {
				t.Errorf("%s under %s: mayWrite = %v, want allowed %v", tc.name, policy, err, tc.allowed[i])
			}
			var ce *conditions.ConditionError
			if err != nil && (!errors.As(err, &ce) || ce.Reason != kf.ReasonTargetConflict || ce.Class != conditions.ClassStalled) {
				t.Errorf("%s under %s: %v is not a stalled TargetConflict", tc.name, policy, err)
			}
		}
	}
}

func TestDesiredSecret(t *testing.T) {
	w := secretWriter{hmacKey: []byte("k")}
	data := map[string][]byte{"B": []byte("2"), "A": []byte("1")}
	b := &kf.SecretBinding{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns", UID: "uid-1"},
		Spec: kf.SecretBindingSpec{Target: kf.TargetSpec{Template: &kf.TargetTemplate{
			// A template cannot claim the Secret for another binding.
			Labels:      map[string]string{"team": "a", kf.LabelBinding: "victim"},
			Annotations: map[string]string{kf.AnnotationBinding: "victim", "note": "x"}}}}}
	s := w.desired(b, data)
	if s.Labels[kf.LabelBinding] != "app" || s.Annotations[kf.AnnotationBinding] != "app" || s.Labels["team"] != "a" || s.Annotations["note"] != "x" {
		t.Errorf("labels %v annotations %v", s.Labels, s.Annotations)
	}
	if s.Type != corev1.SecretTypeOpaque || len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "uid-1" || s.Labels[kf.LabelManagedBy] != kf.LabelManagedByValue {
		t.Errorf("Owner: type %q ownerRefs %v", s.Type, s.OwnerReferences)
	}
	if !upToDate(s, w.desired(b, data)) || drifted(s) {
		t.Error("a Secret holding exactly the desired state must be up to date")
	}

	b.Spec.Target.CreationPolicy = kf.CreationPolicyMerge
	m := w.desired(b, data)
	if m.Type != "" || len(m.OwnerReferences) != 0 || m.Labels[kf.LabelManagedBy] != "" || m.Annotations[kf.AnnotationKeys] != "A,B" {
		t.Errorf("Merge must not claim type, owner or managed-by: %+v", m)
	}
	b.Spec.Target.CreationPolicy = kf.CreationPolicyOrphan
	if o := w.desired(b, data); len(o.OwnerReferences) != 0 || o.Type != corev1.SecretTypeOpaque {
		t.Errorf("Orphan: %+v", o)
	}
	changed := w.desired(b, map[string][]byte{"A": []byte("other")})
	if upToDate(s, changed) {
		t.Error("new data must not be up to date")
	}
}
