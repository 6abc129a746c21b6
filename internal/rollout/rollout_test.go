package rollout

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestConsumed(t *testing.T) {
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "init-all"}}}}}},
		Containers: []corev1.Container{{Env: []corev1.EnvVar{
			{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}, Key: "A"}}},
			{Name: "CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "x"}}},
		}}},
		Volumes: []corev1.Volume{
			{Name: "v1", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls", Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "c"}}}}},
			{Name: "v2", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "whole"}}},
			{Name: "v3", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "proj"}, Items: []corev1.KeyToPath{{Key: "K", Path: "k"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "proj-all"}}},
			}}}},
		},
	}
	got := Consumed(spec)
	want := map[string]string{"init-all": "*", "app": "A", "tls": "tls.crt", "whole": "*", "proj": "K", "proj-all": "*"}
	if len(got) != len(want) {
		t.Fatalf("consumed %d Secrets, want %d", len(got), len(want))
	}
	for name, w := range want {
		k := got[name]
		if k == nil || (w == "*") != k.All || (w != "*" && !k.Names[w]) {
			t.Errorf("%s: %+v, want %s", name, k, w)
		}
	}
}

func TestDigestFollowsOnlyConsumedKeys(t *testing.T) {
	key := []byte("k")
	consumed := map[string]*Keys{"app": {Names: map[string]bool{"A": true}}}
	d1 := Digest(key, consumed, map[string]map[string][]byte{"app": {"A": []byte("1"), "B": []byte("x")}})
	d2 := Digest(key, consumed, map[string]map[string][]byte{"app": {"A": []byte("1"), "B": []byte("y")}})
	d3 := Digest(key, consumed, map[string]map[string][]byte{"app": {"A": []byte("2"), "B": []byte("y")}})
	if d1 != d2 {
		t.Error("a change of a key the workload does not read changed the digest")
	}
	if d1 == d3 {
		t.Error("a change of a consumed key did not change the digest")
	}
	all := map[string]*Keys{"app": {All: true}}
	if Digest(key, all, map[string]map[string][]byte{"app": {"B": []byte("x")}}) == Digest(key, all, map[string]map[string][]byte{"app": {"B": []byte("y")}}) {
		t.Error("a workload reading every key must see every change")
	}
	if Digest([]byte("other"), consumed, map[string]map[string][]byte{"app": {"A": []byte("1")}}) == d1 {
		t.Error("the digest is not keyed")
	}
}
