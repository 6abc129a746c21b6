package shard

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
)

func TestOfIsStableAndSpreads(t *testing.T) {
	// The hash is part of the contract (users may compute where a namespace lands).
	// Golden values: the mapping is part of the contract (a namespace must not change shard
	// between versions of keyferry).
	for _, tc := range []struct {
		ns        string
		two, five int
	}{{"team-a", 1, 1}, {"team-b", 0, 4}, {"payments", 0, 0}} {
		if a, b := Of(tc.ns, 2), Of(tc.ns, 5); a != tc.two || b != tc.five {
			t.Errorf("Of(%q) = %d of 2, %d of 5; want %d, %d", tc.ns, a, b, tc.two, tc.five)
		}
	}
	if Of("anything", 1) != 0 {
		t.Fatal("one shard owns everything")
	}
	// Consistent: from 3 to 4 shards a namespace either stays or moves to the new shard.
	moved := 0
	for i := range 1000 {
		ns := fmt.Sprintf("team-%d", i)
		if a, b := Of(ns, 3), Of(ns, 4); a != b {
			moved++
			if b != 3 {
				t.Fatalf("%s moved from shard %d to %d, not to the new shard", ns, a, b)
			}
		}
	}
	if moved < 150 || moved > 350 {
		t.Errorf("%d of 1000 namespaces moved from 3 to 4 shards, want about 250", moved)
	}
	counts := make([]int, 4)
	for i := range 1000 {
		counts[Of(fmt.Sprintf("ns-%d", i), 4)]++
	}
	for i, c := range counts {
		if c < 150 {
			t.Errorf("shard %d of 4 got %d of 1000 namespaces", i, c)
		}
	}
	one := Shard{Count: 1}
	if !one.Owns("anything") || one.Name() != "" {
		t.Error("a single shard owns everything and keeps unsharded names")
	}
	s := Shard{Count: 2, Index: Of("x", 2)}
	if !s.Owns("x") || (Shard{Count: 2, Index: 1 - s.Index}).Owns("x") || !s.Owns("") {
		t.Error("exactly one shard owns a namespace; every shard owns cluster-scoped objects")
	}
	if (Shard{Count: 2, Index: 2}).Validate() == nil || (Shard{Count: 0}).Validate() == nil || s.Validate() != nil {
		t.Error("Validate")
	}
}

func secret(ns string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: ns}}
}

func TestFilteredListAndWatch(t *testing.T) {
	s := Shard{Count: 2, Index: Of("mine", 2)}
	other := "theirs"
	for Of(other, 2) == s.Index {
		other += "x"
	}
	fw := watch.NewFake()
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &corev1.SecretList{Items: []corev1.Secret{*secret("mine"), *secret(other), *secret("mine")}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return fw, nil },
	}
	f := filtered{inner: lw, shard: s}
	list, err := f.ListWithContext(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if items := list.(*corev1.SecretList).Items; len(items) != 2 || items[0].Namespace != "mine" || items[1].Namespace != "mine" {
		t.Fatalf("list kept %v", items)
	}
	w, err := f.WatchWithContext(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		fw.Add(secret(other))
		fw.Action(watch.Bookmark, &corev1.Secret{})
		fw.Add(secret("mine"))
	}()
	if e := <-w.ResultChan(); e.Type != watch.Bookmark {
		t.Fatalf("first event %v, want the bookmark (the other shard's object dropped)", e.Type)
	}
	if e := <-w.ResultChan(); e.Object.(*corev1.Secret).Namespace != "mine" {
		t.Fatalf("event of %s passed", e.Object.(*corev1.Secret).Namespace)
	}
	w.Stop()
}
