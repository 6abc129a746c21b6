package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// NewRequest builds a hook call to url signed as kind signs, at now: generic-hmac with
// X-Timestamp and X-Signature over "<timestamp>.<body>", github with X-Hub-Signature-256
// and a fresh X-GitHub-Delivery (event push), token with Authorization: Bearer. For senders:
// the plugin's test call, the benchmark, tests.
func NewRequest(ctx context.Context, kind Kind, url string, body, secret []byte, now time.Time) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	switch kind {
	case GenericHMAC:
		ts := strconv.FormatInt(now.Unix(), 10)
		req.Header.Set("X-Timestamp", ts)
		req.Header.Set("X-Signature", Sign(secret, ts+".", body))
	case GitHub:
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", hex.EncodeToString(id))
		req.Header.Set("X-Hub-Signature-256", Sign(secret, "", body))
	case Token:
		req.Header.Set("Authorization", "Bearer "+string(secret))
	default:
		return nil, fmt.Errorf("receiver type %q: want generic-hmac, github or token", kind)
	}
	return req, nil
}
