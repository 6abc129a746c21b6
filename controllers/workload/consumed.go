package workload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"sort"
	"strings"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/controllers/consumers"
	"github.com/keyferry/keyferry/internal/rollout"
	"github.com/keyferry/keyferry/internal/trim"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// consumedState is what a workload reads of managed Secrets now.
type consumedState struct {
	perSecret map[string]string // Secret name -> short digest of what the workload reads
	digest    string            // over everything it reads
	bindings  map[string]bool   // bindings writing those Secrets
}

// consumed reads the managed Secrets the workload's pod template consumes.
func (r *Reconciler) consumed(ctx context.Context, w client.Object) (consumedState, error) {
	st := consumedState{perSecret: map[string]string{}, bindings: map[string]bool{}}
	all := rollout.Consumed(&consumers.PodTemplate(w).Spec)
	data := map[string]map[string][]byte{}
	for name, keys := range all {
		s := &corev1.Secret{}
		err := r.Secrets.Get(ctx, types.NamespacedName{Namespace: w.GetNamespace(), Name: name}, s)
		if apierrors.IsNotFound(err) {
			continue // not managed by keyferry (or not there): left alone
		}
		if err != nil {
			return st, err
		}
		if s.Labels[kf.LabelBinding] == "" {
			continue
		}
		data[name] = trim.Digests(s)
		one := map[string]*rollout.Keys{name: keys}
		st.perSecret[name] = rollout.Digest(r.HMACKey, one, data)[:16]
		if b := s.Annotations[kf.AnnotationBinding]; b != "" {
			st.bindings[b] = true
		}
	}
	for name := range all {
		if _, ok := data[name]; !ok {
			delete(all, name)
		}
	}
	st.digest = rollout.Digest(r.HMACKey, all, data)
	return st, nil
}

// changed says a Secret the workload read before now holds other data for it.
func changed(recorded, now map[string]string) bool {
	for name, d := range now {
		if old, ok := recorded[name]; ok && old != d {
			return true
		}
	}
	return false
}

// consumedLabelName is the label name part recording what a workload read of Secret
// name: the name itself when a label allows it (at most 63 characters), else a hash.
func consumedLabelName(name string) string {
	if len(name) <= validation.LabelValueMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "h-" + hex.EncodeToString(sum[:16])
}

// byLabel keys per-Secret digests by their label name part.
func byLabel(perSecret map[string]string) map[string]string {
	out := make(map[string]string, len(perSecret))
	for name, d := range perSecret {
		out[consumedLabelName(name)] = d
	}
	return out
}

// recordedConsumption returns what the workload's labels record (labelled) and, for the
// comparison, those with what an older keyferry recorded in its annotation beneath them.
func recordedConsumption(w client.Object) (labelled, recorded map[string]string) {
	labelled = map[string]string{}
	for k, v := range w.GetLabels() {
		if name, ok := strings.CutPrefix(k, kf.LabelPrefixConsumed); ok {
			labelled[name] = v
		}
	}
	recorded = map[string]string{}
	for name, d := range decodeConsumed(w.GetAnnotations()[kf.AnnotationConsumed]) {
		recorded[consumedLabelName(name)] = d
	}
	maps.Copy(recorded, labelled)
	return labelled, recorded
}

// consumedScheme versions the digests in the older annotation: digests of another scheme
// are read as not recorded, never as a change. v2: digests over the cache's per-key
// digests (trim.Secret).
const consumedScheme = "v2;"

// decodeConsumed reads the older annotation "v2;name=digest,...".
func decodeConsumed(s string) map[string]string {
	out := map[string]string{}
	s, ok := strings.CutPrefix(s, consumedScheme)
	if !ok {
		return out
	}
	for _, p := range strings.Split(s, ",") {
		if name, d, ok := strings.Cut(p, "="); ok {
			out[name] = d
		}
	}
	return out
}

func joinSorted(m map[string]string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
