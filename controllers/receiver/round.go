package receiver

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

// maxConcurrentRounds bounds the rounds in progress on one replica, whatever the number
// of receivers: each costs two lists and a patch per object marked.
const maxConcurrentRounds = 4

// patchesInFlight bounds one round's concurrent merge patches.
const patchesInFlight = 8

// Rounder runs the round a valid hook asked for: it lists the SecretBindings and
// SecretPushes of the receiver's own namespace that its selector picks (metadata only,
// live: the replica that took the hook may not cache them) and marks each for refresh
// with one merge patch of keyferry.dev/refresh; then it records the round on the receiver
// (an annotation its reconciler turns into status). The reconcilers do the rest, and their
// pulls coalesce: the value says when the round began, and any answer after that serves.
type Rounder struct {
	Receivers client.Reader
	Lister    client.Reader
	Writer    client.Writer
	Clock     clock.PassiveClock
	// Done, when set, is told of every round (tests, metrics).
	Done func(receiver string, refreshed int, err error)

	sem chan struct{}
}

// NewRounder returns a Rounder.
func NewRounder(receivers, lister client.Reader, writer client.Writer, clk clock.PassiveClock) *Rounder {
	return &Rounder{Receivers: receivers, Lister: lister, Writer: writer, Clock: clk, sem: make(chan struct{}, maxConcurrentRounds)}
}

// Run runs one round of the receiver "namespace/name".
func (r *Rounder) Run(key string) {
	r.sem <- struct{}{}
	defer func() { <-r.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := r.round(ctx, key)
	if err != nil {
		ctrl.Log.WithName("receivers").Error(err, "refresh round", "receiver", key, "refreshed", n)
	}
	if r.Done != nil {
		r.Done(key, n, err)
	}
}

func (r *Rounder) round(ctx context.Context, key string) (int, error) {
	ns, name, _ := strings.Cut(key, "/")
	rr := &kf.RefreshReceiver{}
	if err := r.Receivers.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, rr); err != nil {
		return 0, client.IgnoreNotFound(err)
	}
	if rr.Spec.Suspend || !rr.DeletionTimestamp.IsZero() {
		return 0, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(&rr.Spec.Selector)
	if err != nil {
		return 0, nil // the status says so; nothing is marked
	}
	at := r.Clock.Now()
	mark, err := refreshPatch(kf.AnnotationRefresh, kf.HookRefreshValue(rr.Name, at))
	if err != nil {
		return 0, err
	}
	var n atomic.Int32
	for _, kind := range []string{"SecretBinding", "SecretPush"} {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(kf.GroupVersion.WithKind(kind + "List"))
		// The receiver's own namespace, always: a selector cannot reach another.
		if err := r.Lister.List(ctx, list, client.InNamespace(rr.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return int(n.Load()), fmt.Errorf("listing %ss of receiver %s: %w", kind, key, err)
		}
		// A few patches at a time: a round over many bindings ends sooner, and still
		// leaves the manager's API budget to everything else.
		var g errgroup.Group
		g.SetLimit(patchesInFlight)
		for i := range list.Items {
			obj := &list.Items[i]
			obj.SetGroupVersionKind(kf.GroupVersion.WithKind(kind))
			g.Go(func() error {
				if err := r.Writer.Patch(ctx, obj, mark); err != nil {
					if apierrors.IsNotFound(err) {
						return nil
					}
					return fmt.Errorf("marking %s %s/%s for refresh: %w", kind, obj.Namespace, obj.Name, err)
				}
				n.Add(1)
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return int(n.Load()), err
		}
	}
	count := int(n.Load())
	done, err := refreshPatch(kf.AnnotationLastRound, at.UTC().Format(time.RFC3339Nano)+" "+strconv.Itoa(count))
	if err != nil {
		return count, err
	}
	meta := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	meta.SetGroupVersionKind(kf.GroupVersion.WithKind("RefreshReceiver"))
	if err := r.Writer.Patch(ctx, meta, done); err != nil {
		return count, client.IgnoreNotFound(fmt.Errorf("recording the round on receiver %s: %w", key, err))
	}
	return count, nil
}

// refreshPatch is a merge patch of one annotation.
func refreshPatch(annotation, value string) (client.Patch, error) {
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotation: value}}})
	if err != nil {
		return nil, err
	}
	return client.RawPatch(types.MergePatchType, data), nil
}

// parseRound reads the keyferry.dev/last-round annotation; anyone who may write the
// receiver may write it, so anything unreadable is ignored.
func parseRound(v string) (*kf.ReceiverRound, bool) {
	ts, count, ok := strings.Cut(v, " ")
	if !ok {
		return nil, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return nil, false
	}
	n, err := strconv.ParseInt(count, 10, 32)
	if err != nil || n < 0 {
		return nil, false
	}
	return &kf.ReceiverRound{Time: metav1.NewTime(t.Truncate(time.Second)), Refreshed: int32(n)}, true
}
