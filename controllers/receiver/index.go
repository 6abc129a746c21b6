package receiver

import (
	"context"
	"strings"
	"sync"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	corev1 "k8s.io/api/core/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/webhook"
)

// Index maps webhook paths to receivers, on every replica: a hook is looked up in memory
// (a refused one costs no API call). It is kept by the watches of the receivers' cache
// and the credentials cache: any change in a namespace recomputes that namespace's
// receivers (there are few), so a rotated secret moves the path at once and the old one
// answers 404.
type Index struct {
	Receivers client.Reader
	Secrets   client.Reader
	// Removed is told of receivers that left the index (their round state can go).
	Removed func(key string)

	mu     sync.RWMutex
	byPath map[string]webhook.Receiver
	pathOf map[string]string // receiver key → path
}

// Lookup returns the receiver listening at path.
func (x *Index) Lookup(path string) (webhook.Receiver, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	rc, ok := x.byPath[path]
	return rc, ok
}

// Watch keeps the index from the two caches' informers.
func (x *Index) Watch(ctx context.Context, receivers, secrets cache.Informers) error {
	h := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { x.resync(namespaceOf(o)) },
		UpdateFunc: func(_, o any) { x.resync(namespaceOf(o)) },
		DeleteFunc: func(o any) { x.resync(namespaceOf(o)) },
	}
	for _, w := range []struct {
		informers cache.Informers
		obj       client.Object
	}{{receivers, &kf.RefreshReceiver{}}, {secrets, &corev1.Secret{}}} {
		inf, err := w.informers.GetInformer(ctx, w.obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	return nil
}

// resync recomputes the receivers of one namespace from the caches.
func (x *Index) resync(namespace string) {
	if namespace == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list := &kf.RefreshReceiverList{}
	if err := x.Receivers.List(ctx, list, client.InNamespace(namespace)); err != nil {
		ctrl.Log.WithName("receivers").Error(err, "listing receivers", "namespace", namespace)
		return
	}
	now := map[string]webhook.Receiver{}
	for i := range list.Items {
		rr := &list.Items[i]
		if !rr.DeletionTimestamp.IsZero() {
			continue
		}
		// A receiver without a usable secret listens nowhere; its status says why.
		if rc, path, err := entry(ctx, x.Secrets, rr); err == nil {
			now[path] = rc
		}
	}
	x.mu.Lock()
	if x.byPath == nil {
		x.byPath, x.pathOf = map[string]webhook.Receiver{}, map[string]string{}
	}
	keep := map[string]bool{}
	for _, rc := range now {
		keep[rc.Key] = true
	}
	var gone []string
	prefix := namespace + "/"
	for key, path := range x.pathOf {
		if strings.HasPrefix(key, prefix) {
			delete(x.byPath, path)
			delete(x.pathOf, key)
			if !keep[key] {
				gone = append(gone, key)
			}
		}
	}
	for path, rc := range now {
		x.byPath[path], x.pathOf[rc.Key] = rc, path
	}
	x.mu.Unlock()
	for _, key := range gone {
		if x.Removed != nil {
			x.Removed(key)
		}
	}
}

// namespaceOf is the namespace of an informer's object, tombstones included.
func namespaceOf(o any) string {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if m, ok := o.(client.Object); ok {
		return m.GetNamespace()
	}
	return ""
}
