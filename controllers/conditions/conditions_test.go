package conditions

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kf "github.com/keyferry/keyferry/api/v1beta1"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestSetProgressFollowsReady(t *testing.T) {
	var conds []metav1.Condition
	failed := metav1.Condition{Type: kf.ConditionReady, Status: metav1.ConditionFalse, Reason: kf.ReasonForbidden, Message: "m"}
	SetProgress(&conds, failed, true, t0)
	if c := meta.FindStatusCondition(conds, kf.ConditionStalled); c == nil || c.Status != metav1.ConditionTrue || c.Reason != kf.ReasonForbidden {
		t.Fatalf("stalled: %+v", conds)
	}
	SetProgress(&conds, metav1.Condition{Type: kf.ConditionReady, Status: metav1.ConditionFalse, Reason: kf.ReasonRateLimited}, false, t0)
	if meta.FindStatusCondition(conds, kf.ConditionStalled) != nil || !meta.IsStatusConditionTrue(conds, kf.ConditionReconciling) {
		t.Fatalf("waiting: %+v", conds)
	}
	SetProgress(&conds, metav1.Condition{Type: kf.ConditionReady, Status: metav1.ConditionTrue, Reason: kf.ReasonSynced}, false, t0)
	if len(conds) != 0 {
		t.Fatalf("ready: %+v, want neither Reconciling nor Stalled", conds)
	}
}
