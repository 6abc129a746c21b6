// Package storage moves keyferry's stored objects to their CRD's storage version and then
// records that version as the only one stored (status.storedVersions), so that a later
// release may stop serving the older ones without a conversion webhook and without anyone
// patching storedVersions by hand (what External Secrets Operator's users had to do).
//
// The API server stores every write at the storage version, so rewriting an object with
// an empty patch re-encodes it there (the bytes differ, so etcd is written) while changing
// nothing a reader sees: no generation, label or annotation moves.
package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// The manager reads its own CRDs and writes their storedVersions, and no other CRD.
//
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get,resourceNames=vaultconnections.keyferry.dev;clustervaultconnections.keyferry.dev;secretbindings.keyferry.dev;clustersecretbindings.keyferry.dev;secretpushes.keyferry.dev;refreshreceivers.keyferry.dev
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions/status,verbs=patch,resourceNames=vaultconnections.keyferry.dev;clustervaultconnections.keyferry.dev;secretbindings.keyferry.dev;clustersecretbindings.keyferry.dev;secretpushes.keyferry.dev;refreshreceivers.keyferry.dev

// FieldOwner names the migration's (empty) writes.
const FieldOwner = "keyferry-storage-migration"

// pageSize bounds one list of objects to rewrite.
const pageSize = 500

// Result is what one CRD's migration did.
type Result struct {
	CRD string
	// Storage is the storage version; Was the stored versions found.
	Storage string
	Was     []string
	// Rewritten counts the objects written again; zero when nothing was to be done.
	Rewritten int
}

// NothingToDo says the CRD had nothing stored at another version (no object rewritten).
func (r Result) NothingToDo() bool { return len(r.Was) == 1 && r.Was[0] == r.Storage }

// ErrCRDChanged says the CRD changed while its objects were rewritten (an upgrade in
// between may have moved the storage version): the migration must run again.
var ErrCRDChanged = errors.New("the CRD changed during the migration")

// Migrate rewrites every object of the CRD named name at its storage version and then
// sets status.storedVersions to that version alone. Reader reads the CRD and lists the
// objects (uncached: the manager watches no CRD, and caches no metadata-only lists); c
// patches the objects and the CRD's status.
func Migrate(ctx context.Context, reader client.Reader, c client.Client, name string) (Result, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := reader.Get(ctx, types.NamespacedName{Name: name}, crd); err != nil {
		return Result{CRD: name}, fmt.Errorf("reading CRD %s: %w", name, err)
	}
	res := Result{CRD: name, Was: slices.Clone(crd.Status.StoredVersions)}
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			res.Storage = v.Name
		}
	}
	if res.Storage == "" {
		return res, fmt.Errorf("CRD %s has no storage version", name)
	}
	if res.NothingToDo() {
		return res, nil
	}
	gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: res.Storage, Kind: crd.Spec.Names.ListKind}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(gvk)
	for cont := ""; ; {
		if err := reader.List(ctx, list, client.Limit(pageSize), client.Continue(cont)); err != nil {
			return res, fmt.Errorf("listing %s: %w", crd.Spec.Names.Plural, err)
		}
		for i := range list.Items {
			obj := &list.Items[i]
			obj.SetGroupVersionKind(schema.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: crd.Spec.Names.Kind})
			err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte("{}")), client.FieldOwner(FieldOwner))
			if apierrors.IsNotFound(err) {
				continue // deleted meanwhile: nothing stored any more
			}
			if err != nil {
				return res, fmt.Errorf("rewriting %s %s: %w", crd.Spec.Names.Kind, client.ObjectKeyFromObject(obj), err)
			}
			res.Rewritten++
		}
		if cont = list.GetContinue(); cont == "" {
			break
		}
	}
	// Only if the CRD is as it was read: a storage version moved meanwhile leaves objects
	// stored at a version this pass did not write.
	patch := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"status":{"storedVersions":[%q]}}`, crd.ResourceVersion, res.Storage)
	err := c.Status().Patch(ctx, crd, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner(FieldOwner))
	if apierrors.IsConflict(err) {
		return res, fmt.Errorf("CRD %s: %w", name, ErrCRDChanged)
	}
	if err != nil {
		return res, fmt.Errorf("recording %s as the only stored version of %s: %w", res.Storage, name, err)
	}
	return res, nil
}

// Runnable migrates each of CRDs when its manager becomes leader and checks them again
// every Every (the CRDs may be upgraded apart from the manager: crds.install=false), sooner
// after a failure; the reconcilers do not wait for it.
type Runnable struct {
	Reader client.Reader
	Client client.Client
	CRDs   []string
	// Every is the pause between checks (10 min when zero), Retry the one after a failure
	// (30 s when zero). A check of a migrated CRD is one GET.
	Every, Retry time.Duration
	// Done is told of each CRD checked (tests, metrics).
	Done func(Result)
}

// NeedLeaderElection is true: one replica migrates.
func (r *Runnable) NeedLeaderElection() bool { return true }

// Start checks, and migrates where needed, until ctx ends.
func (r *Runnable) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("storage-migration")
	every, retry := r.Every, r.Retry
	if every <= 0 {
		every = 10 * time.Minute
	}
	if retry <= 0 {
		retry = 30 * time.Second
	}
	for {
		wait := every
		for _, name := range r.CRDs {
			res, err := Migrate(ctx, r.Reader, r.Client, name)
			if err != nil {
				log.Error(err, "storage migration failed; retrying", "crd", name, "retryIn", retry)
				wait = retry
				continue
			}
			if !res.NothingToDo() {
				log.Info("migrated stored objects", "crd", name, "storageVersion", res.Storage, "storedVersionsWere", res.Was, "rewritten", res.Rewritten)
			}
			if r.Done != nil {
				r.Done(res)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
