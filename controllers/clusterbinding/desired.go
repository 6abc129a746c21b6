package clusterbinding

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// desired is the SecretBinding c wants in namespace: the template, keyferry's label, the
// refresh annotation of c passed on (so one annotation refreshes every binding), the
// owner reference, and the digest of all that (AnnotationTemplateHash).
func desired(c *kf.ClusterSecretBinding, namespace string) *kf.SecretBinding {
	b := &kf.SecretBinding{
		TypeMeta: metav1.TypeMeta{APIVersion: kf.GroupVersion.String(), Kind: "SecretBinding"},
		ObjectMeta: metav1.ObjectMeta{
			Name: c.GetBindingName(), Namespace: namespace,
			Labels:      map[string]string{},
			Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: kf.GroupVersion.String(), Kind: "ClusterSecretBinding",
				Name: c.Name, UID: c.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: *c.Spec.Template.Spec.DeepCopy(),
	}
	maps.Copy(b.Labels, c.Spec.Template.Metadata.Labels)
	maps.Copy(b.Annotations, c.Spec.Template.Metadata.Annotations)
	b.Labels[kf.LabelClusterSecretBinding] = kf.LabelValue(c.Name)
	if v := c.Annotations[kf.AnnotationRefresh]; v != "" {
		b.Annotations[kf.AnnotationRefresh] = v
	}
	b.Annotations[kf.AnnotationTemplateHash] = templateHash(b)
	return b
}

// templateHash digests what the ClusterSecretBinding applies (no secret value is in it).
func templateHash(b *kf.SecretBinding) string {
	raw, err := json.Marshal(struct {
		Labels, Annotations map[string]string
		Owner               []metav1.OwnerReference
		Spec                kf.SecretBindingSpec
	}{b.Labels, b.Annotations, b.OwnerReferences, b.Spec})
	if err != nil {
		panic(err) // plain strings and numbers: cannot fail
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// ownedBy says b was created by c: its controller owner reference has c's UID. The label
// alone proves nothing (anyone who may write the binding can set it).
func ownedBy(b *kf.SecretBinding, c *kf.ClusterSecretBinding) bool {
	ref := metav1.GetControllerOf(b)
	return ref != nil && ref.UID == c.UID && ref.Kind == "ClusterSecretBinding"
}

// upToDate says have already holds what want applies: the same digest (the template did
// not change) and a spec that still holds every field of the template (nobody edited
// the binding by hand). Fields the API server defaulted are not in want and do not count.
func upToDate(have, want *kf.SecretBinding) bool {
	if have.Annotations[kf.AnnotationTemplateHash] != want.Annotations[kf.AnnotationTemplateHash] {
		return false
	}
	for k, v := range want.Labels {
		if have.Labels[k] != v {
			return false
		}
	}
	for k, v := range want.Annotations {
		if have.Annotations[k] != v {
			return false
		}
	}
	return subset(jsonOf(want.Spec), jsonOf(have.Spec))
}

func jsonOf(v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return out
}

// subset says every field set in want has that value in have (lists compared whole).
func subset(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range w {
			if !subset(v, h[k]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(want, have)
	}
}
