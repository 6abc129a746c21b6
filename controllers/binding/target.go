package binding

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/conditions"
	"github.com/keyferry/keyferry/controllers/queue"
	"github.com/keyferry/keyferry/internal/render"
	"github.com/keyferry/keyferry/internal/trim"
)

// secretWriter reads and writes bindings' target Secrets.
type secretWriter struct {
	// client writes.
	client client.Client
	// cache reads managed Secrets (the label-selected cache).
	cache client.Reader
	// live reads a Secret the cache does not know (Merge targets).
	live client.Reader
	// hmacKey keys the digest of written data (one per installation).
	hmacKey []byte
	// own remembers the versions written here: their watch events are not a reason for
	// another pass (a first sync is then one pass, not two).
	own *queue.OwnWrites
	// wake enqueues a binding (another pass).
	wake func(types.NamespacedName)
}

// track brackets a write of the binding's Secret key for own; the function it returns
// takes the API server's answer (nil on failure) and passes the binding again when
// someone else changed the Secret meanwhile. Writers built without own track nothing.
func (w secretWriter) track(b *kf.SecretBinding, key types.NamespacedName) func(written client.Object) {
	if w.own == nil {
		return func(client.Object) {}
	}
	w.own.Begin(key)
	return func(written client.Object) {
		if w.own.End(key, written) && w.wake != nil {
			w.wake(client.ObjectKeyFromObject(b))
		}
	}
}

// ownership is who writes a Secret, from one binding's point of view.
type ownership int

const (
	ownedByThis ownership = iota
	ownedByOther
	unmanaged
)

func ownershipOf(b *kf.SecretBinding, s *corev1.Secret) ownership {
	label := s.Labels[kf.LabelBinding]
	if label == "" {
		return unmanaged
	}
	if owner := s.Annotations[kf.AnnotationBinding]; label == kf.LabelValue(b.Name) && (owner == "" || owner == b.Name) {
		return ownedByThis
	}
	return ownedByOther
}

// mayWrite is the ownership matrix: a binding writes a Secret it wrote before, and under
// Merge also one nobody manages, in both cases only while the Secret's owner allows merges
// (annotation keyferry.dev/allow-merge: "true"); anything else is a TargetConflict.
func mayWrite(b *kf.SecretBinding, s *corev1.Secret) error {
	own := ownershipOf(b, s)
	merge := b.GetCreationPolicy() == kf.CreationPolicyMerge
	switch {
	case merge && own == ownedByOther:
		return conditions.StalledErr(kf.ReasonTargetConflict, "Secret %s is already written by binding %s", s.Name, s.Annotations[kf.AnnotationBinding])
	case merge && s.Annotations[kf.AnnotationAllowMerge] != "true":
		return conditions.StalledErr(kf.ReasonTargetConflict, "Secret %s does not allow merges; its owner can annotate it %s=\"true\"", s.Name, kf.AnnotationAllowMerge)
	case own == ownedByThis, merge:
		return nil
	default:
		return errNotOurs(s.Name)
	}
}

func errNotOurs(name string) error {
	return conditions.StalledErr(kf.ReasonTargetConflict, "Secret %s exists and is not managed by this binding; delete it, pick another target.name, or use creationPolicy Merge", name)
}

// current returns the target Secret, or nil when the write must create it. Managed
// Secrets come from the cache; a live read happens only under Merge, which writes into a
// Secret that exists and that keyferry may not manage yet.
func (w secretWriter) current(ctx context.Context, b *kf.SecretBinding) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: b.Namespace, Name: b.GetTargetName()}
	merge := b.GetCreationPolicy() == kf.CreationPolicyMerge
	s := &corev1.Secret{}
	err := w.cache.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		if !merge {
			// Not managed (or not there): a create fails on any Secret that exists, so
			// nobody's Secret is overwritten.
			return nil, nil
		}
		err = w.live.Get(ctx, key, s)
		if apierrors.IsNotFound(err) {
			return nil, conditions.StalledErr(kf.ReasonTargetConflict, "Secret %s does not exist; creationPolicy Merge writes into an existing Secret", key.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", key.Namespace, key.Name, err)
	}
	if err := mayWrite(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// drifted says the Secret no longer holds what keyferry wrote into it. The cache checks
// that as a Secret enters it, while its values are still there (trim.Secret), and empties
// the data-hmac annotation of one that does not match.
func drifted(s *corev1.Secret) bool {
	return s.Annotations[kf.AnnotationDataHMAC] == ""
}

// digest is the keyed HMAC of data as the binding writes it; the type counts unless the
// binding merges (the type is then not ours).
func (w secretWriter) digest(b *kf.SecretBinding, data map[string][]byte) string {
	return render.DataDigest(w.hmacKey, string(b.GetSecretType()), b.GetCreationPolicy() == kf.CreationPolicyMerge, data)
}

// desired is the Secret the binding wants, built once: the create and the apply both
// derive from it. keyferry's own labels and annotations win over the template's.
func (w secretWriter) desired(b *kf.SecretBinding, data map[string][]byte) *corev1.Secret {
	s := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: b.GetTargetName(), Namespace: b.Namespace, Labels: map[string]string{}, Annotations: map[string]string{}},
		Data:       data,
	}
	if t := b.Spec.Target.Template; t != nil {
		maps.Copy(s.Labels, t.Labels)
		maps.Copy(s.Annotations, t.Annotations)
	}
	s.Labels[kf.LabelBinding] = kf.LabelValue(b.Name)
	s.Annotations[kf.AnnotationBinding] = b.Name
	s.Annotations[kf.AnnotationDataHMAC] = w.digest(b, data)
	switch b.GetCreationPolicy() {
	case kf.CreationPolicyMerge:
		s.Annotations[kf.AnnotationKeys] = strings.Join(render.Keys(data), ",")
	case kf.CreationPolicyOwner:
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: kf.GroupVersion.String(), Kind: "SecretBinding",
			Name: b.Name, UID: b.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		fallthrough
	default:
		s.Labels[kf.LabelManagedBy] = kf.LabelManagedByValue
		s.Type = b.GetSecretType()
	}
	return s
}

// upToDate says current already holds everything want sets (data by digest).
func upToDate(current, want *corev1.Secret) bool {
	for k, v := range want.Labels {
		if current.Labels[k] != v {
			return false
		}
	}
	for k, v := range want.Annotations {
		if current.Annotations[k] != v {
			return false
		}
	}
	return want.Type == "" || current.Type == want.Type
}

// write makes the target hold data; it reports whether it wrote anything.
func (w secretWriter) write(ctx context.Context, b *kf.SecretBinding, current *corev1.Secret, data map[string][]byte, templatesDigest string) (bool, error) {
	want := w.desired(b, data)
	if templatesDigest != "" {
		want.Annotations[kf.AnnotationTemplates] = templatesDigest
	}
	if current == nil {
		// A create can never overwrite a Secret that appeared meanwhile (it fails instead),
		// and it spares the live read an apply would need to be safe.
		done := w.track(b, client.ObjectKeyFromObject(want))
		err := w.client.Create(ctx, want, client.FieldOwner(kf.FieldManager))
		if err != nil {
			done(nil)
		} else {
			done(want)
		}
		if apierrors.IsAlreadyExists(err) {
			return false, errNotOurs(want.Name)
		}
		return err == nil, refused(want.Name, err)
	}
	if upToDate(current, want) {
		return false, nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
	if err != nil {
		return false, fmt.Errorf("converting Secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	applied := &unstructured.Unstructured{Object: u}
	ac := client.ApplyConfigurationFromUnstructured(applied) // the answer is decoded into applied
	opts := []client.ApplyOption{client.FieldOwner(kf.FieldManager)}
	if b.GetCreationPolicy() != kf.CreationPolicyMerge {
		// A Secret keyferry owns is keyferry's to restore; under Merge a key another
		// manager holds stays theirs.
		opts = append(opts, client.ForceOwnership)
	}
	done := w.track(b, client.ObjectKeyFromObject(want))
	if err := w.client.Apply(ctx, ac, opts...); err != nil {
		done(nil)
		if apierrors.IsConflict(err) {
			return false, conditions.StalledErr(kf.ReasonTargetConflict, "Secret %s: %s another field manager holds; keyferry does not take it over", want.Name, conflictFields(err))
		}
		return false, refused(want.Name, err)
	}
	done(applied)
	return true, w.removeForeignKeys(ctx, b, current, data)
}

// conflictFields names the fields of an apply conflict, data keys by their key.
func conflictFields(err error) string {
	var fields []string
	if se, ok := err.(apierrors.APIStatus); ok && se.Status().Details != nil {
		for _, c := range se.Status().Details.Causes {
			if c.Type != metav1.CauseTypeFieldManagerConflict {
				continue
			}
			if k, ok := strings.CutPrefix(c.Field, ".data."); ok {
				fields = append(fields, "key "+k)
			} else {
				fields = append(fields, "field "+c.Field)
			}
		}
	}
	if len(fields) == 0 {
		return "a field"
	}
	return strings.Join(fields, ", ")
}

// refused turns the API server refusing the Secret into a TargetConflict (its message
// never echoes values); other errors are returned as they are.
func refused(name string, err error) error {
	if apierrors.IsInvalid(err) {
		return conditions.StalledErr(kf.ReasonTargetConflict, "the API server refused Secret %s: %s", name, apiMessage(err))
	}
	return err
}

// apiMessage returns the API server's own message; Secret validation never echoes values.
func apiMessage(err error) string {
	if se, ok := err.(apierrors.APIStatus); ok {
		return se.Status().Message
	}
	return err.Error()
}

// removeForeignKeys deletes keys added by hand to a Secret keyferry owns: apply leaves
// fields of other managers alone, but the Secret must hold exactly the vault's data. (A
// created Secret's fields belong to keyferry's manager, so apply drops stale keys there.)
func (w secretWriter) removeForeignKeys(ctx context.Context, b *kf.SecretBinding, current *corev1.Secret, data map[string][]byte) error {
	if b.GetCreationPolicy() == kf.CreationPolicyMerge {
		return nil
	}
	drop := map[string]any{}
	for _, k := range trim.Keys(current) {
		if _, ok := data[k]; !ok {
			drop[k] = nil
		}
	}
	if len(drop) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"data": drop})
	if err != nil {
		return err
	}
	done := w.track(b, client.ObjectKeyFromObject(current))
	if err := w.client.Patch(ctx, current, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(kf.FieldManager)); err != nil {
		done(nil)
		return client.IgnoreNotFound(err)
	}
	done(current)
	return nil
}

// writtenKeys is how many keys the binding wrote into s: all of its data when keyferry
// owns it, the recorded keys under Merge.
func writtenKeys(b *kf.SecretBinding, s *corev1.Secret) int32 {
	if b.GetCreationPolicy() != kf.CreationPolicyMerge {
		return int32(len(trim.Keys(s)))
	}
	if keys := s.Annotations[kf.AnnotationKeys]; keys != "" {
		return int32(len(strings.Split(keys, ",")))
	}
	return 0
}
