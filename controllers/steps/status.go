package steps

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/keyferry/keyferry/controllers/conditions"
)

// Status is a keyferry status type.
type Status interface {
	StatusConditions() []metav1.Condition
}

// StatusPatcher writes one reconciler's statuses. Every status write of keyferry goes
// through it (a test checks), under the process' own field manager (with shards,
// keyferry-shard-I-of-N), so managedFields and audit logs say which replica wrote.
type StatusPatcher struct {
	Client   client.Client
	Recorder events.EventRecorder
}

// PatchStatus writes next as obj's status when it differs from *current (the status the
// pass read), as one JSON merge patch computed from the two statuses alone (no copy of the
// whole object), records an Event when Ready changes status or reason, and leaves next
// in *current.
func PatchStatus[S Status](ctx context.Context, p StatusPatcher, obj client.Object, current *S, next S) error {
	if equality.Semantic.DeepEqual(*current, next) {
		return nil
	}
	prev := *current
	patch, err := statusPatch(prev, next)
	if err != nil {
		return fmt.Errorf("status patch of %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	*current = next
	// The patch goes through a metadata-only object: the API server answers with the
	// object's metadata (protobuf) instead of the whole object as JSON, which the manager
	// would decode only to learn what it just sent (the watch brings the object anyway).
	// obj keeps next and takes the new resourceVersion.
	gvk, err := apiutil.GVKForObject(obj, p.Client.Scheme())
	if err != nil {
		*current = prev
		return fmt.Errorf("status patch of %T %s: %w", obj, client.ObjectKeyFromObject(obj), err)
	}
	answer := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: obj.GetNamespace(), Name: obj.GetName()}}
	answer.SetGroupVersionKind(gvk)
	if err := p.Client.Status().Patch(ctx, answer, patch); err != nil {
		*current = prev
		return err
	}
	obj.SetResourceVersion(answer.GetResourceVersion())
	conditions.RecordTransition(p.Recorder, obj, conditions.ReadyOf(prev.StatusConditions()), conditions.ReadyOf(next.StatusConditions()))
	return nil
}

// statusPatch is the JSON merge patch from one status to the next: the patch
// client.MergeFrom would send for a change of status alone.
func statusPatch(prev, next any) (client.Patch, error) {
	from, err := json.Marshal(map[string]any{"status": prev})
	if err != nil {
		return nil, err
	}
	to, err := json.Marshal(map[string]any{"status": next})
	if err != nil {
		return nil, err
	}
	data, err := jsonpatch.CreateMergePatch(from, to)
	if err != nil {
		return nil, err
	}
	return client.RawPatch(types.MergePatchType, data), nil
}
