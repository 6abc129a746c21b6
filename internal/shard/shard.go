// Package shard splits keyferry's work across replicas by namespace: a replica started
// with --shard-count N --shard-index I handles the namespaces that Of maps to I. Namespace is the key because a binding only ever uses a VaultConnection of its own
// namespace, so the bindings of one connection always share a shard (and their pulls
// still coalesce); cluster-scoped objects (ClusterVaultConnections) belong to every shard.
package shard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
)

// Shard is one replica's part of the namespaces. The zero value (or Count 1) is all of them.
type Shard struct {
	Count, Index int
}

// Validate checks the flags' values.
func (s Shard) Validate() error {
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("--shard-index %d must be in [0, --shard-count %d)", s.Index, s.Count)
	}
	return nil
}

// Sharded says there is more than one shard.
func (s Shard) Sharded() bool { return s.Count > 1 }

// Of returns the shard a namespace belongs to: jump consistent hash (Lamping & Veach) of
// the first 8 bytes (big-endian) of the SHA-256 of its name. Going from N to N+1 shards
// moves only about 1/(N+1) of the namespaces. (A plain FNV modulo a power of two would
// depend only on the low bits of each character.)
func Of(namespace string, count int) int {
	sum := sha256.Sum256([]byte(namespace))
	key := binary.BigEndian.Uint64(sum[:8])
	var b, j int64 = -1, 0
	for j < int64(count) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// Owns says the shard handles objects of namespace ("" is cluster-scoped: every shard).
func (s Shard) Owns(namespace string) bool {
	return !s.Sharded() || namespace == "" || Of(namespace, s.Count) == s.Index
}

// Name tells the shard apart in lease names and field managers ("shard-1-of-2"); "" when
// unsharded, so a single replica keeps its names.
func (s Shard) Name() string {
	if !s.Sharded() {
		return ""
	}
	return fmt.Sprintf("shard-%d-of-%d", s.Index, s.Count)
}

// NewInformer is a cache.Options.NewInformer that keeps other shards' objects out of the
// informer: lists and watch events of namespaces the shard does not own are dropped as
// they arrive, before they are stored or handed to any reconciler. (The API offers no
// server-side selector for a hash of the namespace.)
func (s Shard) NewInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
	if s.Sharded() {
		lw = filtered{inner: toolscache.ToListerWatcherWithContext(lw), shard: s}
	}
	return toolscache.NewSharedIndexInformer(lw, obj, resync, idx)
}

// filtered is a ListerWatcher that passes only the shard's objects. It keeps streaming
// lists (WatchList) available: bookmarks, which carry no namespace, always pass.
type filtered struct {
	inner toolscache.ListerWatcherWithContext
	shard Shard
}

func (f filtered) owns(obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	return err != nil || f.shard.Owns(m.GetNamespace())
}

func (f filtered) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	list, err := f.inner.ListWithContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	kept := items[:0]
	for _, it := range items {
		if f.owns(it) {
			kept = append(kept, it)
		}
	}
	return list, meta.SetList(list, kept)
}

func (f filtered) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := f.inner.WatchWithContext(ctx, opts)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		return e, e.Type == watch.Bookmark || e.Type == watch.Error || f.owns(e.Object)
	}), nil
}

// List and Watch serve callers of the context-free interface.
func (f filtered) List(opts metav1.ListOptions) (runtime.Object, error) {
	return f.ListWithContext(context.Background(), opts)
}

func (f filtered) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return f.WatchWithContext(context.Background(), opts)
}
