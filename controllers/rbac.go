package controllers

// Least privilege: keyferry's own kinds, Secrets (credentials read, managed Secrets
// written) and Events. No access to Pods, ConfigMaps or anything else.
//
// +kubebuilder:rbac:groups=keyferry.dev,resources=vaultconnections;clustervaultconnections;secretbindings,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=keyferry.dev,resources=vaultconnections/status;clustervaultconnections/status;secretbindings/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keyferry.dev,resources=vaultconnections/finalizers;clustervaultconnections/finalizers;secretbindings/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
