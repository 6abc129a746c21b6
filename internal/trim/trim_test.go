package trim

import (
	"bytes"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/render"
)

const canary = "canary-value-7f3a"

func managed(key []byte, typ corev1.SecretType, data map[string][]byte, merge []string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns",
		Annotations:     map[string]string{lastApplied: `{"data":{"A":"` + canary + `"}}`},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "keyferry"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "owner"}}}, Type: typ, Data: data}
	written, typName := data, string(typ)
	if merge != nil {
		s.Annotations[kf.AnnotationKeys] = fmt.Sprint(merge[0])
		written, typName = render.Subset(data, merge), ""
	}
	s.Annotations[kf.AnnotationDataHMAC] = render.Digest(key, typName, written)
	return s
}

func TestSecretKeepsDigestsNotValues(t *testing.T) {
	key := []byte("installation-key")
	s := managed(key, corev1.SecretTypeOpaque, map[string][]byte{"A": []byte(canary), "B": []byte("2")}, nil)
	want := s.Annotations[kf.AnnotationDataHMAC]
	out, err := Secret(key)(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	if got.Annotations[kf.AnnotationDataHMAC] != want {
		t.Error("an intact Secret must keep its data-hmac annotation")
	}
	if len(got.ManagedFields) != 0 || got.Annotations[lastApplied] != "" {
		t.Error("managed fields and kubectl's last-applied copy must be dropped")
	}
	if got.Data != nil || len(got.OwnerReferences) != 0 {
		t.Errorf("values and owner references must be dropped: %v", got.Data)
	}
	d := Digests(got)
	if keys := Keys(got); len(keys) != 2 || keys[0] != "A" || keys[1] != "B" || len(d) != 2 || len(d["A"]) == 0 {
		t.Errorf("key names with keyed digests must stay: keys %v digests %v", keys, d)
	}
	other := managed(key, corev1.SecretTypeOpaque, map[string][]byte{"A": []byte("changed"), "B": []byte("2")}, nil)
	out2, _ := Secret(key)(other)
	if d2 := Digests(out2.(*corev1.Secret)); bytes.Equal(d2["A"], d["A"]) || !bytes.Equal(d2["B"], d["B"]) {
		t.Error("a digest must change with its value, and only then")
	}
	if bytes.Contains([]byte(fmt.Sprintf("%+v", got)), []byte(canary)) {
		t.Error("the cached Secret still holds the canary value")
	}
	// Idempotent: a second pass changes nothing (digests are not digested again).
	again, _ := Secret(key)(got.DeepCopy())
	if !bytes.Equal(Digests(again.(*corev1.Secret))["A"], d["A"]) || again.(*corev1.Secret).Annotations[kf.AnnotationDataHMAC] != want {
		t.Error("the transform is not idempotent")
	}
}

func TestSecretMarksDrift(t *testing.T) {
	key := []byte("installation-key")
	for name, s := range map[string]*corev1.Secret{
		"value changed": func() *corev1.Secret {
			s := managed(key, corev1.SecretTypeOpaque, map[string][]byte{"A": []byte("1")}, nil)
			s.Data["A"] = []byte("edited")
			return s
		}(),
		"key added": func() *corev1.Secret {
			s := managed(key, corev1.SecretTypeOpaque, map[string][]byte{"A": []byte("1")}, nil)
			s.Data["extra"] = []byte("x")
			return s
		}(),
		"merged key changed": func() *corev1.Secret {
			s := managed(key, corev1.SecretTypeTLS, map[string][]byte{"A": []byte("1"), "theirs": []byte("t")}, []string{"A"})
			s.Data["A"] = []byte("edited")
			return s
		}(),
	} {
		out, _ := Secret(key)(s)
		if out.(*corev1.Secret).Annotations[kf.AnnotationDataHMAC] != "" {
			t.Errorf("%s: a drifted Secret must enter the cache with an empty data-hmac", name)
		}
	}
	// Under Merge, the owner's own keys and type are not keyferry's: changing them is no drift.
	s := managed(key, corev1.SecretTypeTLS, map[string][]byte{"A": []byte("1"), "theirs": []byte("t")}, []string{"A"})
	s.Data["theirs"] = []byte("changed by its owner")
	if out, _ := Secret(key)(s); out.(*corev1.Secret).Annotations[kf.AnnotationDataHMAC] == "" {
		t.Error("a change of a key keyferry did not write is not drift")
	}
}

func TestKeysAndDigestsOfALiveSecret(t *testing.T) {
	live := &corev1.Secret{Data: map[string][]byte{"B": []byte("2"), "A": []byte("1")}}
	if k := Keys(live); len(k) != 2 || k[0] != "A" || string(Digests(live)["B"]) != "2" {
		t.Errorf("a Secret read live answers from its data: %v", k)
	}
	empty, _ := Secret([]byte("k"))(&corev1.Secret{})
	if k := Keys(empty.(*corev1.Secret)); len(k) != 0 {
		t.Errorf("a Secret without data has no keys: %v", k)
	}
}
