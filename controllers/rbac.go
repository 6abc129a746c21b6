package controllers

// Least privilege: keyferry's own kinds, Secrets (credentials read, managed Secrets
// written) and Events, with exactly the verbs the code calls. Secrets: get/list/watch for
// the caches and live reads, create for new targets, patch for server-side apply and for
// removing hand-added keys; never update or delete (Owner Secrets go through garbage
// collection). Its own kinds are patched, never updated; finalizers/update lets Owner
// Secrets carry blockOwnerDeletion. SecretBindings are also created (server-side apply) and
// deleted by ClusterSecretBindings, whose finalizers/update lets those bindings carry
// blockOwnerDeletion. ConfigMaps are only read: templates (target.templateFrom). RefreshReceivers
// patch the refresh annotation onto the bindings and pushes they select (any replica).
//
// +kubebuilder:rbac:groups=keyferry.dev,resources=vaultconnections;clustervaultconnections;clustersecretbindings;secretpushes;refreshreceivers,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=keyferry.dev,resources=secretbindings,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=keyferry.dev,resources=vaultconnections/status;clustervaultconnections/status;secretbindings/status;clustersecretbindings/status;secretpushes/status;refreshreceivers/status,verbs=get;patch
// +kubebuilder:rbac:groups=keyferry.dev,resources=vaultconnections/finalizers;clustervaultconnections/finalizers;secretbindings/finalizers;clustersecretbindings/finalizers;secretpushes/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list;watch;patch
