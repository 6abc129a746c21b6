// Package trim shrinks objects before they enter the manager's informer cache: the
// reconcilers read a managed Secret's metadata, its key names and whether it still holds
// what keyferry wrote, never its values, so the cache keeps exactly that.
package trim

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"

	kf "github.com/keyferry/keyferry/api/v1alpha1"
	"github.com/keyferry/keyferry/internal/render"
)

// annotationDigested marks a cached Secret whose values are already digests, so the
// transform stays idempotent. It lives only in the cache.
const annotationDigested = "keyferry.dev/cache-digested"

// lastApplied is kubectl's copy of the whole object (values included) in an annotation.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Secret returns the transform of managed Secrets. It checks, while the values are still
// there, that the data matches keyferry's data-hmac annotation; a Secret that no longer
// does enters the cache with the annotation emptied, so the next pass sees it out of date
// and repairs it. Each value is then replaced by its keyed digest (render.KeyDigest):
// key names stay, for removing foreign keys and for restart digests.
func Secret(key []byte) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Annotations[annotationDigested] != "" {
			return obj, nil
		}
		s.ManagedFields = nil
		delete(s.Annotations, lastApplied)
		if want := s.Annotations[kf.AnnotationDataHMAC]; want != "" && render.Digest(key, writtenType(s), written(s)) != want {
			s.Annotations[kf.AnnotationDataHMAC] = ""
		}
		for k, v := range s.Data {
			s.Data[k] = render.KeyDigest(key, k, v)
		}
		s.StringData = nil
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[annotationDigested] = "true"
		return s, nil
	}
}

// writtenType and written are the Secret type and the data keyferry's digest covers, read
// off the Secret itself: under Merge (keys annotation present) only the keys keyferry
// wrote, without the type (which is the Secret owner's).
func writtenType(s *corev1.Secret) string {
	if _, merge := s.Annotations[kf.AnnotationKeys]; merge {
		return ""
	}
	return string(s.Type)
}

func written(s *corev1.Secret) map[string][]byte {
	keys, merge := s.Annotations[kf.AnnotationKeys]
	if !merge {
		return s.Data
	}
	var names []string
	if keys != "" {
		names = strings.Split(keys, ",")
	}
	return render.Subset(s.Data, names)
}

// Workload drops what the restart reconciler never reads of an opted-in workload: managed
// fields, kubectl's last-applied copy and status.
func Workload(obj any) (any, error) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		w.ManagedFields, w.Status = nil, appsv1.DeploymentStatus{}
		delete(w.Annotations, lastApplied)
	case *appsv1.StatefulSet:
		w.ManagedFields, w.Status = nil, appsv1.StatefulSetStatus{}
		delete(w.Annotations, lastApplied)
	case *appsv1.DaemonSet:
		w.ManagedFields, w.Status = nil, appsv1.DaemonSetStatus{}
		delete(w.Annotations, lastApplied)
	}
	return obj, nil
}
