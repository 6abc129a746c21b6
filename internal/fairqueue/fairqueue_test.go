package fairqueue

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
)

func tenant(s string) string { ns, _, _ := strings.Cut(s, "/"); return ns }

// A tenant with 5,000 items ready at once delays another tenant's single item by one
// item, not by 5,000.
func TestALoneItemIsServedNextToABacklog(t *testing.T) {
	q := New[string]("", workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, time.Second), tenant)
	defer q.ShutDown()
	for i := range 5000 {
		q.Add(fmt.Sprintf("big/b%d", i))
	}
	q.Add("small/only")
	for i := range 3 {
		item, _ := q.Get()
		q.Done(item)
		if item == "small/only" {
			t.Logf("served after %d items of the backlog", i)
			return
		}
	}
	t.Fatal("the other tenant's item was not among the first three served")
}

// Within a tenant the order stays FIFO, and tenants take turns.
func TestRingTakesTurns(t *testing.T) {
	r := NewRing(tenant)
	for _, s := range []string{"a/1", "a/2", "a/3", "b/1", "c/1", "b/2"} {
		r.Push(s)
	}
	var got []string
	for r.Len() > 0 {
		got = append(got, r.Pop())
	}
	want := "a/1 b/1 c/1 a/2 b/2 a/3"
	if strings.Join(got, " ") != want {
		t.Fatalf("order %q, want %q", strings.Join(got, " "), want)
	}
	if len(r.fifo) != 0 || r.turn.len() != 0 {
		t.Fatalf("an empty ring keeps %d tenants, %d turns", len(r.fifo), r.turn.len())
	}
}

// Items that become due together (RequeueAfter) are served in turn with a tenant's new
// item too: the delay stage feeds the same ring.
func TestDelayedBacklogDoesNotStarveANewItem(t *testing.T) {
	q := New[string]("", workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, time.Second), tenant)
	defer q.ShutDown()
	for i := range 2000 {
		q.AddAfter(fmt.Sprintf("big/b%d", i), 50*time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Len() < 2000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	q.Add("small/only")
	for range 3 {
		item, _ := q.Get()
		q.Done(item)
		if item == "small/only" {
			return
		}
	}
	t.Fatal("the new item waited behind the delayed backlog")
}

// The usual workqueue guarantees hold: an item added twice is queued once, and an item
// added while being processed comes back once after Done.
func TestWorkqueueGuaranteesHold(t *testing.T) {
	q := New[string]("", workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, time.Second), tenant)
	defer q.ShutDown()
	q.Add("a/1")
	q.Add("a/1")
	if q.Len() != 1 {
		t.Fatalf("len %d after adding one item twice", q.Len())
	}
	item, _ := q.Get()
	q.Add("a/1")
	if q.Len() != 0 {
		t.Fatal("an item being processed was queued again before Done")
	}
	q.Done(item)
	if q.Len() != 1 {
		t.Fatal("an item added during processing did not come back after Done")
	}
}

func BenchmarkRing(b *testing.B) {
	r := NewRing(tenant)
	items := make([]string, 1000)
	for i := range items {
		items[i] = fmt.Sprintf("ns%d/x%d", i%10, i)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, it := range items {
			r.Push(it)
		}
		for r.Len() > 0 {
			r.Pop()
		}
	}
}
