// Package trim shrinks objects before they enter the manager's informer cache: the
// reconcilers read a managed Secret's metadata, its key names and whether it still holds
// what keyferry wrote, never its values, so the cache keeps exactly that.
package trim

import (
	"encoding/base64"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/render"
)

// annotationDigests holds, in the cache only, a managed Secret's key names with a keyed
// digest each ("KEY=digest,...", sorted; digests base64url). One string instead of a map
// of byte slices: a few hundred bytes per Secret. Its presence also keeps the transform
// idempotent.
const annotationDigests = "keyferry.dev/cache-digests"

// digestLen is the prefix of render.KeyDigest kept per key: 96 bits tell a changed value
// from an unchanged one with no practical chance of a miss.
const digestLen = 12

// lastApplied is kubectl's copy of the whole object (values included) in an annotation.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Secret returns the transform of managed Secrets. It checks, while the values are still
// there, that the data matches keyferry's data-hmac annotation; a Secret that no longer
// does enters the cache with the annotation emptied, so the next pass sees it out of date
// and repairs it. The values are then dropped: what stays of the data is each key's name
// and keyed digest (Keys, Digests), for removing foreign keys and for restart digests.
// Owner references and managed fields go too: no reconciler reads them from the cache.
func Secret(key []byte) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return obj, nil
		}
		if _, done := s.Annotations[annotationDigests]; done {
			return obj, nil
		}
		_, _ = Metadata(s)
		s.OwnerReferences = nil
		keys, merge := s.Annotations[kf.AnnotationKeys]
		if want := s.Annotations[kf.AnnotationDataHMAC]; want != "" && render.DataDigest(key, string(s.Type), merge, written(s.Data, keys, merge)) != want {
			s.Annotations[kf.AnnotationDataHMAC] = ""
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[annotationDigests] = encodeDigests(key, s.Data)
		s.Data, s.StringData = nil, nil
		return s, nil
	}
}

func encodeDigests(key []byte, data map[string][]byte) string {
	var b strings.Builder
	for i, k := range render.Keys(data) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(base64.RawURLEncoding.EncodeToString(render.KeyDigest(key, k, data[k])[:digestLen]))
	}
	return b.String()
}

// Digests returns a Secret's keys with a digest each: from the cache's annotation, or for
// a Secret read live (values present), the values themselves.
func Digests(s *corev1.Secret) map[string][]byte {
	enc, ok := s.Annotations[annotationDigests]
	if !ok {
		return s.Data
	}
	out := map[string][]byte{}
	for _, entry := range strings.Split(enc, ",") {
		if k, d, ok := strings.Cut(entry, "="); ok {
			out[k] = []byte(d)
		}
	}
	return out
}

// Keys returns a Secret's key names, sorted, cached or read live.
func Keys(s *corev1.Secret) []string { return render.Keys(Digests(s)) }

// written is the data keyferry's digest covers: under Merge (keys annotation present)
// only the keys keyferry wrote.
func written(data map[string][]byte, keys string, merge bool) map[string][]byte {
	if !merge {
		return data
	}
	var names []string
	if keys != "" {
		names = strings.Split(keys, ",")
	}
	return render.Subset(data, names)
}

// Workload drops what the restart reconciler never reads of an opted-in workload: managed
// fields, kubectl's last-applied copy and status.
func Workload(obj any) (any, error) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		w.Status = appsv1.DeploymentStatus{}
	case *appsv1.StatefulSet:
		w.Status = appsv1.StatefulSetStatus{}
	case *appsv1.DaemonSet:
		w.Status = appsv1.DaemonSetStatus{}
	}
	return Metadata(obj)
}

// Metadata is the transform of every other cached kind: managed fields and kubectl's
// last-applied copy (a GitOps-applied binding carries its whole spec there again) are
// never read. keyferry's merge patches are the difference of two trimmed copies (or of
// statuses alone), so a dropped field is never sent as removed.
func Metadata(obj any) (any, error) {
	if m, ok := obj.(interface {
		SetManagedFields([]metav1.ManagedFieldsEntry)
		GetAnnotations() map[string]string
	}); ok {
		m.SetManagedFields(nil)
		delete(m.GetAnnotations(), lastApplied)
	}
	return obj, nil
}
