// Package controllers wires keyferry's reconcilers into a manager: one package per
// reconciler (binding, clusterbinding, connection, push, workload), and what they share
// by job (steps, conditions, resolve, queue, consumers); the caches and clients they read
// through are set up here.
package controllers

import (
	"context"
	"net"
	"time"

	"github.com/keyferry/keyferry/controllers/binding"
	"github.com/keyferry/keyferry/controllers/clusterbinding"
	"github.com/keyferry/keyferry/controllers/connection"
	"github.com/keyferry/keyferry/controllers/consumers"
	"github.com/keyferry/keyferry/controllers/push"
	"github.com/keyferry/keyferry/controllers/receiver"
	"github.com/keyferry/keyferry/controllers/storage"
	"github.com/keyferry/keyferry/controllers/workload"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"

	kf "github.com/keyferry/keyferry/api/v1beta1"
	"github.com/keyferry/keyferry/internal/metrics"
	"github.com/keyferry/keyferry/internal/shard"
	"github.com/keyferry/keyferry/internal/trim"
	"github.com/keyferry/keyferry/internal/vault"
	"github.com/keyferry/keyferry/internal/webhook"
)

// Options configure the reconcilers.
type Options struct {
	Registry *vault.Registry
	HMACKey  []byte
	Clock    clock.PassiveClock
	// CredentialsPollInterval is how often connections read their credentials again.
	CredentialsPollInterval time.Duration
	ConnectionWorkers       int
	BindingWorkers          int
	// RestartDebounce groups Secret changes into one workload restart (default 5s).
	RestartDebounce time.Duration
	// MinRotationInterval is the shortest key rotation honoured (default 1h).
	MinRotationInterval time.Duration
	// RotationCrash, when set, is asked after each key rotation step; an error ends the
	// pass there, as a killed manager would (tests).
	RotationCrash func(conn kf.Connection, step string) error
	// Webhook configures the hook listener (RefreshReceivers), served on every replica.
	Webhook WebhookOptions
	// Shard is the part of the namespaces this manager handles (its cache holds only
	// those, see CacheOptions). ClusterVaultConnections are served by every shard; only
	// shard 0 writes their status, so the shards do not overwrite each other's.
	Shard shard.Shard
}

// WebhookOptions configure the listener RefreshReceivers' hooks reach. It is off unless
// CertDir (TLS) or AllowHTTP is set; receivers then say ListenerDisabled.
type WebhookOptions struct {
	Addr      string
	CertDir   string
	AllowHTTP bool
	// Limits replace the default rate limits (receiver.DefaultLimits).
	Limits *webhook.Limits
	// OnListen is told the listener's address; OnRound of every refresh round (tests).
	OnListen func(net.Addr)
	OnRound  func(receiver string, refreshed int, err error)
}

// SetupWithManager registers every keyferry reconciler with mgr, one small setup per kind.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.CredentialsPollInterval <= 0 {
		opts.CredentialsPollInterval = 10 * time.Second
	}
	if opts.RestartDebounce <= 0 {
		opts.RestartDebounce = 5 * time.Second
	}
	creds, err := newSelectedCache(mgr, &corev1.Secret{}, labels.SelectorFromSet(labels.Set{kf.LabelCredentials: "true"}))
	if err != nil {
		return err
	}
	w := newWiring(creds)
	for _, setup := range []func(ctrl.Manager, Options, wiring) error{
		setupConnections, setupWorkloads, setupClusterBindings, setupPushes, setupBindings, setupReceivers, setupStorageMigration,
	} {
		if err := setup(mgr, opts, w); err != nil {
			return err
		}
	}
	return nil
}

// wiring is what the reconcilers pass each other: the binding reconciler wakes a
// connection's (a 401 or 403 seen), the connection's tells the bindings its client is
// built. Buffered: a wake-up already queued is enough. The credentials cache is shared by
// connections and receivers.
type wiring struct {
	wake, ready map[kf.ConnectionKind]chan event.GenericEvent
	creds       cache.Cache
}

func newWiring(creds cache.Cache) wiring {
	return wiring{creds: creds,
		wake: map[kf.ConnectionKind]chan event.GenericEvent{
			kf.ConnectionKindNamespaced: make(chan event.GenericEvent, 64), kf.ConnectionKindCluster: make(chan event.GenericEvent, 64)},
		ready: map[kf.ConnectionKind]chan event.GenericEvent{
			kf.ConnectionKindNamespaced: make(chan event.GenericEvent, 256), kf.ConnectionKindCluster: make(chan event.GenericEvent, 64)},
	}
}

// setupConnections: VaultConnections and ClusterVaultConnections, reading credentials
// from their own label-selected cache.
func setupConnections(mgr ctrl.Manager, opts Options, w wiring) error {
	creds := w.creds
	for _, kind := range []kf.ConnectionKind{kf.ConnectionKindNamespaced, kf.ConnectionKindCluster} {
		r := &connection.Reconciler{Kind: kind, Wake: w.wake[kind], ClientReady: w.ready[kind],
			Client: mgr.GetClient(), Registry: opts.Registry, Clock: opts.Clock,
			Credentials: credentialReader{cache: creds, live: mgr.GetAPIReader()}, CredentialsCache: creds,
			Recorder: mgr.GetEventRecorder("keyferry"), PollInterval: opts.CredentialsPollInterval, Workers: opts.ConnectionWorkers,
			ReportOnly: kind == kf.ConnectionKindCluster && opts.Shard.Index > 0,
			LiveReader: mgr.GetAPIReader(), MinRotationInterval: opts.MinRotationInterval, RotationCrash: opts.RotationCrash}
		if err := r.SetupWithManager(mgr); err != nil {
			return err
		}
	}
	return nil
}

// setupWorkloads: restarts of opted-in Deployments, StatefulSets and DaemonSets, and the
// index of workloads by the Secrets they read (the binding reconciler reads it too).
func setupWorkloads(mgr ctrl.Manager, opts Options, _ wiring) error {
	if err := consumers.Index(mgr); err != nil {
		return err
	}
	for _, kind := range consumers.Kinds {
		r := &workload.Reconciler{Client: mgr.GetClient(), Secrets: mgr.GetCache(), Clock: opts.Clock,
			Recorder: mgr.GetEventRecorder("keyferry"), HMACKey: opts.HMACKey, Kind: kind, Debounce: opts.RestartDebounce}
		if err := r.SetupWithManager(mgr); err != nil {
			return err
		}
	}
	return nil
}

// setupClusterBindings: on shard 0 alone, whatever the namespace's own shard, so each
// namespace gets its binding exactly once (ClusterSecretBindings are cluster-scoped); each
// binding is then synced by its namespace's shard.
func setupClusterBindings(mgr ctrl.Manager, opts Options, _ wiring) error {
	if opts.Shard.Index != 0 {
		return nil
	}
	children, err := newSelectedCache(mgr, &kf.SecretBinding{}, clusterBindingChildren())
	if err != nil {
		return err
	}
	r := &clusterbinding.Reconciler{Client: mgr.GetClient(), Bindings: children, APIReader: mgr.GetAPIReader(),
		Clock: opts.Clock, Recorder: mgr.GetEventRecorder("keyferry"), Workers: 1}
	return r.SetupWithManager(mgr, children)
}

// setupPushes: SecretPushes, reading their sources from a cache of the Secrets that opted in.
func setupPushes(mgr ctrl.Manager, opts Options, _ wiring) error {
	sources, err := newSelectedCache(mgr, &corev1.Secret{}, labels.SelectorFromSet(labels.Set{kf.LabelPush: "true"}))
	if err != nil {
		return err
	}
	r := &push.Reconciler{Client: mgr.GetClient(), Sources: sources, APIReader: mgr.GetAPIReader(),
		Registry: opts.Registry, Clock: opts.Clock, Recorder: mgr.GetEventRecorder("keyferry"), HMACKey: opts.HMACKey, Workers: 2}
	return r.SetupWithManager(mgr, sources)
}

// setupBindings: SecretBindings, writing managed Secrets read back through the manager's
// label-selected cache, reading template ConfigMaps from a cache of those that opted in
// (keyferry.dev/template=true), so memory does not grow with the cluster's other ConfigMaps.
func setupBindings(mgr ctrl.Manager, opts Options, w wiring) error {
	templates, err := newSelectedCache(mgr, &corev1.ConfigMap{}, labels.SelectorFromSet(labels.Set{kf.LabelTemplate: "true"}))
	if err != nil {
		return err
	}
	r := &binding.Reconciler{Client: mgr.GetClient(), Secrets: mgr.GetCache(), APIReader: mgr.GetAPIReader(), TemplateConfigMaps: templates,
		Registry: opts.Registry, Clock: opts.Clock, Recorder: mgr.GetEventRecorder("keyferry"), HMACKey: opts.HMACKey,
		Wake: map[kf.ConnectionKind]chan<- event.GenericEvent{}, ClientReady: map[kf.ConnectionKind]<-chan event.GenericEvent{},
		Workers: opts.BindingWorkers}
	for kind := range w.wake {
		r.Wake[kind], r.ClientReady[kind] = w.wake[kind], w.ready[kind]
	}
	return r.SetupWithManager(mgr, templates)
}

// setupReceivers: RefreshReceivers. The leader's reconciler writes their status; every
// replica indexes them (from a cache of its own, whatever the shard: a hook may reach any
// replica) and, with the listener on, answers hooks and runs the rounds they ask for.
func setupReceivers(mgr ctrl.Manager, opts Options, w wiring) error {
	srv := &webhook.Server{Addr: opts.Webhook.Addr, CertDir: opts.Webhook.CertDir, AllowHTTP: opts.Webhook.AllowHTTP, OnListen: opts.Webhook.OnListen}
	r := &receiver.Reconciler{Client: mgr.GetClient(), Secrets: credentialReader{cache: w.creds, live: mgr.GetAPIReader()},
		Clock: opts.Clock, Recorder: mgr.GetEventRecorder("keyferry"), ListenerEnabled: srv.Enabled()}
	if err := r.SetupWithManager(mgr, w.creds); err != nil {
		return err
	}
	if !srv.Enabled() {
		return nil
	}
	receivers, err := newSelectedCache(mgr, &kf.RefreshReceiver{}, labels.Everything())
	if err != nil {
		return err
	}
	rounder := receiver.NewRounder(receivers, mgr.GetAPIReader(), mgr.GetClient(), opts.Clock)
	rounder.Done = func(key string, n int, err error) {
		metrics.WebhookRound(key, n, err)
		if opts.Webhook.OnRound != nil {
			opts.Webhook.OnRound(key, n, err)
		}
	}
	delayed, ok := opts.Clock.(clock.WithDelayedExecution)
	if !ok {
		delayed = clock.RealClock{}
	}
	return mgr.Add(&receiver.Listener{Server: srv, Index: &receiver.Index{Receivers: receivers, Secrets: w.creds},
		Receivers: receivers, Secrets: w.creds, Rounder: rounder, Limits: opts.Webhook.Limits, Clock: delayed,
		Observe: metrics.WebhookRequest})
}

// setupStorageMigration: on shard 0's leader, keyferry's stored objects move to their
// CRDs' storage version once, and the older stored versions are dropped from the CRDs'
// status (see controllers/storage). Reads go to the API server: no CRD is cached.
func setupStorageMigration(mgr ctrl.Manager, opts Options, _ wiring) error {
	if opts.Shard.Index != 0 {
		return nil
	}
	if err := apiextensionsv1.AddToScheme(mgr.GetScheme()); err != nil {
		return err
	}
	return mgr.Add(&storage.Runnable{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), CRDs: kf.CRDNames()})
}

// CacheOptions caches only the Secrets keyferry writes (label keyferry.dev/binding) and the
// workloads that opted in to restarts, so memory does not grow with the cluster's others;
// the Secrets without their values (trim.Secret, keyed by hmacKey). With more than one
// shard, objects of other shards' namespaces are dropped as they arrive (shard.NewInformer).
func CacheOptions(hmacKey []byte, sh shard.Shard) cache.Options {
	managed, err := labels.NewRequirement(kf.LabelBinding, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key: cannot fail
	}
	optedIn := labels.SelectorFromSet(labels.Set{kf.LabelRestartOnChange: "true"})
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:      {Label: labels.NewSelector().Add(*managed), Transform: trim.Secret(hmacKey)},
			&appsv1.Deployment{}:  {Label: optedIn, Transform: trim.Workload},
			&appsv1.StatefulSet{}: {Label: optedIn, Transform: trim.Workload},
			&appsv1.DaemonSet{}:   {Label: optedIn, Transform: trim.Workload},
		},
		// managedFields are often the largest part of a cached object and keyferry never
		// reads them (it writes with server-side apply); nor kubectl's last-applied copy.
		DefaultTransform: trim.Metadata,
		NewInformer:      sh.NewInformer,
	}
}

// newSelectedCache is a cache of the objects of obj's kind that sel selects, in every
// namespace (whatever the shard). The credentials cache holds only the Secrets labelled
// keyferry.dev/credentials=true: the connections read their credentials from it and are
// woken by its watch, so rotation takes effect at once and costs no API call per
// connection. The ClusterSecretBindings' cache holds only the bindings they created.
func newSelectedCache(mgr ctrl.Manager, obj client.Object, sel labels.Selector) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		ByObject:         map[client.Object]cache.ByObject{obj: {Label: sel}},
		DefaultTransform: trim.Metadata,
	})
	if err != nil {
		return nil, err
	}
	// Added as a cache, the manager starts and syncs it before any controller.
	return c, mgr.Add(cacheRunnable{c})
}

// clusterBindingChildren selects the SecretBindings a ClusterSecretBinding created.
func clusterBindingChildren() labels.Selector {
	req, err := labels.NewRequirement(kf.LabelClusterSecretBinding, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key: cannot fail
	}
	return labels.NewSelector().Add(*req)
}

type cacheRunnable struct{ cache.Cache }

func (c cacheRunnable) GetCache() cache.Cache { return c.Cache }

// credentialReader reads credentials from the labelled cache; on a miss it reads live
// once, to tell a missing Secret from one that is not labelled (which keyferry refuses).
type credentialReader struct {
	cache, live client.Reader
}

func (c credentialReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := c.cache.Get(ctx, key, obj, opts...)
	if apierrors.IsNotFound(err) {
		return c.live.Get(ctx, key, obj, opts...)
	}
	return err
}

func (c credentialReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return c.cache.List(ctx, list, opts...)
}

// ClientOptions make the default client read Secrets live (credentials and CA bundles:
// few, and not in the label-selected cache); managed Secrets are read from the cache.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}
