package connection

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// freshReader reads credential Secrets from the cache, except one this reconciler has just
// written and the cache has not caught up with yet: that one is read live. Without it a
// pass right after a rotation could read the Secret as it was and put the revoked key
// back to work.
type freshReader struct {
	cache, live client.Reader

	mu      sync.Mutex
	written map[types.NamespacedName]string // resourceVersion of our latest write
}

func newFreshReader(cache, live client.Reader) *freshReader {
	return &freshReader{cache: cache, live: live, written: map[types.NamespacedName]string{}}
}

// wrote records that key was written at resourceVersion rv.
func (f *freshReader) wrote(key types.NamespacedName, rv string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written[key] = rv
}

func (f *freshReader) forget(key types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.written, key)
}

func (f *freshReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	f.mu.Lock()
	rv, pending := f.written[key]
	f.mu.Unlock()
	if err := f.cache.Get(ctx, key, obj, opts...); err != nil || !pending {
		return err
	}
	cached := obj.GetResourceVersion()
	if cached == rv {
		f.forget(key) // the cache has seen our write
		return nil
	}
	if err := f.live.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if obj.GetResourceVersion() == cached {
		f.forget(key) // the cache holds the present (a later write than ours)
	}
	return nil
}

func (f *freshReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return f.cache.List(ctx, list, opts...)
}
