// Package controllers holds keyferry's reconcilers: one per kind.
package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"
)

// SetupWithManager registers every keyferry reconciler with mgr.
func SetupWithManager(mgr ctrl.Manager) error {
	if err := (&VaultConnectionReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&ClusterVaultConnectionReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&SecretBindingReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)
}
