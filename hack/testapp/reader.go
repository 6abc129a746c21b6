package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/keyferry/keyferry/internal/dev/soakvalue"
)

// reader judges every read of its keys: a file read must be a whole value of its key and
// never older than the one read before; the environment (set once, at start) must hold a
// whole value of each key.
type reader struct {
	dir  string
	keys []string

	mu      sync.Mutex
	tally   Tally
	lastSeq map[string]int
}

// Tally is what /reads answers.
type Tally struct {
	Reads int `json:"reads"`
	Bad   int `json:"bad"`
	// BadSamples are the first bad reads, with what was wrong.
	BadSamples []string `json:"badSamples,omitempty"`
	// Seq is the newest sequence number read of each key's file.
	Seq map[string]int `json:"seq"`
	// Env is the sequence number of each key's environment variable (-1: bad or missing).
	Env map[string]int `json:"env"`
}

func newReader(dir string, keys []string) *reader {
	r := &reader{dir: dir, keys: keys, lastSeq: map[string]int{}, tally: Tally{Seq: map[string]int{}, Env: map[string]int{}}}
	for _, k := range keys {
		seq, err := soakvalue.Parse(k, os.Getenv(k))
		if err != nil {
			r.bad(fmt.Sprintf("env %s: %v", k, err))
			seq = -1
		}
		r.tally.Env[k] = seq
	}
	return r
}

func (r *reader) bad(what string) {
	r.tally.Bad++
	if len(r.tally.BadSamples) < 20 {
		r.tally.BadSamples = append(r.tally.BadSamples, time.Now().UTC().Format(time.RFC3339Nano)+" "+what)
	}
	fmt.Fprintln(os.Stderr, "bad read:", what)
}

func (r *reader) loop(every time.Duration) {
	for {
		for _, k := range r.keys {
			b, err := os.ReadFile(filepath.Join(r.dir, k))
			r.mu.Lock()
			r.tally.Reads++
			switch seq, perr := soakvalue.Parse(k, string(b)); {
			case err != nil:
				r.bad(fmt.Sprintf("file %s: %v", k, err))
			case perr != nil:
				r.bad(fmt.Sprintf("file %s: %v", k, perr))
			case seq < r.lastSeq[k]:
				r.bad(fmt.Sprintf("file %s: sequence %d after %d", k, seq, r.lastSeq[k]))
			default:
				r.lastSeq[k] = seq
				r.tally.Seq[k] = seq
			}
			r.mu.Unlock()
		}
		time.Sleep(every)
	}
}

func (r *reader) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r.tally)
}
