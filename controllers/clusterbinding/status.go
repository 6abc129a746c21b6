package clusterbinding

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyferry/keyferry/controllers/conditions"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// namespaceResult is what one pass found or did in one matching namespace.
type namespaceResult struct {
	namespace string
	// binding is the SecretBinding there after the pass (nil when it could not be written).
	binding *kf.SecretBinding
	// failure says why the namespace has no binding of this ClusterSecretBinding: a
	// Conflict, or the API server refusing it.
	failure *kf.NamespaceFailure
}

// bindingState is how a provisioned binding stands: ready, failed (Ready False for its
// current generation, with whether it is stalled) or still in progress.
func bindingState(b *kf.SecretBinding) (ready, failed, stalled bool) {
	cond := conditions.ReadyOf(b.Status.Conditions)
	current := b.Status.ObservedGeneration == b.Generation && cond != nil && cond.ObservedGeneration == b.Generation
	switch {
	case cond == nil:
		return false, false, false
	case cond.Status == metav1.ConditionTrue:
		return current, false, false
	case cond.Reason == kf.ReasonProgressing:
		return false, false, false
	}
	stall := meta.FindStatusCondition(b.Status.Conditions, kf.ConditionStalled)
	return false, true, stall != nil && stall.Status == metav1.ConditionTrue && current
}

// computeStatus derives the ClusterSecretBinding's status from the results of a pass, apart
// from the actions: counts, the failed namespaces (at most kf.MaxFailedNamespaces listed,
// sorted by name), and kstatus conditions. Ready is True when every matching namespace
// holds a Ready binding; a conflict or a stalled binding makes it Stalled; anything else
// not yet Ready keeps it Reconciling.
func computeStatus(prev kf.ClusterSecretBindingStatus, generation int64, results []namespaceResult, now time.Time) kf.ClusterSecretBindingStatus {
	st := *prev.DeepCopy()
	st.ObservedGeneration = generation
	st.ProvisionedNamespaces, st.ReadyBindings = 0, 0
	var failures []kf.NamespaceFailure
	conflict, stalled := false, false
	for _, res := range results {
		if res.failure != nil {
			failures = append(failures, *res.failure)
			conflict = conflict || res.failure.Reason == kf.ReasonConflict
			stalled = true
			continue
		}
		st.ProvisionedNamespaces++
		ready, failed, stall := bindingState(res.binding)
		switch {
		case ready:
			st.ReadyBindings++
		case failed:
			cond := conditions.ReadyOf(res.binding.Status.Conditions)
			failures = append(failures, kf.NamespaceFailure{Namespace: res.namespace, Reason: cond.Reason, Message: cond.Message})
			stalled = stalled || stall
		}
	}
	slices.SortFunc(failures, func(a, b kf.NamespaceFailure) int { return strings.Compare(a.Namespace, b.Namespace) })
	st.FailedNamespaceCount = int32(len(failures))
	st.FailedNamespaces = failures[:min(len(failures), kf.MaxFailedNamespaces)]
	if len(st.FailedNamespaces) == 0 {
		st.FailedNamespaces = nil
	}

	total := len(results)
	cond := metav1.Condition{Type: kf.ConditionReady, ObservedGeneration: generation}
	switch {
	case len(failures) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, kf.ReasonBindingsNotReady
		if conflict {
			cond.Reason = kf.ReasonConflict
		}
		cond.Message = fmt.Sprintf("%d of %d namespaces failed: %s", len(failures), total, summary(failures))
	case int(st.ReadyBindings) < total:
		cond.Status, cond.Reason = metav1.ConditionFalse, kf.ReasonProgressing
		cond.Message = fmt.Sprintf("%d of %d bindings Ready", st.ReadyBindings, total)
	case total == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, kf.ReasonSynced, "no namespace matches"
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, kf.ReasonSynced
		cond.Message = fmt.Sprintf("%d of %d bindings Ready", st.ReadyBindings, total)
	}
	conditions.SetCondition(&st.Conditions, cond, now)
	conditions.SetProgress(&st.Conditions, cond, stalled, now)
	return st
}

// summary names the first few failures, enough to act on without reading the list.
func summary(failures []kf.NamespaceFailure) string {
	const shown = 3
	parts := make([]string, 0, shown+1)
	for _, f := range failures[:min(len(failures), shown)] {
		parts = append(parts, fmt.Sprintf("%s (%s: %s)", f.Namespace, f.Reason, f.Message))
	}
	if len(failures) > shown {
		parts = append(parts, fmt.Sprintf("and %d more (status.failedNamespaces)", len(failures)-shown))
	}
	return strings.Join(parts, ", ")
}
